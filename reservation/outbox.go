package reservation

import (
	"context"
	"time"
)

// ItemRecord is an item's offer as the durable record keeps it. Rev grows by
// one with every seed, so an older record never overwrites a newer one.
type ItemRecord struct {
	ItemSpec
	Rev       int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Change is one outbox entry: the whole new state of one reservation or of
// one item's offer, never a delta, so applying it twice or out of order
// converges (a reservation's status only moves forward).
type Change struct {
	Reservation *Reservation
	// IdempotencyField is "<len(user)>:<user>:<key>" on the change that
	// created a reservation with an Idempotency-Key, else "".
	IdempotencyField string
	Item             *ItemRecord
}

// OutboxEntry is one outbox entry as a syncer receives it. Err is set when
// the entry could not be parsed; Change is then empty.
type OutboxEntry struct {
	SKU string
	// Bucket is the item's bucket whose outbox holds the entry (the SKU
	// unless the item's stock is split into buckets).
	Bucket string
	ID     string
	Change Change
	Err    error
}

// Outbox is the stream of changes that the store appends inside the same
// atomic step that makes them, read by any number of syncers at once.
type Outbox interface {
	// Read returns entries not yet acknowledged, up to max new ones and max
	// taken over per item: new ones, and ones another consumer took but left
	// unacknowledged too long.
	Read(ctx context.Context, max int) ([]OutboxEntry, error)
	// Ack marks entries done; they are removed from the outbox.
	Ack(ctx context.Context, entries []OutboxEntry) error
	// Fail counts a failed attempt at e; after the outbox's bound of
	// attempts it parks e in the dead-letter stream and reports dead.
	Fail(ctx context.Context, e OutboxEntry, reason string) (dead bool, err error)
	// Backlog reports the entries not yet synced and the age of the oldest.
	Backlog(ctx context.Context) (Backlog, error)
}

// Backlog is how far the durable record is behind the store.
type Backlog struct {
	Entries int64
	Oldest  time.Duration // age of the oldest unsynced entry; 0 when none
	Dead    int64         // entries parked in dead-letter streams
}

// Snapshot is everything the durable record knows about one item: what a
// store that lost the item needs to rebuild it.
type Snapshot struct {
	Item         ItemRecord
	Reservations []RecordedReservation
}

// RecordedReservation is a reservation as the durable record keeps it.
type RecordedReservation struct {
	Reservation
	IdempotencyField string
}

// Counts are an item's units by reservation status in the durable record.
type Counts struct {
	Pending, Confirmed, Cancelled, Expired int64 // units
	Rows                                   int64
}

// Recovery knows which items the durable record holds, and rebuilds the ones
// the store has lost. The Service asks it whenever the store does not know
// an item.
type Recovery interface {
	// Recorded reports which skus the durable record holds.
	Recorded(ctx context.Context, skus []string) (map[string]bool, error)
	// Lost reports whether sku is recorded but missing from the store, and
	// then starts rebuilding it.
	Lost(ctx context.Context, sku string) bool
}

// Audit compares an item's counters in the store with the durable record.
type Audit struct {
	SKU     string
	Store   Item       // counters in Redis, after settling due holds
	Record  ItemRecord // the recorded offer
	Counts  Counts     // recorded units by status
	Backlog int64      // outbox entries of the item not yet synced
	// Drift lists every disagreement. While Backlog > 0 some are expected:
	// the record is behind, not wrong.
	Drift []string
}

// InSync reports whether store and record agree with nothing in flight.
func (a Audit) InSync() bool { return a.Backlog == 0 && len(a.Drift) == 0 }
