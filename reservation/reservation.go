// Package reservation is the domain of flashsale: items on sale, holds on
// their stock, the rules that keep both honest, and the Service that applies
// them. Adapters (Redis, HTTP) live in their own packages and speak its types.
package reservation

import (
	"context"
	"time"
)

// Status is where a reservation is in its life cycle:
// pending -> confirmed | cancelled | expired. Only pending moves.
type Status string

const (
	StatusPending   Status = "pending"
	StatusConfirmed Status = "confirmed"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
)

// Item is one SKU on sale. After every change Available+Reserved+Sold == Stock
// and none is below zero.
type Item struct {
	SKU          string
	Name         string
	Stock        int64
	Available    int64
	Reserved     int64 // units in pending holds
	Sold         int64 // units in confirmed reservations
	PerUserLimit int
	Hold         time.Duration
	StartsAt     time.Time // zero: the sale has no start
	EndsAt       time.Time // zero: the sale has no end
	Buckets      int       // how many buckets the stock is split over (see ItemSpec.Buckets)
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// ItemSpec is what an admin sets on an item; the counters follow from it.
type ItemSpec struct {
	SKU          string
	Name         string
	Stock        int64
	PerUserLimit int
	Hold         time.Duration
	StartsAt     time.Time
	EndsAt       time.Time
	// Buckets splits the stock over this many independent counters (1..64),
	// so that one item's buyers spread over several Redis shards. It is set
	// when the item is created and cannot change: every user's holds live in
	// one bucket, chosen from the user id and the bucket count, which is what
	// keeps the per-user limit exact. 0 means 1 on creation and "unchanged"
	// on an update.
	Buckets int
	// Recorded is set by the Service, not by the admin: the durable record
	// already holds the item, so a store without it has lost it and must not
	// create it afresh (that would sell its held and sold units again).
	Recorded bool
}

// Reservation is a hold of Quantity units of one item for one user.
type Reservation struct {
	ID        string
	SKU       string
	UserID    string
	Quantity  int
	Status    Status
	CreatedAt time.Time
	ExpiresAt time.Time
	UpdatedAt time.Time
}

// ReserveRequest asks for a hold. ID is chosen by the Service before the store
// sees it, so a retried call carries the same ID and cannot take stock twice.
type ReserveRequest struct {
	ID             string
	SKU            string
	UserID         string
	Quantity       int
	IdempotencyKey string // optional; scoped to (SKU, UserID)
}

// SeedResult is the outcome of seeding one item.
type SeedResult struct {
	Item    Item
	Created bool
}

// Store keeps items and reservations and applies every change atomically.
// Implementations translate their failures into this package's errors.
type Store interface {
	// Seed creates the item or changes its offer.
	Seed(ctx context.Context, spec ItemSpec) (SeedResult, error)
	// SeedMany applies each spec atomically on its own; errs[i] is spec i's error.
	SeedMany(ctx context.Context, specs []ItemSpec) ([]SeedResult, []error)
	// Item reads an item after settling holds that are due.
	Item(ctx context.Context, sku string) (Item, error)
	// Reserve takes a hold; replayed reports that the ID or idempotency key
	// was seen before and the original reservation is returned.
	Reserve(ctx context.Context, req ReserveRequest) (r Reservation, replayed bool, err error)
	Reservation(ctx context.Context, id string) (Reservation, error)
	Confirm(ctx context.Context, id string) (Reservation, error)
	Cancel(ctx context.Context, id string) (Reservation, error)
	// SweepDue settles the due holds of every item in the catalogue, at
	// most batch per item per script call, and returns how many it expired.
	SweepDue(ctx context.Context, batch int) (expired int, err error)
	Ping(ctx context.Context) error
}
