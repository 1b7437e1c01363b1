package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/flashsale/flashsale/console"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/persistence"
	"github.com/flashsale/flashsale/prommetrics"
	"github.com/flashsale/flashsale/redisstore"
)

// newConsole builds the sale console's hub. It reads nothing until a
// console connects. Its rates come from the Prometheus counters, so with
// FLASHSALE_METRICS=false the console shows none.
func newConsole(store *redisstore.Store, syncer *persistence.Syncer, rec *persistence.Recoverer, db *persistence.DB,
	metrics httpapi.Metrics, log *slog.Logger) *console.Hub {
	opts := console.Options{Items: store, Health: consoleHealth(syncer, rec, db), Log: log}
	if pm, ok := metrics.(*prommetrics.Metrics); ok {
		opts.Counts = pm.VisitReservations
	}
	return console.New(opts)
}

// consoleHealth is /readyz's detail for the console, and a ping of the
// durable record (once a second, while a console watches).
func consoleHealth(syncer *persistence.Syncer, rec *persistence.Recoverer, db *persistence.DB) func(context.Context) console.Health {
	return func(ctx context.Context) console.Health {
		h := console.Health{Rebuilding: rec.Rebuilding(), Restored: rec.Restored()}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		h.DatabaseUp = db.Ping(pctx) == nil
		if syncer != nil {
			st := syncer.Status()
			h.Sync = console.SyncHealth{Enabled: true, Backlog: st.Backlog.Entries,
				LagSeconds: st.Backlog.Oldest.Seconds(), DeadLetters: st.Backlog.Dead}
		}
		return h
	}
}
