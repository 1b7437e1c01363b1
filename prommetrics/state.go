package prommetrics

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector reads the service's state at scrape time instead of
// keeping gauges up to date: the item counters live in Redis and change
// with every buyer (read through itemCache), the syncer and the recoverer
// keep their own counters.
type stateCollector struct {
	items    *itemCache // nil: no item metrics
	sync     SyncSource
	recovery RecoverySource
	timeout  time.Duration
	log      *slog.Logger

	itemUnits, catalogItems, redisUp *prometheus.Desc

	backlog, lag, deadLetters, backlogReadAt, dbUp *prometheus.Desc
	synced, batches, retries, deadLettered         *prometheus.Desc

	rebuilding, restored *prometheus.Desc
}

func newStateCollector(cfg Config) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	var items *itemCache
	if cfg.Items != nil {
		items = newItemCache(cfg.Items, cfg.MaxItems, cfg.ItemsMaxAge)
	}
	return &stateCollector{
		items:    items,
		sync:     cfg.Sync,
		recovery: cfg.Recovery,
		timeout:  cfg.ScrapeTimeout,
		log:      cfg.Log,

		itemUnits: d("flashsale_item_units",
			"Units of an item by state (available, reserved, sold), read from Redis at most once a second (ItemsMaxAge); they sum to its stock. "+
				"Holds past expiry count as reserved until the sweeper returns them.", "sku", "state"),
		catalogItems: d("flashsale_catalog_items",
			"Items in the catalogue; only the first MaxItems by SKU have flashsale_item_units series."),
		redisUp: d("flashsale_redis_up", "1 if this scrape could read the item counters from Redis."),

		backlog: d("flashsale_sync_backlog_entries", "Outbox entries not yet in the durable record."),
		lag: d("flashsale_sync_lag_seconds",
			"Age of the oldest outbox entry not yet in the durable record; 0 when none."),
		deadLetters: d("flashsale_sync_dead_letters", "Entries parked in the dead-letter streams."),
		backlogReadAt: d("flashsale_sync_backlog_read_timestamp_seconds",
			"When the syncer last measured the backlog (it does every second while Redis answers)."),
		dbUp: d("flashsale_sync_database_up", "0 while the syncer's last write to the durable record failed."),
		synced: d("flashsale_sync_synced_total",
			"Outbox entries this process's syncer committed and acknowledged."),
		batches: d("flashsale_sync_batches_total", "Batches this process's syncer committed."),
		retries: d("flashsale_sync_retries_total",
			"Batch writes that failed and will be tried again."),
		deadLettered: d("flashsale_sync_dead_lettered_total",
			"Entries this process's syncer parked in a dead-letter stream."),

		rebuilding: d("flashsale_recovery_rebuilding_items", "Items being rebuilt from the durable record now."),
		restored:   d("flashsale_recovery_restored_total", "Items this process has rebuilt from the durable record."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.itemUnits, c.catalogItems, c.redisUp,
		c.backlog, c.lag, c.deadLetters, c.backlogReadAt, c.dbUp,
		c.synced, c.batches, c.retries, c.deadLettered,
		c.rebuilding, c.restored,
	} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.items != nil {
		c.collectItems(ch)
	}
	if c.sync != nil {
		c.collectSync(ch)
	}
	if c.recovery != nil {
		ch <- gauge(c.rebuilding, float64(c.recovery.Rebuilding()))
		ch <- counter(c.restored, float64(c.recovery.Restored()))
	}
}

func (c *stateCollector) collectSync(ch chan<- prometheus.Metric) {
	st, stats := c.sync.Status(), c.sync.Stats()
	ch <- gauge(c.backlog, float64(st.Backlog.Entries))
	ch <- gauge(c.lag, st.Backlog.Oldest.Seconds())
	ch <- gauge(c.deadLetters, float64(st.Backlog.Dead))
	if !st.CheckedAt.IsZero() {
		ch <- gauge(c.backlogReadAt, float64(st.CheckedAt.UnixMilli())/1e3)
	}
	dbUp := 1.0
	if st.DBErr != nil {
		dbUp = 0
	}
	ch <- gauge(c.dbUp, dbUp)
	ch <- counter(c.synced, float64(stats.Synced.Load()))
	ch <- counter(c.batches, float64(stats.Batches.Load()))
	ch <- counter(c.retries, float64(stats.Retries.Load()))
	ch <- counter(c.deadLettered, float64(stats.Dead.Load()))
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}
