package reservation_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// fakeRecovery is a reservation.Recovery whose answers the test sets, and
// which notes every question.
type fakeRecovery struct {
	lost        map[string]bool // Lost answers
	recorded    map[string]bool // Recorded answers
	recordedErr error

	mu            sync.Mutex
	lostAsked     []string
	recordedAsked [][]string
}

func (f *fakeRecovery) Lost(_ context.Context, sku string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lostAsked = append(f.lostAsked, sku)
	return f.lost[sku]
}

func (f *fakeRecovery) Recorded(_ context.Context, skus []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recordedAsked = append(f.recordedAsked, slices.Clone(skus))
	if f.recordedErr != nil {
		return nil, f.recordedErr
	}
	out := map[string]bool{}
	for _, sku := range skus {
		if f.recorded[sku] {
			out[sku] = true
		}
	}
	return out, nil
}

func (f *fakeRecovery) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lostAsked)
}

// newService is a Service over a redisstore on a fresh miniredis, with
// item "here" seeded (5 units, 1 per user).
func newService(t *testing.T, rec reservation.Recovery) (*reservation.Service, *redisstore.Store, *goredis.Client) {
	t.Helper()
	_, rdb := redistest.Miniredis(t)
	store, err := redisstore.New(context.Background(), rdb, "svc")
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	if _, err := store.Seed(context.Background(), spec("here", 5)); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return reservation.NewService(store, rec), store, rdb
}

func spec(sku string, stock int64) reservation.ItemSpec {
	return reservation.ItemSpec{SKU: sku, Name: "Item " + sku, Stock: stock, PerUserLimit: 1, Hold: time.Minute}
}

func mustID(t *testing.T, sku string) string {
	t.Helper()
	id, err := reservation.NewID(sku)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ops are the Service's calls on one item; each returns the call's error.
func ops(t *testing.T, sku string) map[string]func(*reservation.Service) error {
	ctx := context.Background()
	id := mustID(t, sku)
	return map[string]func(*reservation.Service) error{
		"Item": func(s *reservation.Service) error { _, err := s.Item(ctx, sku); return err },
		"Reserve": func(s *reservation.Service) error {
			_, _, err := s.Reserve(ctx, reservation.ReserveRequest{SKU: sku, UserID: "alice", Quantity: 1})
			return err
		},
		"Reserve with a key": func(s *reservation.Service) error {
			_, _, err := s.Reserve(ctx, reservation.ReserveRequest{SKU: sku, UserID: "alice", Quantity: 1, IdempotencyKey: "k"})
			return err
		},
		"Reservation": func(s *reservation.Service) error { _, err := s.Reservation(ctx, id); return err },
		"Confirm":     func(s *reservation.Service) error { _, err := s.Confirm(ctx, id); return err },
		"Cancel":      func(s *reservation.Service) error { _, err := s.Cancel(ctx, id); return err },
	}
}

var notFound = map[string]error{
	"Item": reservation.ErrItemNotFound, "Reserve": reservation.ErrItemNotFound, "Reserve with a key": reservation.ErrItemNotFound,
	"Reservation": reservation.ErrReservationNotFound, "Confirm": reservation.ErrReservationNotFound, "Cancel": reservation.ErrReservationNotFound,
}

func TestServiceNotFound(t *testing.T) {
	cases := []struct {
		name      string
		recovery  bool // a Recovery is wired
		sku       string
		wantLost  bool // ErrRecovering instead of not found
		wantAsked []string
	}{
		{name: "a lost item is recovering", recovery: true, sku: "lost", wantLost: true, wantAsked: []string{"lost"}},
		{name: "an item never recorded is not found", recovery: true, sku: "gone", wantAsked: []string{"gone"}},
		{name: "an unknown reservation of a live item is not found", recovery: true, sku: "here", wantAsked: []string{"here"}},
		{name: "without a Recovery, not found", sku: "lost"},
	}
	for _, tc := range cases {
		for op, call := range ops(t, tc.sku) {
			if tc.sku == "here" && (op == "Item" || op == "Reserve" || op == "Reserve with a key") {
				continue // the item exists: these succeed
			}
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				fake := &fakeRecovery{lost: map[string]bool{"lost": true}}
				var rec reservation.Recovery
				if tc.recovery {
					rec = fake
				}
				svc, _, _ := newService(t, rec)
				err := call(svc)
				if tc.wantLost {
					if !errors.Is(err, reservation.ErrRecovering) {
						t.Fatalf("error %v, want ErrRecovering", err)
					}
					// Only ErrRecovering: a not-found in the chain would map to 404.
					if errors.Is(err, reservation.ErrItemNotFound) || errors.Is(err, reservation.ErrReservationNotFound) {
						t.Fatalf("error %v also reads as not found", err)
					}
					if err.Error() != "item is being recovered: lost" {
						t.Fatalf("error %q", err)
					}
				} else if !errors.Is(err, notFound[op]) || errors.Is(err, reservation.ErrRecovering) {
					t.Fatalf("error %v, want %v", err, notFound[op])
				}
				if got := fake.asked(); !slices.Equal(got, tc.wantAsked) {
					t.Fatalf("Lost asked about %v, want %v", got, tc.wantAsked)
				}
			})
		}
	}
}

