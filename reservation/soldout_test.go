package reservation

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// scriptedStore answers Reserve from a queue the test fills, counts the
// calls that reach it, and acknowledges cancels and seeds.
type scriptedStore struct {
	Store // unused methods: a call would panic, which is the point

	mu       sync.Mutex
	answers  []error // nil: a hold is granted
	reserves int
}

func (s *scriptedStore) Reserve(_ context.Context, req ReserveRequest) (Reservation, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserves++
	var err error
	if len(s.answers) > 0 {
		err, s.answers = s.answers[0], s.answers[1:]
	}
	if err != nil {
		return Reservation{}, false, err
	}
	return Reservation{ID: req.ID, SKU: req.SKU, UserID: req.UserID, Quantity: req.Quantity, Status: StatusPending}, false, nil
}

func (s *scriptedStore) Cancel(_ context.Context, id string) (Reservation, error) {
	sku, _ := ParseID(id)
	return Reservation{ID: id, SKU: sku, Status: StatusCancelled}, nil
}

func (s *scriptedStore) SeedMany(_ context.Context, specs []ItemSpec) ([]SeedResult, []error) {
	return make([]SeedResult, len(specs)), make([]error, len(specs))
}

func (s *scriptedStore) answer(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = append(s.answers, errs...)
}

func (s *scriptedStore) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserves
}

// memoryService is a Service with sold-out memory of ttl on a clock the test
// moves by hand.
func memoryService(t *testing.T, ttl time.Duration) (*Service, *scriptedStore, *time.Duration) {
	t.Helper()
	store := &scriptedStore{}
	svc := NewService(store, nil, WithSoldOutMemory(ttl))
	var now time.Duration
	svc.soldOut.now = func() time.Duration { return now }
	return svc, store, &now
}

func reserveAs(t *testing.T, svc *Service, sku, user string, qty int, key string) error {
	t.Helper()
	_, _, err := svc.Reserve(context.Background(), ReserveRequest{SKU: sku, UserID: user, Quantity: qty, IdempotencyKey: key})
	return err
}

func TestSoldOutMemory(t *testing.T) {
	soldOut := func(available int64, next time.Duration) error {
		return &SoldOutError{Available: available, NextExpiry: next}
	}
	type step struct {
		advance   time.Duration
		qty       int
		key       string // an idempotency key
		cancel    bool   // a cancel through this instance first
		seed      bool   // a restock through this instance first
		wantStore bool   // the request must reach the store
	}
	tests := []struct {
		name    string
		ttl     time.Duration
		answers []error // the store's answers, in order
		steps   []step
	}{
		{
			name:    "refusals come from memory until it lapses",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(0, -1), soldOut(0, -1)},
			steps: []step{
				{qty: 1, wantStore: true},
				{qty: 1}, {advance: 49 * time.Millisecond, qty: 1},
				{advance: time.Millisecond, qty: 1, wantStore: true},
			},
		},
		{
			name:    "no longer than until the next hold falls due",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(0, 10*time.Millisecond), soldOut(0, -1)},
			steps: []step{
				{qty: 1, wantStore: true},
				{advance: 9 * time.Millisecond, qty: 1},
				{advance: time.Millisecond, qty: 1, wantStore: true},
			},
		},
		{
			name:    "a hold due now is not remembered at all",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(0, 0), soldOut(0, 0)},
			steps:   []step{{qty: 1, wantStore: true}, {qty: 1, wantStore: true}},
		},
		{
			name:    "a quantity the remembered units could serve asks the store",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(1, -1), nil},
			steps:   []step{{qty: 2, wantStore: true}, {qty: 2}, {qty: 1, wantStore: true}},
		},
		{
			name:    "a request with an idempotency key always asks the store",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(0, -1), nil},
			steps:   []step{{qty: 1, wantStore: true}, {qty: 1, key: "retry-1", wantStore: true}},
		},
		{
			name:    "a cancel through this instance forgets at once",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(0, -1), nil},
			steps:   []step{{qty: 1, wantStore: true}, {qty: 1}, {qty: 1, cancel: true, wantStore: true}},
		},
		{
			name:    "a restock through this instance forgets at once",
			ttl:     50 * time.Millisecond,
			answers: []error{soldOut(0, -1), nil},
			steps:   []step{{qty: 1, wantStore: true}, {qty: 1, seed: true, wantStore: true}},
		},
		{
			name:    "other refusals are not remembered",
			ttl:     50 * time.Millisecond,
			answers: []error{ErrLimitExceeded, ErrSaleNotActive, ErrUnavailable},
			steps:   []step{{qty: 1, wantStore: true}, {qty: 1, wantStore: true}, {qty: 1, wantStore: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, store, now := memoryService(t, tt.ttl)
			store.answer(tt.answers...)
			for i, st := range tt.steps {
				*now += st.advance
				if st.cancel {
					id, _ := NewID("hot")
					if _, err := svc.Cancel(context.Background(), id); err != nil {
						t.Fatal(err)
					}
				}
				if st.seed {
					if _, err := svc.Seed(context.Background(), ItemSpec{SKU: "hot", Stock: 5, PerUserLimit: 1, Hold: time.Minute}); err != nil {
						t.Fatal(err)
					}
				}
				before := store.calls()
				err := reserveAs(t, svc, "hot", "u", st.qty, st.key)
				if reached := store.calls() > before; reached != st.wantStore {
					t.Fatalf("step %d: reached the store = %v, want %v (err %v)", i, reached, st.wantStore, err)
				}
				if !st.wantStore && !errors.Is(err, ErrSoldOut) {
					t.Fatalf("step %d: answered from memory with %v, want ErrSoldOut", i, err)
				}
			}
		})
	}
}

// A refusal read from the store before a cancel here must not be remembered
// after it: the cancelled units would stay unsellable for the memory's life.
func TestSoldOutMemoryIgnoresRefusalOlderThanCancel(t *testing.T) {
	m := newSoldOutMemory(50 * time.Millisecond)
	gen := m.gen.Load() // a reserve reads the generation, then asks the store
	m.forget("hot")     // meanwhile a cancel returns units
	m.remember("hot", gen, &SoldOutError{Available: 0, NextExpiry: -1})
	if _, refused := m.refuses("hot", 1); refused {
		t.Fatal("a refusal older than the cancel was remembered")
	}
}

func TestSoldOutMemoryIsCapped(t *testing.T) {
	svc := NewService(&scriptedStore{}, nil, WithSoldOutMemory(time.Hour))
	if svc.soldOut.ttl != MaxSoldOutMemory {
		t.Fatalf("memory %v, want it capped at %v", svc.soldOut.ttl, MaxSoldOutMemory)
	}
	if NewService(&scriptedStore{}, nil, WithSoldOutMemory(0)).soldOut != nil {
		t.Fatal("a zero memory must turn it off")
	}
}

func TestSoldOutErrorIsErrSoldOut(t *testing.T) {
	for _, tt := range []struct {
		available int64
		want      string
	}{
		{3, "sold out: 3 units available"},
		{0, "sold out: 0 units available"}, // the constant, not built
		{-1, "sold out: -1 units available"},
	} {
		err := error(&SoldOutError{Available: tt.available, NextExpiry: -1})
		if !errors.Is(err, ErrSoldOut) || err.Error() != tt.want {
			t.Fatalf("%v: errors.Is(ErrSoldOut) = %v, want the text %q", err, errors.Is(err, ErrSoldOut), tt.want)
		}
	}
}
