package main

import (
	"log/slog"
	"net/http"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/prommetrics"
	"github.com/flashsale/flashsale/redisstore"
)

// newMetrics builds the Prometheus metrics of a serving process, on a
// registry of its own, and hooks the syncer (nil when sync is off) into it.
// Off, it returns nil interfaces: httpapi then installs no middleware and no
// route (a typed nil would pass its nil checks).
func newMetrics(cfg Config, store *redisstore.Store, syncer *persistence.Syncer, rec *persistence.Recoverer,
	log *slog.Logger) (httpapi.Metrics, http.Handler) {
	if !cfg.Metrics {
		return nil, nil
	}
	mc := prommetrics.Config{Items: store, Recovery: rec, Log: log}
	if syncer != nil {
		mc.Sync = syncer
	}
	m := prommetrics.New(mc)
	if syncer != nil {
		syncer.Observe = m.ObserveBatch
	}
	return m, m.Handler()
}