func TestServiceAsksRecoveryOnlyAboutNotFound(t *testing.T) {
	ctx := context.Background()
	fake := &fakeRecovery{lost: map[string]bool{"here": true, "lost": true}}
	svc, _, _ := newService(t, fake)
	r, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "here", UserID: "alice", Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"success", func() error { _, err := svc.Item(ctx, "here"); return err }, nil},
		{"a refusal", func() error {
			_, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "here", UserID: "alice", Quantity: 1})
			return err
		}, reservation.ErrLimitExceeded},
		{"a read of a live reservation", func() error { _, err := svc.Reservation(ctx, r.ID); return err }, nil},
		{"invalid sku", func() error { _, err := svc.Item(ctx, "lost!"); return err }, reservation.ErrInvalid},
		{"invalid request", func() error {
			_, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "lost", UserID: "alice", Quantity: 0})
			return err
		}, reservation.ErrInvalid},
		{"malformed id", func() error { _, err := svc.Confirm(ctx, "lost.short"); return err }, reservation.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if got := fake.asked(); len(got) != 0 {
				t.Fatalf("Lost asked about %v", got)
			}
		})
	}
}

func TestServiceSeedManyPassesRecorded(t *testing.T) {
	ctx := context.Background()
	fake := &fakeRecovery{recorded: map[string]bool{"here": true, "lost": true}, lost: map[string]bool{"lost": true}}
	svc, store, _ := newService(t, fake)
	specs := []reservation.ItemSpec{spec("lost", 3), spec("new", 4), spec("here", 6)}

	results, errs, err := svc.SeedMany(ctx, specs)
	if err != nil {
		t.Fatalf("SeedMany: %v", err)
	}
	if !errors.Is(errs[0], reservation.ErrRecovering) || results[0] != (reservation.SeedResult{}) {
		t.Fatalf("lost: %+v, %v; want ErrRecovering", results[0], errs[0])
	}
	if errs[1] != nil || !results[1].Created || results[1].Item.Stock != 4 {
		t.Fatalf("new: %+v, %v; want created", results[1], errs[1])
	}
	if errs[2] != nil || results[2].Created || results[2].Item.Stock != 6 {
		t.Fatalf("here: %+v, %v; want updated", results[2], errs[2])
	}
	if _, err := store.Item(ctx, "lost"); !errors.Is(err, reservation.ErrItemNotFound) {
		t.Fatalf("the lost item was created afresh: %v", err)
	}
	if want := [][]string{{"lost", "new", "here"}}; !slices.EqualFunc(fake.recordedAsked, want, slices.Equal) {
		t.Fatalf("Recorded asked %v, want %v", fake.recordedAsked, want)
	}
	if got := fake.asked(); !slices.Equal(got, []string{"lost"}) {
		t.Fatalf("Lost asked about %v, want [lost]", got)
	}
	for i, sp := range specs {
		if sp.Recorded {
			t.Fatalf("SeedMany set Recorded on the caller's spec %d", i)
		}
	}

	// Seed goes the same way.
	_, err = svc.Seed(ctx, spec("lost", 3))
	if !errors.Is(err, reservation.ErrRecovering) {
		t.Fatalf("Seed of the lost item: %v", err)
	}
}

func TestServiceSeedWhenTheRecordIsUnreadable(t *testing.T) {
	ctx := context.Background()
	cause := errors.New("mysql: connection refused")
	cases := []struct {
		name string
		seed func(svc *reservation.Service) error
	}{
		{"Seed", func(svc *reservation.Service) error { _, err := svc.Seed(ctx, spec("new", 3)); return err }},
		{"SeedMany", func(svc *reservation.Service) error {
			results, errs, err := svc.SeedMany(ctx, []reservation.ItemSpec{spec("new", 3), spec("here", 9)})
			if results != nil || errs != nil {
				t.Fatalf("SeedMany answered per item: %v %v", results, errs)
			}
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeRecovery{recordedErr: cause}
			svc, store, rdb := newService(t, fake)
			err := tc.seed(svc)
			if !errors.Is(err, reservation.ErrUnavailable) || !errors.Is(err, cause) {
				t.Fatalf("error %v, want ErrUnavailable wrapping the cause", err)
			}
			if _, err := store.Item(ctx, "new"); !errors.Is(err, reservation.ErrItemNotFound) {
				t.Fatalf("item created: %v", err)
			}
			if it, err := store.Item(ctx, "here"); err != nil || it.Stock != 5 {
				t.Fatalf("item here changed: %+v, %v", it, err)
			}
			if ok := rdb.SIsMember(ctx, "svc:catalog", "new").Val(); ok {
				t.Fatalf("item added to the catalogue")
			}
		})
	}
}

