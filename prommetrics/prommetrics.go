// Package prommetrics exports the service's metrics in the Prometheus format
// with client_golang, on a registry of its own (never the global one).
package prommetrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/reservation"
)

// DefaultMaxItems caps the per-item series (gauges and reservation
// counters) when Config.MaxItems is zero: a Prometheus server copes with
// tens of thousands of series per target, not with an unbounded catalogue.
const DefaultMaxItems = 10_000

// OtherSKU labels the reservations of items beyond the cap.
const OtherSKU = "_other"

const defaultScrapeTimeout = 5 * time.Second

// ItemSource reads the catalogue's counters without changing anything:
// a scrape must never write to the store.
type ItemSource interface {
	// Counters returns at most limit items (SKU, Stock, Available, Reserved
	// and Sold set), the same ones on every call, and the catalogue's size.
	Counters(ctx context.Context, limit int) (items []reservation.Item, total int, err error)
}

// SyncSource is the syncer's live state: *persistence.Syncer.
type SyncSource interface {
	Stats() *persistence.SyncStats
	Status() persistence.SyncStatus
}

// RecoverySource is the recovery state: *persistence.Recoverer.
type RecoverySource interface {
	Rebuilding() int
	Restored() int
}

// Config names what the scrape reads. Every source may be nil; its metrics
// are then left out (a process without a syncer exports no sync metrics).
type Config struct {
	Items    ItemSource
	Sync     SyncSource
	Recovery RecoverySource
	// MaxItems caps the items with series of their own; 0 is DefaultMaxItems.
	MaxItems int
	// ScrapeTimeout bounds the store read of one scrape; 0 is 5s.
	ScrapeTimeout time.Duration
	// ItemsMaxAge is how old the exported item counters may be: every
	// scrape within it shares one read of the catalogue. 0 is
	// DefaultItemsMaxAge.
	ItemsMaxAge time.Duration
	Log         *slog.Logger
}

// Metrics owns the registry and the instruments the HTTP layer and the
// syncer feed. Its Observe methods are safe for concurrent use and do not
// allocate once a label combination has been seen.
type Metrics struct {
	reg      *prometheus.Registry
	log      *slog.Logger
	maxItems int

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	reservations *prometheus.CounterVec
	batchSize    prometheus.Histogram
	batchTook    prometheus.Histogram

	// The request path resolves its labels to cached children (see
	// readMostly): WithLabelValues hashes the labels and allocates each call.
	routes readMostly[routeKey, routeSeries]
	items  readMostly[itemKey, prometheus.Counter]

	mu   sync.Mutex          // guards skus
	skus map[string]struct{} // distinct SKUs with series of their own, for the cap
}

type routeKey struct {
	route, method string
	status        int
}

type routeSeries struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

type itemKey struct{ sku, outcome string }

// New registers every metric on a fresh registry.
func New(cfg Config) *Metrics {
	if cfg.MaxItems <= 0 {
		cfg.MaxItems = DefaultMaxItems
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = defaultScrapeTimeout
	}
	if cfg.ItemsMaxAge <= 0 {
		cfg.ItemsMaxAge = DefaultItemsMaxAge
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		log:      cfg.Log,
		maxItems: cfg.MaxItems,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashsale_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flashsale_http_request_duration_seconds",
			Help: "Time from a request's arrival in the router to its response, by route pattern and method.",
			// A reservation takes tens of microseconds of Redis time: the
			// default buckets start at 5ms and would lump every fast answer.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		reservations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashsale_reservations_total",
			Help: "Reservation requests by item and outcome (created, replayed or the problem code). " +
				"sku is _unknown unless the outcome proves the item exists, _other beyond the item cap.",
		}, []string{"sku", "outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashsale_sync_batch_size",
			Help:    "Outbox entries per transaction the syncer committed.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 .. 8192; a batch is at most 10,000
		}),
		batchTook: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashsale_sync_batch_duration_seconds",
			Help:    "Time to write one committed batch to the durable record.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		skus: make(map[string]struct{}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.reservations, m.batchSize, m.batchTook,
		newStateCollector(cfg),
	)
	return m
}

// Registry is the registry every metric is on, for tests and for adding
// more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or negotiated) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		// A failing collector costs its own metrics, not the whole scrape:
		// the rest is what an operator needs while Redis is down.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes share one read of the items a second (itemCache), so a
		// few scrapers at once cost little; the bound keeps a flood of them
		// from rendering megabytes each beside the buyers.
		MaxRequestsInFlight: 16,
	})
}

// ObserveRequest counts one HTTP request and records its latency. route
// must be a route pattern, never a raw path: the labels must stay bounded.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	s := m.routes.get(routeKey{route, method, status}, m.newRoute)
	s.count.Inc()
	s.latency.Observe(d.Seconds())
}

func (m *Metrics) newRoute(k routeKey) (routeKey, routeSeries) {
	k.route, k.method = strings.Clone(k.route), strings.Clone(k.method)
	return k, routeSeries{
		count:   m.requests.WithLabelValues(k.route, k.method, statusLabel(k.status)),
		latency: m.latency.WithLabelValues(k.route, k.method),
	}
}

// ObserveReserve counts one reservation request. The caller guarantees the
// SKU names an existing item (or is a placeholder such as "_unknown"); past
// MaxItems distinct SKUs, new ones are counted as OtherSKU.
func (m *Metrics) ObserveReserve(sku, outcome string) {
	m.items.get(itemKey{sku, outcome}, m.newItem).Inc()
}

func (m *Metrics) newItem(k itemKey) (itemKey, prometheus.Counter) {
	k.sku, k.outcome = strings.Clone(k.sku), strings.Clone(k.outcome)
	m.mu.Lock()
	defer m.mu.Unlock()
	label := k.sku
	if _, seen := m.skus[k.sku]; !seen {
		if len(m.skus) >= m.maxItems {
			label = OtherSKU
		} else {
			m.skus[k.sku] = struct{}{}
		}
	}
	// An SKU beyond the cap still gets an entry (pointing at the _other
	// child), so it is looked up without a lock next time; the entries are
	// bounded by the catalogue, which the caller vouches for.
	return k, m.reservations.WithLabelValues(label, k.outcome)
}

// ObserveBatch records one batch the syncer committed: persistence.Syncer's
// Observe hook.
func (m *Metrics) ObserveBatch(size int, took time.Duration) {
	m.batchSize.Observe(float64(size))
	m.batchTook.Observe(took.Seconds())
}

// statusLabel keeps the code label to three digits even if a handler sets
// a nonsense status.
func statusLabel(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status)
}
