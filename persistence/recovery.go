package persistence

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// Restorer is the part of the Redis store that recovery drives.
type Restorer interface {
	// Restore rebuilds a lost item; false when the item exists.
	Restore(ctx context.Context, snap reservation.Snapshot) (bool, error)
	// Missing returns the skus whose item the store does not hold.
	Missing(ctx context.Context, skus []string) ([]string, error)
	// MarkEpoch writes the store's epoch marker unless it is there and
	// returns the marker and whether it was missing: the store is new or has
	// lost its data. A marker that differs from one seen before means the
	// same.
	MarkEpoch(ctx context.Context, epoch int64) (current int64, fresh bool, err error)
	// Unsynced returns the item's outbox changes not yet in the record.
	Unsynced(ctx context.Context, sku string, buckets int) ([]reservation.Change, error)
}

// Recoverer notices items that Redis lost and rebuilds them from the record.
// Until an item is rebuilt, the Service answers ErrRecovering for it, and
// seeding cannot create it afresh: units the record holds as reserved or
// sold are never sold again.
type Recoverer struct {
	Store    Restorer
	DB       *DB
	Interval time.Duration // how often the epoch marker is checked
	// Grace is how long a rebuild waits before reading the record, so that
	// batches a syncer read before the loss have landed (or timed out). It
	// must exceed the syncer's Timeout.
	Grace time.Duration
	// Relist is the longest a listing of the record's items stands while
	// nothing says it changed (0: a minute). It is a safety net only: a
	// listing is taken again as soon as the record's catalogue generation
	// or the store's epoch moves, and a batch that wrote items moves the
	// generation, unless an older syncer without it wrote them.
	Relist time.Duration
	Log    *slog.Logger

	mu         sync.Mutex
	known      map[string]bool // items the record held at the last refresh
	knownEpoch int64           // the store's epoch marker when known was listed
	knownGen   int64           // the record's catalogue generation, read before known was listed
	listedAt   time.Time
	rebuilding map[string]bool
	// losses counts the times the epoch marker was found missing; scanned is
	// the count a scan that finished started under. A scan is owed while
	// they differ, so a loss found while a scan runs is owed another.
	losses, scanned uint64
	ctx             context.Context // Run's; rebuilds live as long as it
	wg              sync.WaitGroup
	restored        int
}

var _ reservation.Recovery = (*Recoverer)(nil)

// Run checks the epoch marker every Interval until ctx is done; a missing
// marker starts a check of every recorded item. It returns after the
// rebuilds it started have stopped.
func (r *Recoverer) Run(ctx context.Context) error {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	defer r.wg.Wait()
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if err := r.Check(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("recovery check failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check keeps the list of recorded items current and, when the store lost
// its epoch marker, starts rebuilding every recorded item it lacks. The
// record is listed again only when its catalogue generation or the store's
// epoch moved, a scan is owed, or the listing is Relist old: in steady
// state a Check costs the record one row's read, however large the
// catalogue.
func (r *Recoverer) Check(ctx context.Context) error {
	epoch, fresh, err := r.Store.MarkEpoch(ctx, time.Now().UnixMilli())
	if err != nil {
		return err
	}
	// Read before the listing: a batch committing after the read moves the
	// generation again, so the listing it may miss is taken next time. A
	// generation that cannot be read (its row gone) is -1, which no count
	// equals: the record is then listed on every Check, as without it.
	gen, err := r.DB.CatalogueGen(ctx)
	if err != nil {
		gen = -1
	}
	r.mu.Lock()
	// The marker is written now; if the scan below fails, only the count
	// remembers that it is owed.
	if fresh {
		r.losses++
	}
	owed := r.losses
	scan := owed != r.scanned
	relist := cmp.Or(r.Relist, time.Minute)
	current := r.known != nil && gen >= 0 && epoch == r.knownEpoch && gen == r.knownGen && time.Since(r.listedAt) < relist
	r.mu.Unlock()
	if current && !scan {
		return nil
	}
	// The record is listed after the marker was found missing, so the scan
	// sees every item recorded before the loss, however recently seeded.
	listedAt := time.Now()
	skus, err := r.DB.SKUs(ctx)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(skus))
	for _, sku := range skus {
		known[sku] = true
	}
	r.mu.Lock()
	r.known, r.knownEpoch, r.knownGen, r.listedAt = known, epoch, gen, listedAt
	r.mu.Unlock()
	if !scan {
		return nil
	}
	missing, err := r.Store.Missing(ctx, skus)
	if err != nil {
		return err
	}
	r.mu.Lock()
	// Only the losses counted before the listing: one counted since (by
	// knownSince, during the scan) may have dropped items after Missing
	// looked at them, and is owed a scan of its own.
	r.scanned = max(r.scanned, owed)
	r.mu.Unlock()
	if len(missing) > 0 {
		r.Log.Error("redis has lost recorded items; rebuilding them from the record",
			"items", len(missing), "grace", r.Grace)
	}
	for _, sku := range missing {
		r.start(sku)
	}
	return nil
}

// Recorded reports which skus the record holds. When the record cannot be
// reached it falls back to the last list it read, so seeding existing items
// keeps working while MySQL is down.
func (r *Recoverer) Recorded(ctx context.Context, skus []string) (map[string]bool, error) {
	found, err := r.DB.Recorded(ctx, skus)
	if err == nil {
		return found, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known == nil {
		return nil, err
	}
	found = make(map[string]bool, len(skus))
	for _, sku := range skus {
		found[sku] = r.known[sku]
	}
	return found, nil
}

// Lost is told that the store does not know sku. It reports whether the
// item is recorded and missing, i.e. lost; then it starts rebuilding it.
func (r *Recoverer) Lost(ctx context.Context, sku string) bool {
	r.mu.Lock()
	known, busy := r.known[sku], r.rebuilding[sku]
	r.mu.Unlock()
	if busy {
		return true
	}
	if !known && !r.knownSince(ctx, sku) {
		return false
	}
	missing, err := r.Store.Missing(ctx, []string{sku})
	if err != nil || len(missing) == 0 {
		return false
	}
	r.start(sku)
	return true
}

// knownSince answers for an item missing from the last listing of the
// record. The listing stands when the store's epoch marker is the one it was
// listed under; when there is no listing yet (just started), or the marker
// is new (or cannot be read) because Redis lost its data since, the item may
// be recorded after all, and the record is asked. In steady state an unknown
// item therefore costs no query to the record.
func (r *Recoverer) knownSince(ctx context.Context, sku string) bool {
	epoch, fresh, err := r.Store.MarkEpoch(ctx, time.Now().UnixMilli())
	r.mu.Lock()
	if fresh {
		r.losses++ // owed a scan: the marker is written again now
	}
	known, stale := r.known[sku], r.known == nil || err != nil || epoch != r.knownEpoch
	r.mu.Unlock()
	if known || !stale {
		return known
	}
	found, err := r.DB.Recorded(ctx, []string{sku})
	return err == nil && found[sku]
}

// Restored is how many items this Recoverer has rebuilt.
func (r *Recoverer) Restored() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.restored
}

// Rebuilding is how many items are being rebuilt now.
func (r *Recoverer) Rebuilding() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rebuilding)
}

