package reservation

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Service applies the rules of a flash sale on top of a Store: it validates
// what clients send and mints reservation ids; the Store makes each change
// atomic.
type Service struct {
	store Store
}

// NewService returns a Service over store.
func NewService(store Store) *Service { return &Service{store: store} }

// Seed creates an item or changes its offer.
func (s *Service) Seed(ctx context.Context, spec ItemSpec) (SeedResult, error) {
	if err := spec.Validate(); err != nil {
		return SeedResult{}, err
	}
	return s.store.Seed(ctx, spec)
}

// SeedMany validates every spec before applying any, so a bad catalogue
// changes nothing; then each item is applied atomically on its own.
func (s *Service) SeedMany(ctx context.Context, specs []ItemSpec) ([]SeedResult, []error, error) {
	seen := make(map[string]int, len(specs))
	for i, spec := range specs {
		if err := spec.Validate(); err != nil {
			return nil, nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		if j, dup := seen[spec.SKU]; dup {
			return nil, nil, fmt.Errorf("%w: items[%d]: sku %q repeats items[%d]", ErrInvalid, i, spec.SKU, j)
		}
		seen[spec.SKU] = i
	}
	results, errs := s.store.SeedMany(ctx, specs)
	return results, errs, nil
}

// Item returns the item with its counters.
func (s *Service) Item(ctx context.Context, sku string) (Item, error) {
	if !ValidSKU(sku) {
		return Item{}, fmt.Errorf("%w: sku must match [A-Za-z0-9._-]{1,64}", ErrInvalid)
	}
	return s.store.Item(ctx, sku)
}

// Reserve takes a hold for req.UserID. It returns replayed=true with the
// original reservation when the idempotency key was used before.
func (s *Service) Reserve(ctx context.Context, req ReserveRequest) (Reservation, bool, error) {
	if err := req.Validate(); err != nil {
		return Reservation{}, false, err
	}
	id, err := NewID(req.SKU)
	if err != nil {
		return Reservation{}, false, err
	}
	req.ID = id
	return s.store.Reserve(ctx, req)
}

// Reservation returns one reservation; a pending hold past its expiry reads
// as expired.
func (s *Service) Reservation(ctx context.Context, id string) (Reservation, error) {
	if err := checkID(id); err != nil {
		return Reservation{}, err
	}
	return s.store.Reservation(ctx, id)
}

// Confirm turns a pending hold into a sale. Confirming twice is not an error.
func (s *Service) Confirm(ctx context.Context, id string) (Reservation, error) {
	if err := checkID(id); err != nil {
		return Reservation{}, err
	}
	return s.store.Confirm(ctx, id)
}

// Cancel gives a pending hold up. Cancelling twice is not an error.
func (s *Service) Cancel(ctx context.Context, id string) (Reservation, error) {
	if err := checkID(id); err != nil {
		return Reservation{}, err
	}
	return s.store.Cancel(ctx, id)
}

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

func checkID(id string) error {
	if _, ok := ParseID(id); !ok {
		return fmt.Errorf("%w: malformed reservation id", ErrInvalid)
	}
	return nil
}

// Sweeper returns the units of expired holds to available. Readers and
// buyers already treat a due hold as expired; the sweeper makes the
// counters agree within one Interval even for items nobody touches.
type Sweeper struct {
	Store    Store
	Interval time.Duration
	Batch    int // due holds settled per script call
	Log      *slog.Logger
}

// Run sweeps every Interval until ctx is done.
func (w *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
				w.Log.Warn("sweep failed", "err", err)
			}
		}
	}
}

// Sweep settles every due hold of every item once.
func (w *Sweeper) Sweep(ctx context.Context) error {
	n, err := w.Store.SweepDue(ctx, w.Batch)
	if n > 0 {
		w.Log.Debug("expired holds", "count", n)
	}
	return err
}
