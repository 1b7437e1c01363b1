package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// fakeItems is a catalogue the test changes between reads; it counts reads.
type fakeItems struct {
	mu    sync.Mutex
	items []reservation.Item
	err   error
	reads atomic.Int64
}

func (f *fakeItems) Overview(context.Context) ([]reservation.Item, error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]reservation.Item(nil), f.items...), f.err
}

func (f *fakeItems) set(items []reservation.Item, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items, f.err = items, err
}

// fakeCounts is the reservation counter per item and outcome.
type fakeCounts struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

func (f *fakeCounts) add(sku, outcome string, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[[2]string]uint64{}
	}
	f.n[[2]string{sku, outcome}] += n
}

func (f *fakeCounts) visit(fn func(sku, outcome string, n uint64)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, n := range f.n {
		fn(k[0], k[1], n)
	}
}

type decoded struct {
	RedisUp   bool `json:"redis_up"`
	Items     int  `json:"items"`
	SoldOut   int  `json:"sold_out"`
	Matched   int  `json:"matched"`
	Page      int  `json:"page"`
	Pages     int  `json:"pages"`
	PageItems []struct {
		SKU           string  `json:"sku"`
		Available     int64   `json:"available"`
		Phase         string  `json:"phase"`
		GrantsPerS    float64 `json:"grants_per_s"`
		RefusalsPerS  float64 `json:"refusals_per_s"`
		SoldOutAt     *string `json:"sold_out_at"`
		SoldOutBefore bool    `json:"sold_out_before"`
	} `json:"page_items"`
}

func next(t *testing.T, sub *Subscription) decoded {
	t.Helper()
	select {
	case b, ok := <-sub.C:
		if !ok {
			t.Fatal("subscription closed")
		}
		var d decoded
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		return d
	case <-time.After(2 * time.Second):
		t.Fatal("no update within 2s")
	}
	return decoded{}
}

func catalogue(n int) []reservation.Item {
	out := make([]reservation.Item, n)
	for i := range out {
		out[i] = reservation.Item{SKU: fmt.Sprintf("sku-%05d", i), Name: fmt.Sprintf("Item %d", i), Stock: 10, Available: 10}
	}
	return out
}

