package reservation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Service applies the rules of a flash sale on top of a Store: it validates
// what clients send and mints reservation ids; the Store makes each change
// atomic.
type Service struct {
	store    Store
	recovery Recovery // nil: no durable record to recover from
}

// NewService returns a Service over store. recovery may be nil.
func NewService(store Store, recovery Recovery) *Service {
	return &Service{store: store, recovery: recovery}
}

// Seed creates an item or changes its offer.
func (s *Service) Seed(ctx context.Context, spec ItemSpec) (SeedResult, error) {
	if err := spec.Validate(); err != nil {
		return SeedResult{}, err
	}
	results, errs, err := s.SeedMany(ctx, []ItemSpec{spec})
	if err != nil {
		return SeedResult{}, err
	}
	return results[0], errs[0]
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
	if s.recovery != nil {
		// An item the record holds must never be created afresh: if the
		// store lacks it, it was lost, and its units may be held or sold.
		skus := make([]string, len(specs))
		for i, spec := range specs {
			skus[i] = spec.SKU
		}
		recorded, err := s.recovery.Recorded(ctx, skus)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: the durable record cannot be read: %w", ErrUnavailable, err)
		}
		specs = append([]ItemSpec(nil), specs...)
		for i := range specs {
			specs[i].Recorded = recorded[specs[i].SKU]
		}
	}
	results, errs := s.store.SeedMany(ctx, specs)
	for i, err := range errs {
		errs[i] = s.lost(ctx, specs[i].SKU, err)
	}
	return results, errs, nil
}

// lost turns "not found" into ErrRecovering when the store lost an item the
// durable record holds (and has the rebuild started).
func (s *Service) lost(ctx context.Context, sku string, err error) error {
	if s.recovery == nil || err == nil {
		return err
	}
	if errors.Is(err, ErrItemNotFound) || errors.Is(err, ErrReservationNotFound) || errors.Is(err, ErrRecovering) {
		if s.recovery.Lost(ctx, sku) {
			return fmt.Errorf("%w: %s", ErrRecovering, sku)
		}
	}
	return err
}

// Item returns the item with its counters.
func (s *Service) Item(ctx context.Context, sku string) (Item, error) {
	if !ValidSKU(sku) {
		return Item{}, fmt.Errorf("%w: sku must match [A-Za-z0-9._-]{1,64}", ErrInvalid)
	}
	it, err := s.store.Item(ctx, sku)
	return it, s.lost(ctx, sku, err)
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
	r, replayed, err := s.store.Reserve(ctx, req)
	return r, replayed, s.lost(ctx, req.SKU, err)
}

// Reservation returns one reservation; a pending hold past its expiry reads
// as expired.
func (s *Service) Reservation(ctx context.Context, id string) (Reservation, error) {
	if err := checkID(id); err != nil {
		return Reservation{}, err
	}
	r, err := s.store.Reservation(ctx, id)
	sku, _ := ParseID(id)
	return r, s.lost(ctx, sku, err)
}

// Confirm turns a pending hold into a sale. Confirming twice is not an error.
func (s *Service) Confirm(ctx context.Context, id string) (Reservation, error) {
	if err := checkID(id); err != nil {
		return Reservation{}, err
	}
	r, err := s.store.Confirm(ctx, id)
	sku, _ := ParseID(id)
	return r, s.lost(ctx, sku, err)
}

// Cancel gives a pending hold up. Cancelling twice is not an error.
func (s *Service) Cancel(ctx context.Context, id string) (Reservation, error) {
	if err := checkID(id); err != nil {
		return Reservation{}, err
	}
	r, err := s.store.Cancel(ctx, id)
	sku, _ := ParseID(id)
	return r, s.lost(ctx, sku, err)
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
