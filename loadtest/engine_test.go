package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/loadtest"
)

// seqRecorder is a fake Op's memory of which sequence numbers it ran.
type seqRecorder struct {
	mu   sync.Mutex
	seen map[int64]int
}

func (r *seqRecorder) add(seq int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[int64]int{}
	}
	r.seen[seq]++
}

// wantEach fails unless every seq in 0..n-1 ran exactly once and no other.
func (r *seqRecorder) wantEach(t *testing.T, n int64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if int64(len(r.seen)) != n {
		t.Errorf("ran %d distinct sequence numbers, want %d", len(r.seen), n)
	}
	for seq := range n {
		if r.seen[seq] != 1 {
			t.Errorf("seq %d ran %d times, want once", seq, r.seen[seq])
			return
		}
	}
}

func TestRunClosedLoopCounts(t *testing.T) {
	const n = 2000
	var rec seqRecorder
	boom := errors.New("boom")
	op := func(_ context.Context, _ int, seq int64) (string, error) {
		rec.add(seq)
		switch {
		case seq%10 == 0:
			return "http_500", boom
		case seq%2 == 0:
			return "sold_out", nil
		}
		return "created", nil
	}
	res, err := loadtest.Run(context.Background(), loadtest.Config{Clients: 8, Requests: n}, op)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.wantEach(t, n)
	want := map[string]int64{"http_500": 200, "sold_out": 800, "created": 1000}
	if fmt.Sprint(res.Outcomes) != fmt.Sprint(want) {
		t.Errorf("outcomes = %v, want %v", res.Outcomes, want)
	}
	if res.Requests != n || res.Errors != 200 || res.Dropped != 0 {
		t.Errorf("requests %d, errors %d, dropped %d; want %d, 200, 0", res.Requests, res.Errors, res.Dropped, n)
	}
	if res.FirstError != "boom" {
		t.Errorf("first error %q, want boom", res.FirstError)
	}
	if res.Throughput <= 0 || res.Elapsed <= 0 {
		t.Errorf("throughput %v over %v: want both positive", res.Throughput, res.Elapsed)
	}
}

func TestRunPercentiles(t *testing.T) {
	// 90% of requests take 1ms, 10% take 30ms. Sleeps only ever overshoot,
	// so lower bounds are exact and upper bounds are loose.
	op := func(_ context.Context, _ int, seq int64) (string, error) {
		d := time.Millisecond
		if seq%10 == 9 {
			d = 30 * time.Millisecond
		}
		time.Sleep(d)
		return "ok", nil
	}
	res, err := loadtest.Run(context.Background(), loadtest.Config{Clients: 20, Requests: 400}, op)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	ordered := []time.Duration{res.P50, res.P90, res.P99, res.P999, res.Max}
	for i := 1; i < len(ordered); i++ {
		if ordered[i] < ordered[i-1] {
			t.Errorf("percentiles not ordered: p50 %v p90 %v p99 %v p99.9 %v max %v", res.P50, res.P90, res.P99, res.P999, res.Max)
		}
	}
	if res.P50 < time.Millisecond || res.P50 >= 30*time.Millisecond {
		t.Errorf("p50 = %v, want in [1ms, 30ms)", res.P50)
	}
	if res.P99 < 30*time.Millisecond || res.Max < 30*time.Millisecond {
		t.Errorf("p99 = %v, max = %v; want both >= 30ms", res.P99, res.Max)
	}
}

func TestRunClosedLoopDuration(t *testing.T) {
	const d = 300 * time.Millisecond
	op := func(context.Context, int, int64) (string, error) { time.Sleep(time.Millisecond); return "ok", nil }
	res, err := loadtest.Run(context.Background(), loadtest.Config{Clients: 4, Duration: d}, op)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Elapsed < d || res.Elapsed > d+200*time.Millisecond {
		t.Errorf("elapsed %v, want about %v", res.Elapsed, d)
	}
	// 4 clients at <= 1 request per ms each, for 300ms.
	if res.Requests < 40 || res.Requests > 4*300 {
		t.Errorf("%d requests in %v with 4 clients sleeping 1ms, want 40..1200", res.Requests, res.Elapsed)
	}
}

