package prommetrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/reservation"
)

// DefaultItemsMaxAge is how old the item counters a scrape exports may be.
const DefaultItemsMaxAge = time.Second

// itemCache reads the catalogue's counters at most once per maxAge, however
// many scrapers ask: one scrape of 10,000 items is 10,000 HMGETs and a
// megabyte of series, so six scrapers reading Redis each on their own crowd
// out the buyers (and each other). Concurrent scrapes of a stale cache wait
// for the one read in flight rather than starting their own. A failed read
// is kept as long as a good one, so an outage costs Redis one read per
// maxAge as well.
type itemCache struct {
	src    ItemSource
	limit  int
	maxAge time.Duration
	now    func() time.Time

	mu       sync.Mutex
	read     itemsRead
	inflight chan struct{} // closed when the read in flight is done
}

type itemsRead struct {
	at    time.Time // zero: never read
	items []reservation.Item
	total int
	err   error
}

func newItemCache(src ItemSource, limit int, maxAge time.Duration) *itemCache {
	return &itemCache{src: src, limit: limit, maxAge: maxAge, now: time.Now}
}

// get returns counters at most maxAge old, reading them with timeout when
// they are older. Waiting for another scrape's read ends with ctx.
func (c *itemCache) get(ctx context.Context, timeout time.Duration) itemsRead {
	for {
		c.mu.Lock()
		if !c.read.at.IsZero() && c.now().Sub(c.read.at) < c.maxAge {
			r := c.read
			c.mu.Unlock()
			return r
		}
		if wait := c.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return itemsRead{err: ctx.Err()}
			}
		}
		done := make(chan struct{})
		c.inflight = done
		c.mu.Unlock()

		readCtx, cancel := context.WithTimeout(context.Background(), timeout)
		items, total, err := c.src.Counters(readCtx, c.limit)
		cancel()

		c.mu.Lock()
		c.read = itemsRead{at: c.now(), items: items, total: total, err: err}
		c.inflight = nil
		r := c.read
		c.mu.Unlock()
		close(done)
		return r
	}
}

func (c *stateCollector) collectItems(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	r := c.items.get(ctx, c.timeout)
	if r.err != nil {
		// Debug only: flashsale_redis_up says it on every scrape, and the
		// outage is logged where buyers meet it.
		c.log.Debug("metrics: read item counters", "err", r.err)
		ch <- gauge(c.redisUp, 0)
		return
	}
	ch <- gauge(c.redisUp, 1)
	ch <- gauge(c.catalogItems, float64(r.total))
	for _, it := range r.items {
		ch <- gauge(c.itemUnits, float64(it.Available), it.SKU, "available")
		ch <- gauge(c.itemUnits, float64(it.Reserved), it.SKU, "reserved")
		ch <- gauge(c.itemUnits, float64(it.Sold), it.SKU, "sold")
	}
}