func TestServiceSeedValidatesBeforeAskingTheRecord(t *testing.T) {
	fake := &fakeRecovery{}
	svc, _, _ := newService(t, fake)
	bad := spec("new", 3)
	bad.PerUserLimit = 0
	_, _, err := svc.SeedMany(context.Background(), []reservation.ItemSpec{spec("ok", 1), bad})
	if !errors.Is(err, reservation.ErrInvalid) {
		t.Fatalf("error %v, want ErrInvalid", err)
	}
	if len(fake.recordedAsked) != 0 {
		t.Fatalf("Recorded asked %v for an invalid catalogue", fake.recordedAsked)
	}
}

// rebuildingRecovery finishes a rebuild while the Service asks about the
// item: Lost seeds it into the store and answers false (not lost any more).
type rebuildingRecovery struct {
	store *redisstore.Store
	asked int
}

func (r *rebuildingRecovery) Recorded(context.Context, []string) (map[string]bool, error) {
	return map[string]bool{}, nil
}

func (r *rebuildingRecovery) Lost(ctx context.Context, sku string) bool {
	r.asked++
	if _, err := r.store.Seed(ctx, spec(sku, 2)); err != nil {
		panic(err)
	}
	return false
}

func TestServiceRetriesANotFoundThatRacesARebuild(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		call  func(svc *reservation.Service) error
		check func(t *testing.T, store *redisstore.Store)
	}{
		{"Item", func(svc *reservation.Service) error {
			it, err := svc.Item(ctx, "late")
			if err == nil && (it.SKU != "late" || it.Stock != 2) {
				t.Fatalf("Item = %+v", it)
			}
			return err
		}, nil},
		{"Reserve", func(svc *reservation.Service) error {
			r, replayed, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "late", UserID: "alice", Quantity: 1})
			if err == nil && (replayed || r.Status != reservation.StatusPending || r.SKU != "late") {
				t.Fatalf("Reserve = %+v replayed=%v", r, replayed)
			}
			return err
		}, func(t *testing.T, store *redisstore.Store) {
			if it, err := store.Item(ctx, "late"); err != nil || it.Reserved != 1 {
				t.Fatalf("item after the retried reserve: %+v, %v; want 1 reserved", it, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, rdb := redistest.Miniredis(t)
			store, err := redisstore.New(ctx, rdb, "svc")
			if err != nil {
				t.Fatal(err)
			}
			rec := &rebuildingRecovery{store: store}
			if err := tc.call(reservation.NewService(store, rec)); err != nil {
				t.Fatalf("error %v, want the second run's success", err)
			}
			if rec.asked != 1 {
				t.Fatalf("Lost asked %d times, want 1", rec.asked)
			}
			if tc.check != nil {
				tc.check(t, store)
			}
		})
	}
}

// resendingStore runs every reserve twice, as a Redis client does that
// re-sends a call whose answer it lost, and returns the second answer.
type resendingStore struct{ *redisstore.Store }

func (s resendingStore) Reserve(ctx context.Context, req reservation.ReserveRequest) (reservation.Reservation, bool, error) {
	if _, _, err := s.Store.Reserve(ctx, req); err != nil {
		return reservation.Reservation{}, false, err
	}
	return s.Store.Reserve(ctx, req)
}

func TestServiceReserveResentIsNotAReplay(t *testing.T) {
	ctx := context.Background()
	_, store, _ := newService(t, nil)
	svc := reservation.NewService(resendingStore{store}, nil)
	first, replayed, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "here", UserID: "alice", Quantity: 1, IdempotencyKey: "k"})
	if err != nil || replayed {
		t.Fatalf("reserve: replayed=%v err=%v; want a fresh hold", replayed, err)
	}
	if it, err := store.Item(ctx, "here"); err != nil || it.Reserved != 1 {
		t.Fatalf("item %+v, %v; want 1 reserved", it, err)
	}
	// A real replay (the client's retry with its key) is still one.
	again, replayed, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: "here", UserID: "alice", Quantity: 1, IdempotencyKey: "k"})
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("retry: %+v replayed=%v err=%v; want the first hold replayed", again, replayed, err)
	}
}