func TestRunOpenLoopRate(t *testing.T) {
	const rate, d = 400.0, time.Second
	var rec seqRecorder
	op := func(_ context.Context, _ int, seq int64) (string, error) {
		rec.add(seq)
		time.Sleep(2 * time.Millisecond)
		return "ok", nil
	}
	res, err := loadtest.Run(context.Background(), loadtest.Config{Clients: 32, Rate: rate, Duration: d}, op)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Dropped != 0 {
		t.Errorf("dropped %d with 32 in flight allowed for ~1 at a time", res.Dropped)
	}
	// The schedule is exact: rate × duration requests, give or take the
	// one due at the very end.
	if want := int64(rate * d.Seconds()); res.Requests < want-2 || res.Requests > want+1 {
		t.Errorf("%d requests at %v/s for %v, want about %d", res.Requests, rate, d, want)
	}
	rec.wantEach(t, res.Requests)
	if res.P50 < 2*time.Millisecond {
		t.Errorf("p50 %v below the op's own 2ms", res.P50)
	}
}

func TestRunOpenLoopRequestBound(t *testing.T) {
	const n = 150
	op := func(context.Context, int, int64) (string, error) { return "ok", nil }
	res, err := loadtest.Run(context.Background(), loadtest.Config{Clients: 4, Rate: 1000, Requests: n}, op)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Requests+res.Dropped != n {
		t.Errorf("sent %d + dropped %d, want %d in all", res.Requests, res.Dropped, n)
	}
	// 150 requests at 1000/s are spread over 149ms.
	if res.Elapsed < 149*time.Millisecond || res.Elapsed > time.Second {
		t.Errorf("elapsed %v, want about 150ms", res.Elapsed)
	}
}

func TestRunOpenLoopDropsWhenSaturated(t *testing.T) {
	// 2 requests in flight at most, each 50ms: at most ~40/s can be sent
	// of the 200/s offered; the rest must be dropped, not queued.
	op := func(context.Context, int, int64) (string, error) { time.Sleep(50 * time.Millisecond); return "ok", nil }
	res, err := loadtest.Run(context.Background(), loadtest.Config{Clients: 2, Rate: 200, Duration: 500 * time.Millisecond}, op)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Requests > 2*(500/50)+2 {
		t.Errorf("sent %d, more than 2 clients can in 500ms at 50ms each", res.Requests)
	}
	if res.Dropped < 50 || res.Outcomes[loadtest.OutcomeDropped] != res.Dropped {
		t.Errorf("dropped %d (outcome %d), want >= 50 and equal", res.Dropped, res.Outcomes[loadtest.OutcomeDropped])
	}
	if total := res.Requests + res.Dropped; total < 95 || total > 101 {
		t.Errorf("sent + dropped = %d, want about 100 (200/s for 0.5s)", total)
	}
}

func TestRunCancelled(t *testing.T) {
	for _, rate := range []float64{0, 1000} {
		t.Run(fmt.Sprintf("rate=%v", rate), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			var n atomic.Int64
			op := func(context.Context, int, int64) (string, error) {
				n.Add(1)
				time.Sleep(time.Millisecond)
				return "ok", nil
			}
			begin := time.Now()
			res, err := loadtest.Run(ctx, loadtest.Config{Clients: 4, Rate: rate, Duration: time.Minute}, op)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Run err = %v, want the context's deadline", err)
			}
			if took := time.Since(begin); took > 2*time.Second {
				t.Errorf("Run took %v after a 100ms context", took)
			}
			if res.Requests == 0 || res.Requests != n.Load() {
				t.Errorf("partial result counts %d requests, op ran %d", res.Requests, n.Load())
			}
		})
	}
}

func TestRunConfigRefused(t *testing.T) {
	op := func(context.Context, int, int64) (string, error) { t.Error("op ran"); return "", nil }
	tests := []struct {
		name string
		cfg  loadtest.Config
		want string
	}{
		{"no clients", loadtest.Config{Requests: 1}, "clients"},
		{"no bound", loadtest.Config{Clients: 1}, "duration or a request count"},
		{"negative rate", loadtest.Config{Clients: 1, Requests: 1, Rate: -1}, "rate"},
		{"negative requests", loadtest.Config{Clients: 1, Requests: -1, Duration: time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadtest.Run(context.Background(), tt.cfg, op)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%+v) err = %v, want one mentioning %q", tt.cfg, err, tt.want)
			}
		})
	}
}