// TestOneReadPerIntervalWhateverTheConsoles: ten consoles cost the store
// what one does, and the poller stops when the last leaves.
func TestOneReadPerIntervalWhateverTheConsoles(t *testing.T) {
	items := &fakeItems{items: catalogue(3)}
	const interval = 50 * time.Millisecond
	h := New(Options{Items: items, Interval: interval, Buffer: 1000})
	defer h.Close()
	if h.Running() {
		t.Fatal("poller runs before anyone subscribed")
	}
	var subs []*Subscription
	for range 10 {
		sub, err := h.Subscribe(View{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	start, before := time.Now(), items.reads.Load()
	for range 10 {
		for _, s := range subs {
			next(t, s)
		}
	}
	elapsed := time.Since(start)
	reads := items.reads.Load() - before
	if most := int64(elapsed/interval) + 2; reads > most {
		t.Errorf("%d reads in %v with 10 consoles, want at most %d (one per interval)", reads, elapsed, most)
	}
	for _, s := range subs {
		s.Close()
	}
	if h.Running() {
		t.Error("poller still runs with no subscriber")
	}
	time.Sleep(3 * interval)
	idle := items.reads.Load()
	time.Sleep(5 * interval)
	if got := items.reads.Load(); got != idle {
		t.Errorf("%d reads while nobody watched", got-idle)
	}
}

// TestSlowSubscriberDropped: a console that reads nothing is cut off after
// its buffer fills; the others keep their updates.
func TestSlowSubscriberDropped(t *testing.T) {
	items := &fakeItems{items: catalogue(1)}
	// The poller reads once at start; the test makes the other reads itself,
	// so the fast subscriber is never behind, however slow the machine.
	h := New(Options{Items: items, Interval: time.Hour, Buffer: 2})
	defer h.Close()
	slow, _ := h.Subscribe(View{})
	fast, _ := h.Subscribe(View{})
	next(t, fast) // the poller's first read: one update queued for slow
	h.readOnce(context.Background(), false)
	next(t, fast) // two queued for slow: its buffer is full
	if h.Subscribers() != 2 {
		t.Fatalf("%d subscribers before the slow one's buffer was full", h.Subscribers())
	}
	h.readOnce(context.Background(), false)
	if h.Subscribers() != 1 {
		t.Fatalf("%d subscribers, want the slow one dropped", h.Subscribers())
	}
	n := 0
	for range slow.C {
		n++
	}
	if n != 2 {
		t.Errorf("slow subscriber got %d buffered updates before its channel closed, want 2", n)
	}
	next(t, fast)
}

// TestRatesAndSoldOut: grants and refusals counted between reads become
// per-second rates; the read where available reaches 0 is the sold-out
// moment; an item sold out when first seen says "before".
func TestRatesAndSoldOut(t *testing.T) {
	items := &fakeItems{items: []reservation.Item{
		{SKU: "a", Stock: 10, Available: 10},
		{SKU: "b", Stock: 5, Available: 0, Reserved: 5},
	}}
	counts := &fakeCounts{}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 12, 0, 0, 0, 0, time.UTC).UnixNano())
	h := New(Options{Items: items, Counts: counts.visit, Interval: 20 * time.Millisecond, Buffer: 1000,
		Now: func() time.Time { return time.Unix(0, clock.Add(int64(time.Second))) }})
	defer h.Close()
	sub, _ := h.Subscribe(View{})
	d := next(t, sub)
	if a := d.PageItems[0]; a.GrantsPerS != 0 || a.SoldOutAt != nil {
		t.Errorf("first reading of a: %+v, want no rate, not sold out", a)
	}
	if b := d.PageItems[1]; b.SoldOutAt == nil || !b.SoldOutBefore {
		t.Errorf("b sold out when first seen: %+v, want sold_out_at with sold_out_before", b)
	}
	counts.add("a", "created", 10)
	counts.add("a", "replayed", 3)
	counts.add("a", "sold_out", 4)
	items.set([]reservation.Item{{SKU: "a", Stock: 10, Available: 0, Reserved: 10}, {SKU: "b", Stock: 5, Reserved: 5}}, nil)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		d = next(t, sub)
		// The counters and the catalogue change apart: wait for a read that
		// saw both.
		if a := d.PageItems[0]; a.GrantsPerS > 0 && a.Available == 0 {
			if a.SoldOutAt == nil || a.SoldOutBefore || a.Phase != "sold_out" || a.RefusalsPerS <= 0 {
				t.Errorf("a after selling out: %+v, want a sold-out moment, refusals", a)
			}
			if d.SoldOut != 2 {
				t.Errorf("sold_out %d, want 2", d.SoldOut)
			}
			return
		}
	}
	t.Fatal("grants per second never rose")
}

// TestPagesAndSearch: 10,000 items come 50 a page; a search narrows them.
func TestPagesAndSearch(t *testing.T) {
	items := &fakeItems{items: catalogue(10_000)}
	h := New(Options{Items: items, Interval: 20 * time.Millisecond, Buffer: 1000})
	defer h.Close()
	tests := []struct {
		name                 string
		view                 View
		matched, pages, page int
		first                string
		count                int
	}{
		{"first page", View{}, 10_000, 200, 0, "sku-00000", 50},
		{"last page", View{Page: 199}, 10_000, 200, 199, "sku-09950", 50},
		{"past the end shows the last", View{Page: 500}, 10_000, 200, 199, "sku-09950", 50},
		{"search", View{Query: "SKU-0999"}, 10, 1, 0, "sku-09990", 10},
		{"search by name", View{Query: "item 4242"}, 1, 1, 0, "sku-04242", 1},
		{"no match", View{Query: "nothing"}, 0, 1, 0, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := h.Subscribe(tc.view)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			d := next(t, sub)
			if d.Items != 10_000 || d.Matched != tc.matched || d.Pages != tc.pages || d.Page != tc.page || len(d.PageItems) != tc.count {
				t.Fatalf("got items %d matched %d pages %d page %d count %d, want 10000 %d %d %d %d",
					d.Items, d.Matched, d.Pages, d.Page, len(d.PageItems), tc.matched, tc.pages, tc.page, tc.count)
			}
			if tc.count > 0 && d.PageItems[0].SKU != tc.first {
				t.Errorf("first %s, want %s", d.PageItems[0].SKU, tc.first)
			}
		})
	}
}

