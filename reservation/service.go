package reservation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Service applies the rules of a flash sale on top of a Store: it validates
// what clients send and mints reservation ids; the Store makes each change
// atomic.
type Service struct {
	store    Store
	recovery Recovery       // nil: no durable record to recover from
	soldOut  *soldOutMemory // nil: every refusal asks the store
	archive  Archive        // nil: a reservation the store lacks is unknown
}

// Archive reads a reservation from the durable record: the store keeps a
// final reservation only for its retention, and the record answers for it
// after (persistence.DB).
type Archive interface {
	Reservation(ctx context.Context, id string) (Reservation, error)
}

// WithArchive answers for a final reservation the store no longer holds
// from a, as the store would have: read as it was, confirmed or cancelled
// again as a repeat (or the conflict a repeat of the other would be).
func WithArchive(a Archive) ServiceOption {
	return func(s *Service) { s.archive = a }
}

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// WithSoldOutMemory lets the Service answer reserves for an item the store
// just reported sold out from memory, for at most d (capped at
// MaxSoldOutMemory), without running a script. Requests with an idempotency
// key always reach the store: theirs may be a retry of a hold already made.
// d <= 0 turns it off (the default).
func WithSoldOutMemory(d time.Duration) ServiceOption {
	return func(s *Service) {
		s.soldOut = nil
		if d > 0 {
			s.soldOut = newSoldOutMemory(min(d, MaxSoldOutMemory))
		}
	}
}

// NewService returns a Service over store. recovery may be nil.
func NewService(store Store, recovery Recovery, opts ...ServiceOption) *Service {
	s := &Service{store: store, recovery: recovery}
	for _, opt := range opts {
		opt(s)
	}
	return s
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
		// A seed also asks when the store answers ErrRecovering (it lost
		// some of the item's buckets): asking has the rebuild started.
		if notFound(err) || errors.Is(err, ErrRecovering) {
			if rerr := s.lost(ctx, specs[i].SKU); rerr != nil {
				errs[i] = rerr
			}
		}
		if err == nil && s.soldOut != nil {
			s.soldOut.forget(specs[i].SKU)
		}
	}
	return results, errs, nil
}

// lost asks the durable record whether the store lost sku (asking has the
// rebuild started) and answers ErrRecovering if so; nil when the record
// says it is not lost or there is no record.
func (s *Service) lost(ctx context.Context, sku string) error {
	if s.recovery == nil || !s.recovery.Lost(ctx, sku) {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRecovering, sku)
}

// guard runs one store call for sku. When the store does not know the item
// and the durable record does, the answer is ErrRecovering. When the record
// says the item is not lost, the call runs once more: a rebuild (here or on
// another instance) may have finished between the store's answer and the
// check, and the scripts are idempotent, so a second run is safe.
func guard[T any](ctx context.Context, s *Service, sku string, call func() (T, error)) (T, error) {
	v, err := call()
	if s.recovery == nil || !notFound(err) {
		return v, err
	}
	if rerr := s.lost(ctx, sku); rerr != nil {
		return v, rerr
	}
	return call()
}

func notFound(err error) bool {
	return errors.Is(err, ErrItemNotFound) || errors.Is(err, ErrReservationNotFound)
}

// Item returns the item with its counters.
func (s *Service) Item(ctx context.Context, sku string) (Item, error) {
	if !ValidSKU(sku) {
		return Item{}, ErrInvalidSKU
	}
	return guard(ctx, s, sku, func() (Item, error) { return s.store.Item(ctx, sku) })
}

// Reserve takes a hold for req.UserID. It returns replayed=true with the
// original reservation when the idempotency key was used before.
func (s *Service) Reserve(ctx context.Context, req ReserveRequest) (Reservation, bool, error) {
	if err := req.Validate(); err != nil {
		return Reservation{}, false, err
	}
	remember := s.soldOut != nil && req.IdempotencyKey == ""
	var gen uint64
	if remember {
		if err := s.memoryRefusal(req); err != nil {
			return Reservation{}, false, err
		}
		gen = s.soldOut.gen.Load()
	}
	id, err := NewID(req.SKU)
	if err != nil {
		return Reservation{}, false, err
	}
	req.ID = id
	type result struct {
		r        Reservation
		replayed bool
	}
	res, err := guard(ctx, s, req.SKU, func() (result, error) {
		r, replayed, err := s.store.Reserve(ctx, req)
		return result{r, replayed}, err
	})
	// The store "replays" its own id when a call ran twice (a client retry
	// after a lost answer): for the buyer this is still the hold just made.
	// (A store may prefix the random part with the bucket it chose.)
	if res.replayed && strings.HasSuffix(res.r.ID, id[len(req.SKU):]) {
		res.replayed = false
	}
	if remember && err != nil {
		// Declared here: errors.As takes its address, so it lives on the
		// heap, which a granted hold need not pay for.
		var soldOut *SoldOutError
		if errors.As(err, &soldOut) {
			s.soldOut.remember(req.SKU, gen, soldOut)
		}
	}
	return res.r, res.replayed, err
}

