// Package console is the sale console's live feed: one poller reads every
// item once a second, whatever the number of consoles watching, and hands
// each subscriber the page of items it asked for. Nothing here speaks HTTP;
// httpapi serves the page and the event stream.
package console

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// Defaults for Options left zero.
const (
	DefaultInterval = time.Second
	// DefaultReadTimeout bounds one read of the items (as a metrics scrape's):
	// a read of 10,000 items takes about 80ms on an idle machine, but a busy
	// one must not show Redis as down. A slow read delays the next update; it
	// never adds one.
	DefaultReadTimeout = 5 * time.Second
	// DefaultBuffer is how many updates a subscriber may fall behind before
	// it is dropped: a console that cannot keep up with one update a second
	// reconnects and starts from the latest, it never slows the others.
	DefaultBuffer = 4
	// RateWindow is how far back grants and refusals per second look.
	RateWindow = 5 * time.Minute
	// PageSize is the items a console shows at once.
	PageSize = 50
)

// ItemReader reads every item with its counters and window, changing
// nothing: *redisstore.Store's Overview.
type ItemReader interface {
	Overview(ctx context.Context) ([]reservation.Item, error)
}

// Counts visits the service's own reservation counters (prommetrics'
// flashsale_reservations_total): the cumulative requests per item and
// outcome since the process started.
type Counts func(visit func(sku, outcome string, n uint64))

// Health is the syncer's and recovery's state and whether the durable
// record answers, as /readyz reports them.
type Health struct {
	Sync       SyncHealth `json:"sync"`
	Rebuilding int        `json:"rebuilding"`
	Restored   int        `json:"restored"`
	// DatabaseUp is whether the durable record answered its last check.
	DatabaseUp bool `json:"database_up"`
}

// SyncHealth is the syncer's last backlog reading.
type SyncHealth struct {
	Enabled     bool    `json:"enabled"`
	Backlog     int64   `json:"backlog"`
	LagSeconds  float64 `json:"lag_seconds"`
	DeadLetters int64   `json:"dead_letters"`
}

// Options configures a Hub.
type Options struct {
	Items ItemReader
	// Counts feeds the rates; nil (metrics off) leaves them out.
	Counts Counts
	// Health feeds the service panel; nil leaves it out.
	Health func(ctx context.Context) Health
	// Interval between reads; 0 is DefaultInterval. Tests shorten it.
	Interval time.Duration
	// ReadTimeout bounds one read; 0 is DefaultReadTimeout.
	ReadTimeout time.Duration
	// Buffer is each subscriber's queue; 0 is DefaultBuffer.
	Buffer int
	Log    *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// ErrClosed is returned by Subscribe once the hub is closed.
var ErrClosed = errors.New("console: closed")

// Hub polls and broadcasts. Its poller starts with the first subscriber and
// stops when the last one leaves, so a service nobody watches reads nothing.
type Hub struct {
	opts Options

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	stop   context.CancelFunc // the running poller's; nil when none runs
	done   chan struct{}      // closed when the running poller has returned
	closed bool
	last   *state  // the latest reading, for a new subscriber's first update
	health *Health // the latest health check; nil before the first

	tr *tracker

	reads int64 // Overview calls, for tests: one per interval, not per console
}

// New returns a hub; nothing runs until the first Subscribe.
func New(opts Options) *Hub {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Hub{opts: opts, subs: map[*Subscription]struct{}{}}
}

// Subscription is one console's feed. C yields encoded updates (one JSON
// document each) and is closed when the subscription ends: by Close, by the
// hub closing, or because the subscriber fell DefaultBuffer updates behind.
type Subscription struct {
	C    <-chan []byte
	c    chan []byte
	view View
	hub  *Hub
}

// Subscribe starts a feed of view, starting the poller if none runs. The
// first update comes at once when the hub has a reading, else after the
// poller's first read.
func (h *Hub) Subscribe(view View) (*Subscription, error) {
	view = view.normal()
	c := make(chan []byte, h.opts.Buffer)
	sub := &Subscription{C: c, c: c, view: view, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	h.subs[sub] = struct{}{}
	if h.last != nil {
		c <- h.last.encode(view)
	}
	if h.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.stop, h.done = cancel, make(chan struct{})
		go h.poll(ctx, h.done)
	}
	return sub, nil
}

// Close ends the subscription; the poller stops if it was the last one.
func (s *Subscription) Close() { s.hub.drop(s) }

// drop removes sub and closes its channel, once.
func (h *Hub) drop(sub *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(sub)
}

func (h *Hub) dropLocked(sub *Subscription) {
	if _, ok := h.subs[sub]; !ok {
		return
	}
	delete(h.subs, sub)
	close(sub.c)
	if len(h.subs) == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// Close ends every subscription and waits for the poller: the HTTP server
// calls it before draining, so open streams do not hold the shutdown.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	for sub := range h.subs {
		h.dropLocked(sub)
	}
	done := h.done
	h.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Subscribers is how many consoles are connected.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Reads is how many times the hub has read the items.
func (h *Hub) Reads() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reads
}

// Running reports whether the poller runs.
func (h *Hub) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stop != nil
}

// poll reads once an interval until ctx ends. The tracker (rates, sold-out
// moments) outlives a stopped poller; restarting re-bases the counters so
// the time nobody watched is not counted as one burst.
func (h *Hub) poll(ctx context.Context, done chan struct{}) {
	var checks sync.WaitGroup
	defer close(done)
	defer checks.Wait()
	if h.opts.Health != nil {
		// Health has a loop of its own: a slow check of the durable record
		// (a ping waiting behind a large write) must not delay the items.
		checks.Go(func() { h.checkHealth(ctx) })
	}
	tick := time.NewTicker(h.opts.Interval)
	defer tick.Stop()
	rebase := true
	for {
		h.readOnce(ctx, rebase)
		rebase = false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// checkHealth refreshes the latest health once an interval until ctx ends.
func (h *Hub) checkHealth(ctx context.Context) {
	tick := time.NewTicker(h.opts.Interval)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, h.opts.ReadTimeout)
		hl := h.opts.Health(cctx)
		cancel()
		h.mu.Lock()
		h.health = &hl
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (h *Hub) readOnce(ctx context.Context, rebase bool) {
	rctx, cancel := context.WithTimeout(ctx, h.opts.ReadTimeout)
	defer cancel()
	items, err := h.opts.Items.Overview(rctx)
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	h.reads++
	prev, health := h.last, h.health
	h.mu.Unlock()

	st := h.track(items, err, health, prev, rebase)

	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = st
	for sub := range h.subs {
		select {
		case sub.c <- st.encode(sub.view):
		default:
			h.opts.Log.Info("console: subscriber dropped, too slow", "behind", h.opts.Buffer)
			h.dropLocked(sub)
		}
	}
}
