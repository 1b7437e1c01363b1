package prommetrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector reads the service's state at scrape time instead of
// keeping gauges up to date: the item counters live in Redis and change
// with every buyer, the syncer and the recoverer keep their own counters.
type stateCollector struct {
	items    ItemSource
	sync     SyncSource
	recovery RecoverySource
	maxItems int
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
	return &stateCollector{
		items:    cfg.Items,
		sync:     cfg.Sync,
		recovery: cfg.Recovery,
		maxItems: cfg.MaxItems,
		timeout:  cfg.ScrapeTimeout,
		log:      cfg.Log,

		itemUnits: d("flashsale_item_units",
			"Units of an item by state (available, reserved, sold), read from Redis at scrape; they sum to its stock. "+
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

func (c *stateCollector) collectItems(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	items, total, err := c.items.Counters(ctx, c.maxItems)
	if err != nil {
		// Debug only: flashsale_redis_up says it on every scrape, and the
		// outage is logged where buyers meet it.
		c.log.Debug("metrics: read item counters", "err", err)
		ch <- gauge(c.redisUp, 0)
		return
	}
	ch <- gauge(c.redisUp, 1)
	ch <- gauge(c.catalogItems, float64(total))
	for _, it := range items {
		ch <- gauge(c.itemUnits, float64(it.Available), it.SKU, "available")
		ch <- gauge(c.itemUnits, float64(it.Reserved), it.SKU, "reserved")
		ch <- gauge(c.itemUnits, float64(it.Sold), it.SKU, "sold")
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