// RefusedFromMemory is the answer Reserve would give req without asking
// the store (its validation, or a sold-out answer from the sold-out memory),
// or nil when Reserve must ask the store. It changes nothing, so callers
// may answer it before spending anything on the request, such as a rate
// limit: a refusal from memory costs nothing to protect.
func (s *Service) RefusedFromMemory(req ReserveRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if s.soldOut == nil || req.IdempotencyKey != "" {
		return nil
	}
	return s.memoryRefusal(req)
}

func (s *Service) memoryRefusal(req ReserveRequest) error {
	if available, ok := s.soldOut.refuses(req.SKU, req.Quantity); ok {
		return &SoldOutError{Available: available, NextExpiry: -1}
	}
	return nil
}

// Reservation returns one reservation; a pending hold past its expiry reads
// as expired.
func (s *Service) Reservation(ctx context.Context, id string) (Reservation, error) {
	return s.archived(s.byID(ctx, id, s.store.Reservation))(ctx, id, "", "")
}

// Confirm turns a pending hold into a sale. Confirming twice is not an error.
func (s *Service) Confirm(ctx context.Context, id string) (Reservation, error) {
	return s.archived(s.byID(ctx, id, s.store.Confirm))(ctx, id, "", StatusConfirmed)
}

// Cancel gives a pending hold up. Cancelling twice is not an error.
func (s *Service) Cancel(ctx context.Context, id string) (Reservation, error) {
	r, err := s.archived(s.byID(ctx, id, s.store.Cancel))(ctx, id, "", StatusCancelled)
	if err == nil && s.soldOut != nil {
		s.soldOut.forget(r.SKU)
	}
	return r, err
}

// ReservationFor is Reservation for a buyer known to be userID: another
// buyer's reservation is ErrReservationNotFound, as an unknown id is.
func (s *Service) ReservationFor(ctx context.Context, userID, id string) (Reservation, error) {
	return s.archived(s.byID(ctx, id, func(ctx context.Context, id string) (Reservation, error) {
		return s.owned(ctx, userID, id)
	}))(ctx, id, userID, "")
}

// CancelFor is Cancel for a buyer known to be userID: another buyer's
// reservation is ErrReservationNotFound and stays as it was.
func (s *Service) CancelFor(ctx context.Context, userID, id string) (Reservation, error) {
	r, err := s.archived(s.byID(ctx, id, func(ctx context.Context, id string) (Reservation, error) {
		if _, err := s.owned(ctx, userID, id); err != nil {
			return Reservation{}, err
		}
		// Read, then cancel: safe without a script of its own, as a
		// reservation's user never changes once it is made.
		return s.store.Cancel(ctx, id)
	}))(ctx, id, userID, StatusCancelled)
	if err == nil && s.soldOut != nil {
		s.soldOut.forget(r.SKU)
	}
	return r, err
}

// owned reads reservation id and answers ErrReservationNotFound when it is
// not userID's. The refusal is the very error the store gives an unknown
// id, returned from inside byID's call, so it takes the same path after
// (guard's recovery check and second call): the answer, its body and its
// timing say nothing about whether the id exists. The ownership rule lives
// here rather than in the HTTP handler so that every caller that knows the
// buyer gets it, and the 404 cannot drift from the store's.
func (s *Service) owned(ctx context.Context, userID, id string) (Reservation, error) {
	r, err := s.store.Reservation(ctx, id)
	if err != nil {
		return Reservation{}, err
	}
	if r.UserID != userID {
		return Reservation{}, ErrReservationNotFound
	}
	return r, nil
}

// archived passes a store's answer on, unless the store did not know the
// reservation and the durable record holds it in a final state: the store
// dropped it after its retention (redisstore.WithRetention). The record
// then answers as the store would have: as it stands to a read (want ""),
// as a repeat when it is already in want, else with the conflict the store
// gives a reservation in that state. Another buyer's (user, when set) is
// unknown, as in the store.
func (s *Service) archived(r Reservation, err error) func(ctx context.Context, id, user string, want Status) (Reservation, error) {
	return func(ctx context.Context, id, user string, want Status) (Reservation, error) {
		if s.archive == nil || !errors.Is(err, ErrReservationNotFound) {
			return r, err
		}
		old, aerr := s.archive.Reservation(ctx, id)
		switch {
		case errors.Is(aerr, ErrReservationNotFound):
			return r, err
		case aerr != nil:
			return Reservation{}, fmt.Errorf("%w: the durable record cannot be read: %w", ErrUnavailable, aerr)
		case old.Status == StatusPending || (user != "" && old.UserID != user):
			// A pending hold the store lacks is not one it dropped: its
			// item is being rebuilt, or it never reached the store.
			return r, err
		case want == "" || old.Status == want:
			return old, nil
		}
		return Reservation{}, statusConflict(old.Status)
	}
}

// statusConflict is the error the store answers for a change of a
// reservation that is already in st.
func statusConflict(st Status) error {
	switch st {
	case StatusConfirmed:
		return ErrReservationConfirmed
	case StatusCancelled:
		return ErrReservationCancelled
	}
	return ErrReservationExpired
}

func (s *Service) byID(ctx context.Context, id string, op func(context.Context, string) (Reservation, error)) (Reservation, error) {
	sku, ok := ParseID(id)
	if !ok {
		return Reservation{}, fmt.Errorf("%w: malformed reservation id", ErrInvalid)
	}
	return guard(ctx, s, sku, func() (Reservation, error) { return op(ctx, id) })
}

// Ready reports whether the store answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

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