func (r *Recoverer) start(sku string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rebuilding[sku] || r.ctx == nil || r.ctx.Err() != nil {
		return
	}
	if r.rebuilding == nil {
		r.rebuilding = map[string]bool{}
	}
	r.rebuilding[sku] = true
	ctx := r.ctx
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.rebuild(ctx, sku)
		r.mu.Lock()
		delete(r.rebuilding, sku)
		if err == nil {
			r.restored++
		}
		r.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			r.Log.Error("rebuild failed; it is tried again on the next request or check", "sku", sku, "err", err)
		}
	}()
}

func (r *Recoverer) rebuild(ctx context.Context, sku string) error {
	sleep(ctx, r.Grace)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		// The record names the item's buckets, whose outboxes are read; the
		// count never changes once the item exists.
		it, err := r.DB.Item(ctx, sku)
		if errors.Is(err, reservation.ErrItemNotFound) {
			return err
		}
		// The outbox shares the item's slot, so it is usually lost with it;
		// whatever survived goes in too. It is read before the record: the
		// syncer deletes an entry only after committing it, so an entry gone
		// from this read is in the record read next, and one still here is
		// in this read. Read the other way round, an entry synced between
		// the two reads would be in neither. Seeing a change in both is
		// harmless: withChanges keeps the furthest state.
		var unsynced []reservation.Change
		if err == nil {
			unsynced, err = r.Store.Unsynced(ctx, sku, it.Buckets)
		}
		var snap reservation.Snapshot
		if err == nil {
			snap, err = r.DB.Snapshot(ctx, sku)
		}
		if err == nil {
			snap = withChanges(snap, unsynced)
			var restored bool
			restored, err = r.Store.Restore(ctx, snap)
			if err == nil {
				r.Log.Warn("item rebuilt from the record", "sku", sku, "restored", restored,
					"reservations", len(snap.Reservations))
				return nil
			}
		}
		if attempt >= 20 {
			return err
		}
		sleep(ctx, nextBackoff(time.Duration(attempt)*100*time.Millisecond))
	}
	return ctx.Err()
}

// withChanges folds outbox changes into a snapshot by the syncer's own
// rules (merge): a reservation's status only moves forward, an offer only to
// a higher revision. The snapshot goes first, so ties keep what the record has.
func withChanges(snap reservation.Snapshot, changes []reservation.Change) reservation.Snapshot {
	if len(changes) == 0 {
		return snap
	}
	all := make([]reservation.Change, 0, 1+len(snap.Reservations)+len(changes))
	all = append(all, reservation.Change{Item: &snap.Item})
	for i := range snap.Reservations {
		r := &snap.Reservations[i]
		all = append(all, reservation.Change{Reservation: &r.Reservation, IdempotencyField: r.IdempotencyField})
	}
	items, rows := merge(append(all, changes...))
	out := reservation.Snapshot{Item: fromItemRow(items[0]), Reservations: make([]reservation.RecordedReservation, len(rows))}
	for i, r := range rows {
		out.Reservations[i] = reservation.RecordedReservation{Reservation: fromReservationRow(r), IdempotencyField: r.IdempotencyField}
	}
	return out
}