// TestRedisDownKeepsItems: a failed read says Redis is down and keeps the
// last items on screen.
func TestRedisDownKeepsItems(t *testing.T) {
	items := &fakeItems{items: catalogue(2)}
	h := New(Options{Items: items, Interval: 20 * time.Millisecond, Buffer: 1000})
	defer h.Close()
	sub, _ := h.Subscribe(View{})
	if d := next(t, sub); !d.RedisUp || d.Items != 2 {
		t.Fatalf("first: %+v", d)
	}
	items.set(nil, errors.New("connection refused"))
	for range 10 {
		if d := next(t, sub); !d.RedisUp {
			if d.Items != 2 {
				t.Errorf("Redis down: %d items, want the last 2 kept", d.Items)
			}
			return
		}
	}
	t.Fatal("redis_up never went false")
}

// TestCloseEndsSubscriptions: Close ends every feed and refuses new ones.
func TestCloseEndsSubscriptions(t *testing.T) {
	h := New(Options{Items: &fakeItems{}, Interval: 20 * time.Millisecond})
	sub, _ := h.Subscribe(View{})
	h.Close()
	for range sub.C {
	}
	if _, err := h.Subscribe(View{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
}

// BenchmarkTrack10000 is one reading of a 10,000-item catalogue with rates
// on, and the encoding of one page of it: the poller's work each second.
func BenchmarkTrack10000(b *testing.B) {
	items := catalogue(10_000)
	counts := &fakeCounts{}
	for _, it := range items {
		counts.add(it.SKU, "created", 3)
		counts.add(it.SKU, "sold_out", 1)
	}
	h := New(Options{Items: &fakeItems{}, Counts: counts.visit})
	prev := h.track(items, nil, nil, nil, true)
	b.ReportAllocs()
	for b.Loop() {
		st := h.track(items, nil, nil, prev, false)
		st.encode(View{Page: 3})
		prev = st
	}
}

// TestSlowHealthDoesNotDelayItems: a health check stuck for a second (a
// ping behind a large write) leaves the item updates on time, and its
// answer shows once it comes.
func TestSlowHealthDoesNotDelayItems(t *testing.T) {
	items := &fakeItems{items: catalogue(1)}
	h := New(Options{Items: items, Interval: 20 * time.Millisecond, Buffer: 1000,
		Health: func(ctx context.Context) Health {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			return Health{DatabaseUp: true, Rebuilding: 3}
		}})
	defer h.Close()
	sub, _ := h.Subscribe(View{})
	start := time.Now()
	for range 10 {
		next(t, sub)
	}
	if took := time.Since(start); took > 700*time.Millisecond {
		t.Errorf("10 updates took %v behind a 1s health check", took)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		b := <-sub.C
		var u struct {
			Health *Health `json:"health"`
		}
		if err := json.Unmarshal(b, &u); err != nil {
			t.Fatal(err)
		}
		if u.Health != nil {
			if !u.Health.DatabaseUp || u.Health.Rebuilding != 3 {
				t.Errorf("health %+v, want the check's answer", *u.Health)
			}
			return
		}
	}
	t.Fatal("the health check's answer never showed")
}
