package persistence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// ItemReader is the part of the Redis store the audit reads.
type ItemReader interface {
	Item(ctx context.Context, sku string) (reservation.Item, error)
	ItemBacklog(ctx context.Context, sku string) (int64, error)
}

// Auditor compares Redis with the record, on request and periodically.
type Auditor struct {
	Store    ItemReader
	DB       *DB
	Interval time.Duration
	Log      *slog.Logger
	// Lease, when set, takes or keeps a deployment-wide lease for ttl and
	// reports whether this auditor holds it: Run audits only while it does,
	// so a deployment audits its catalogue once per Interval, not once per
	// instance (100,000 items kept every instance's auditor busy).
	Lease func(ctx context.Context, ttl time.Duration) (bool, error)
	// Rate, when above 0, paces a pass to at most Rate items a second, so
	// its cost stays flat in the catalogue: a pass of a large catalogue then
	// takes longer than Interval, and the next starts when it ends.
	Rate int
}

// Audit reads the item from Redis first (settling due holds, whose expiry
// lands in the outbox), then its backlog, then the record, so that with an
// empty backlog the record has seen every change the counters show.
func (a *Auditor) Audit(ctx context.Context, sku string) (reservation.Audit, error) {
	au := reservation.Audit{SKU: sku}
	var err error
	if au.Store, err = a.Store.Item(ctx, sku); err != nil {
		return au, err
	}
	if au.Backlog, err = a.Store.ItemBacklog(ctx, sku); err != nil {
		return au, err
	}
	rec, err := a.DB.Item(ctx, sku)
	switch {
	case err == nil:
		au.Record = rec
	case errors.Is(err, reservation.ErrItemNotFound):
		au.Drift = append(au.Drift, "the record does not hold the item")
	default:
		return au, err
	}
	if au.Counts, err = a.DB.Counts(ctx, sku); err != nil {
		return au, err
	}
	st, c := au.Store, au.Counts
	check := func(what string, store, record int64) {
		if store != record {
			au.Drift = append(au.Drift, fmt.Sprintf("%s: redis %d, record %d", what, store, record))
		}
	}
	if au.Record.SKU != "" {
		check("stock", st.Stock, au.Record.Stock)
	}
	check("reserved (pending units)", st.Reserved, c.Pending)
	check("sold (confirmed units)", st.Sold, c.Confirmed)
	check("available (stock - pending - confirmed)", st.Available, st.Stock-c.Pending-c.Confirmed)
	return au, nil
}

// Run audits every recorded item each Interval and logs drift that shows in
// two audits in a row with an empty backlog (one alone can be a change that
// landed between reading Redis and reading the record).
func (a *Auditor) Run(ctx context.Context) error {
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	suspects := map[string][]string{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !a.holdsLease(ctx) {
			suspects = map[string][]string{} // two audits in a row must both be this one's
			continue
		}
		skus, err := a.DB.SKUs(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.Log.Warn("audit: cannot list items", "err", err)
			}
			continue
		}
		suspects = a.pass(ctx, skus, suspects)
	}
}

// pass audits skus (at most Rate a second) and returns the drift it saw per
// item, logging drift that suspects already held.
func (a *Auditor) pass(ctx context.Context, skus []string, suspects map[string][]string) map[string][]string {
	next := map[string][]string{}
	var pace <-chan time.Time
	if a.Rate > 0 {
		tick := time.NewTicker(time.Second / time.Duration(a.Rate))
		defer tick.Stop()
		pace = tick.C
	}
	for i, sku := range skus {
		if pace != nil {
			select {
			case <-ctx.Done():
				return next
			case <-pace:
			}
		}
		// A pass longer than the lease renews it on the way, and stops if
		// another instance took over meanwhile.
		if i > 0 && i%1000 == 0 && !a.holdsLease(ctx) {
			break
		}
		au, err := a.Audit(ctx, sku)
		if err != nil || au.Backlog > 0 || len(au.Drift) == 0 {
			continue
		}
		if prev, ok := suspects[sku]; ok && slices.Equal(prev, au.Drift) {
			a.Log.Error("audit: redis and the record disagree", "sku", sku, "drift", au.Drift)
		}
		next[sku] = au.Drift
	}
	return next
}

// holdsLease reports whether this auditor is the deployment's (always,
// without a Lease), renewing the lease for two intervals.
func (a *Auditor) holdsLease(ctx context.Context) bool {
	if a.Lease == nil {
		return true
	}
	held, err := a.Lease(ctx, 2*a.Interval)
	if err != nil && ctx.Err() == nil {
		a.Log.Warn("audit: cannot take the lease", "err", err)
	}
	return err == nil && held
}
