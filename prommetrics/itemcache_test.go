package prommetrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/prommetrics"
	"github.com/flashsale/flashsale/reservation"
)

// countingItems is a catalogue of n items that counts its reads and can be
// made slow, so that scrapes overlap.
type countingItems struct {
	n     int
	delay time.Duration
	fail  atomic.Bool
	reads atomic.Int64
}

func (c *countingItems) Counters(ctx context.Context, limit int) ([]reservation.Item, int, error) {
	c.reads.Add(1)
	select {
	case <-time.After(c.delay):
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	if c.fail.Load() {
		return nil, 0, reservation.ErrUnavailable
	}
	return catalogue{n: c.n}.Counters(ctx, limit)
}

func scrape(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Code, rec.Body.String()
}

// TestItemCountersShared: row 8 of the hostile table, six parallel scrapes
// of a large catalogue, each reading every item from Redis, four of them
// answered 503. Scrapes now share one read per ItemsMaxAge, however many
// there are, and none is refused because of the others.
func TestItemCountersShared(t *testing.T) {
	tests := []struct {
		name      string
		scrapers  int
		rounds    int           // scrapes per scraper, back to back
		maxAge    time.Duration // of the item counters
		wantReads int64
	}{
		{name: "six at once share one read", scrapers: 6, rounds: 1, maxAge: time.Minute, wantReads: 1},
		{name: "sixteen at once share one read", scrapers: 16, rounds: 1, maxAge: time.Minute, wantReads: 1},
		{name: "repeated scrapes within the age read once", scrapers: 3, rounds: 5, maxAge: time.Minute, wantReads: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &countingItems{n: 1000, delay: 50 * time.Millisecond}
			m := prommetrics.New(prommetrics.Config{Items: src, ItemsMaxAge: tt.maxAge})
			h := m.Handler()
			var wg sync.WaitGroup
			codes := make(chan int, tt.scrapers*tt.rounds)
			for range tt.scrapers {
				wg.Go(func() {
					for range tt.rounds {
						code, body := scrape(t, h)
						codes <- code
						if code == http.StatusOK && !strings.Contains(body, `flashsale_item_units{sku="sku999",state="available"} 1`) {
							t.Error("a scrape lacks the last item's series")
						}
					}
				})
			}
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != http.StatusOK {
					t.Errorf("a scrape answered %d, want 200", code)
				}
			}
			if got := src.reads.Load(); got != tt.wantReads {
				t.Errorf("%d reads of the catalogue, want %d", got, tt.wantReads)
			}
		})
	}
}

// TestItemCountersAge: counters older than ItemsMaxAge are read again, and
// a failed read is kept as long as a good one (an outage costs Redis one
// read per age, not one per scrape), then tried again.
func TestItemCountersAge(t *testing.T) {
	src := &countingItems{n: 3}
	const age = 100 * time.Millisecond
	h := prommetrics.New(prommetrics.Config{Items: src, ItemsMaxAge: age}).Handler()

	_, body := scrape(t, h)
	if !strings.Contains(body, "flashsale_redis_up 1") {
		t.Fatal("first scrape: redis_up is not 1")
	}
	time.Sleep(age + 20*time.Millisecond)
	src.fail.Store(true)
	for range 5 {
		if _, body = scrape(t, h); !strings.Contains(body, "flashsale_redis_up 0") {
			t.Fatal("scrape after the age while the store fails: redis_up is not 0")
		}
	}
	if got := src.reads.Load(); got != 2 {
		t.Errorf("%d reads after one good read, one age and five scrapes of a failing store, want 2", got)
	}
	src.fail.Store(false)
	time.Sleep(age + 20*time.Millisecond)
	if _, body = scrape(t, h); !strings.Contains(body, "flashsale_redis_up 1") {
		t.Error("after the store recovered and one age passed: redis_up is not 1")
	}
	if got := src.reads.Load(); got != 3 {
		t.Errorf("%d reads, want 3", got)
	}
}
