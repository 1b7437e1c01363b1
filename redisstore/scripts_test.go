package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// These tests run every path of every Lua script on miniredis, whose clock
// stands still until a test advances it (redistest.Advance).

func TestSeedCreateThenUpdate(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	t0 := s.now(t)
	spec := reservation.ItemSpec{
		SKU: "phone", Name: "Phone X", Stock: 10, PerUserLimit: 2, Hold: 90 * time.Second,
		StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour),
	}

	created := mustSeed(t, s, spec)
	if !created.Created {
		t.Fatalf("first seed: Created = false, want true")
	}
	want := reservation.Item{
		SKU: "phone", Name: "Phone X", Stock: 10, Available: 10, PerUserLimit: 2, Hold: 90 * time.Second,
		StartsAt: spec.StartsAt, EndsAt: spec.EndsAt, CreatedAt: t0, UpdatedAt: t0,
	}
	wantItem(t, created.Item, want)

	s.advance(t, time.Second)
	spec.Name, spec.PerUserLimit, spec.Hold = "Phone X (red)", 1, time.Minute
	spec.StartsAt, spec.EndsAt = time.Time{}, time.Time{} // the window is removed
	updated := mustSeed(t, s, spec)
	if updated.Created {
		t.Fatalf("second seed: Created = true, want false")
	}
	want.Name, want.PerUserLimit, want.Hold = "Phone X (red)", 1, time.Minute
	want.StartsAt, want.EndsAt = time.Time{}, time.Time{}
	want.UpdatedAt = t0.Add(time.Second)
	wantItem(t, updated.Item, want)

	got, err := s.Item(ctx, "phone")
	if err != nil {
		t.Fatalf("Item: %v", err)
	}
	wantItem(t, got, want)
}

func wantItem(t *testing.T, got, want reservation.Item) {
	t.Helper()
	times := [][2]time.Time{
		{got.StartsAt, want.StartsAt}, {got.EndsAt, want.EndsAt},
		{got.CreatedAt, want.CreatedAt}, {got.UpdatedAt, want.UpdatedAt},
	}
	for _, p := range times {
		if !p[0].Equal(p[1]) {
			t.Fatalf("item times differ:\ngot  %+v\nwant %+v", got, want)
		}
	}
	got.StartsAt, got.EndsAt, got.CreatedAt, got.UpdatedAt = want.StartsAt, want.EndsAt, want.CreatedAt, want.UpdatedAt
	want.Buckets = max(want.Buckets, 1) // an item is one bucket unless seeded with more
	if got != want {
		t.Fatalf("item:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestSeedRestock(t *testing.T) {
	// Each case starts from stock 10 with `held` units in one pending hold
	// and `sold` units confirmed, then seeds the new stock.
	cases := []struct {
		name        string
		held, sold  int
		heldExpired bool // the hold is due but not yet settled
		restock     int64
		wantErr     error
		want        counters
	}{
		{name: "up moves available by the difference", held: 3, sold: 2, restock: 15,
			want: counters{Stock: 15, Available: 10, Reserved: 3, Sold: 2}},
		{name: "same stock changes nothing", held: 3, sold: 2, restock: 10,
			want: counters{Stock: 10, Available: 5, Reserved: 3, Sold: 2}},
		{name: "down moves available by the difference", held: 3, sold: 2, restock: 7,
			want: counters{Stock: 7, Available: 2, Reserved: 3, Sold: 2}},
		{name: "down to exactly the committed units", held: 3, sold: 2, restock: 5,
			want: counters{Stock: 5, Available: 0, Reserved: 3, Sold: 2}},
		{name: "down to zero with nothing committed", restock: 0,
			want: counters{Stock: 0}},
		{name: "below reserved plus sold", held: 3, sold: 2, restock: 4,
			wantErr: reservation.ErrStockBelowCommitted},
		{name: "below sold alone", sold: 2, restock: 1,
			wantErr: reservation.ErrStockBelowCommitted},
		{name: "below reserved alone", held: 3, restock: 2,
			wantErr: reservation.ErrStockBelowCommitted},
		{name: "due holds are not committed", held: 3, sold: 2, heldExpired: true, restock: 2,
			want: counters{Stock: 2, Available: 0, Reserved: 0, Sold: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			spec := itemSpec("tv", 10, 10)
			mustSeed(t, s, spec)
			if tc.sold > 0 {
				mustConfirm(t, s, mustReserve(t, s, "tv", "buyer", tc.sold).ID)
			}
			if tc.held > 0 {
				mustReserve(t, s, "tv", "holder", tc.held)
			}
			if tc.heldExpired {
				s.advance(t, spec.Hold)
			}
			before := snapshot(t, s, "tv")

			spec.Stock = tc.restock
			res, err := s.Seed(context.Background(), spec)
			wantErr(t, "seed", err, tc.wantErr)
			if tc.wantErr != nil {
				wantUnchanged(t, s, "tv", before)
				assertInvariant(t, s, "tv")
				return
			}
			if res.Created {
				t.Fatalf("restock reported Created")
			}
			got := counters{Stock: res.Item.Stock, Available: res.Item.Available, Reserved: res.Item.Reserved, Sold: res.Item.Sold}
			if got != tc.want {
				t.Fatalf("seed answered %+v, want %+v", got, tc.want)
			}
			wantCounters(t, s, "tv", tc.want)
		})
	}
}

func TestReserve(t *testing.T) {
	type spec = reservation.ItemSpec
	cases := []struct {
		name    string
		item    func(now time.Time) spec // nil: the item does not exist
		setup   func(t *testing.T, s *testStore)
		user    string
		qty     int
		wantErr error
		want    counters // after the call
	}{
		{
			name: "success",
			item: func(time.Time) spec { return itemSpec("sku", 5, 1) },
			user: "alice", qty: 1,
			want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name: "several units within the limit",
			item: func(time.Time) spec { return itemSpec("sku", 5, 3) },
			user: "alice", qty: 3,
			want: counters{Stock: 5, Available: 2, Reserved: 3},
		},
		{
			name:  "the last unit",
			item:  func(time.Time) spec { return itemSpec("sku", 2, 1) },
			setup: func(t *testing.T, s *testStore) { mustReserve(t, s, "sku", "bob", 1) },
			user:  "alice", qty: 1,
			want: counters{Stock: 2, Available: 0, Reserved: 2},
		},
		{
			name:  "sold out",
			item:  func(time.Time) spec { return itemSpec("sku", 1, 1) },
			setup: func(t *testing.T, s *testStore) { mustReserve(t, s, "sku", "bob", 1) },
			user:  "alice", qty: 1, wantErr: reservation.ErrSoldOut,
			want: counters{Stock: 1, Available: 0, Reserved: 1},
		},
		{
			name: "sold out when the stock is all sold",
			item: func(time.Time) spec { return itemSpec("sku", 1, 1) },
			setup: func(t *testing.T, s *testStore) {
				mustConfirm(t, s, mustReserve(t, s, "sku", "bob", 1).ID)
			},
			user: "alice", qty: 1, wantErr: reservation.ErrSoldOut,
			want: counters{Stock: 1, Available: 0, Sold: 1},
		},
		{
			name: "zero stock",
			item: func(time.Time) spec { return itemSpec("sku", 0, 1) },
			user: "alice", qty: 1, wantErr: reservation.ErrSoldOut,
			want: counters{},
		},
		{
			name: "all or nothing: 3 asked, 2 available, none taken",
			item: func(time.Time) spec { return itemSpec("sku", 2, 5) },
			user: "alice", qty: 3, wantErr: reservation.ErrSoldOut,
			want: counters{Stock: 2, Available: 2},
		},
		{
			name: "per-user limit in one call",
			item: func(time.Time) spec { return itemSpec("sku", 10, 2) },
			user: "alice", qty: 3, wantErr: reservation.ErrLimitExceeded,
			want: counters{Stock: 10, Available: 10},
		},
		{
			name:  "per-user limit across calls",
			item:  func(time.Time) spec { return itemSpec("sku", 10, 2) },
			setup: func(t *testing.T, s *testStore) { mustReserve(t, s, "sku", "alice", 2) },
			user:  "alice", qty: 1, wantErr: reservation.ErrLimitExceeded,
			want: counters{Stock: 10, Available: 8, Reserved: 2},
		},
		{
			name:  "per-user limit is not shared between users",
			item:  func(time.Time) spec { return itemSpec("sku", 10, 2) },
			setup: func(t *testing.T, s *testStore) { mustReserve(t, s, "sku", "bob", 2) },
			user:  "alice", qty: 2,
			want: counters{Stock: 10, Available: 6, Reserved: 4},
		},
		{
			name: "before starts_at",
			item: func(now time.Time) spec {
				sp := itemSpec("sku", 5, 1)
				sp.StartsAt = now.Add(time.Millisecond)
				return sp
			},
			user: "alice", qty: 1, wantErr: reservation.ErrSaleNotActive,
			want: counters{Stock: 5, Available: 5},
		},
		{
			name: "at starts_at",
			item: func(now time.Time) spec {
				sp := itemSpec("sku", 5, 1)
				sp.StartsAt = now
				return sp
			},
			user: "alice", qty: 1,
			want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name: "inside the window",
			item: func(now time.Time) spec {
				sp := itemSpec("sku", 5, 1)
				sp.StartsAt, sp.EndsAt = now.Add(-time.Hour), now.Add(time.Hour)
				return sp
			},
			user: "alice", qty: 1,
			want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name: "one millisecond before ends_at",
			item: func(now time.Time) spec {
				sp := itemSpec("sku", 5, 1)
				sp.EndsAt = now.Add(time.Millisecond)
				return sp
			},
			user: "alice", qty: 1,
			want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name: "at ends_at",
			item: func(now time.Time) spec {
				sp := itemSpec("sku", 5, 1)
				sp.EndsAt = now
				return sp
			},
			user: "alice", qty: 1, wantErr: reservation.ErrSaleNotActive,
			want: counters{Stock: 5, Available: 5},
		},
		{
			name: "after ends_at",
			item: func(now time.Time) spec {
				sp := itemSpec("sku", 5, 1)
				sp.StartsAt, sp.EndsAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
				return sp
			},
			user: "alice", qty: 1, wantErr: reservation.ErrSaleNotActive,
			want: counters{Stock: 5, Available: 5},
		},
		{
			name: "unknown item",
			user: "alice", qty: 1, wantErr: reservation.ErrItemNotFound,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			now := s.now(t)
			var sp spec
			if tc.item != nil {
				sp = tc.item(now)
				mustSeed(t, s, sp)
			}
			if tc.setup != nil {
				tc.setup(t, s)
			}
			before := snapshot(t, s, "sku")

			req := request(t, "sku", tc.user, tc.qty, "")
			r, replayed, err := s.Reserve(ctx, req)
			wantErr(t, "reserve", err, tc.wantErr)
			if tc.item == nil {
				wantUnchanged(t, s, "sku", before)
				return
			}
			wantCounters(t, s, "sku", tc.want)
			if tc.wantErr != nil {
				wantUnchanged(t, s, "sku", before)
				if r != (reservation.Reservation{}) || replayed {
					t.Fatalf("refusal came with a reservation: %+v replayed=%v", r, replayed)
				}
				return
			}
			want := reservation.Reservation{
				ID: req.ID, SKU: "sku", UserID: tc.user, Quantity: tc.qty, Status: reservation.StatusPending,
				CreatedAt: now, ExpiresAt: now.Add(sp.Hold), UpdatedAt: now,
			}
			wantReservation(t, r, want)
			if replayed {
				t.Fatalf("a fresh hold reported replayed")
			}
			got, err := s.Reservation(ctx, req.ID)
			if err != nil {
				t.Fatalf("Reservation: %v", err)
			}
			wantReservation(t, got, want)
		})
	}
}

func wantReservation(t testing.TB, got, want reservation.Reservation) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("reservation times:\ngot  %+v\nwant %+v", got, want)
	}
	got.CreatedAt, got.ExpiresAt, got.UpdatedAt = want.CreatedAt, want.ExpiresAt, want.UpdatedAt
	if got != want {
		t.Fatalf("reservation:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestPerUserLimitFreedBy(t *testing.T) {
	// alice holds her whole allowance of 2, lets it go one way or another,
	// and asks for 2 again.
	cases := []struct {
		name    string
		release func(t *testing.T, s *testStore, r reservation.Reservation)
		wantErr error
	}{
		{
			name:    "cancel",
			release: func(t *testing.T, s *testStore, r reservation.Reservation) { mustCancel(t, s, r.ID) },
		},
		{
			name: "expiry, settled by the next reserve",
			release: func(t *testing.T, s *testStore, r reservation.Reservation) {
				s.advance(t, 10*time.Minute)
			},
		},
		{
			name: "expiry, settled by the sweeper",
			release: func(t *testing.T, s *testStore, r reservation.Reservation) {
				s.advance(t, 10*time.Minute)
				if n, err := s.SweepDue(context.Background(), 10); err != nil || n != 1 {
					t.Fatalf("SweepDue = %d, %v; want 1", n, err)
				}
			},
		},
		{
			name: "confirm does not free it: bought units count",
			release: func(t *testing.T, s *testStore, r reservation.Reservation) {
				mustConfirm(t, s, r.ID)
			},
			wantErr: reservation.ErrLimitExceeded,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			mustSeed(t, s, itemSpec("sku", 10, 2))
			r := mustReserve(t, s, "sku", "alice", 2)
			_, _, err := s.Reserve(context.Background(), request(t, "sku", "alice", 1, ""))
			wantErr(t, "reserve over the limit", err, reservation.ErrLimitExceeded)

			tc.release(t, s, r)
			assertInvariant(t, s, "sku")
			_, _, err = s.Reserve(context.Background(), request(t, "sku", "alice", 2, ""))
			wantErr(t, "reserve after release", err, tc.wantErr)
			assertInvariant(t, s, "sku")
		})
	}
}

func TestReserveIdempotency(t *testing.T) {
	type call struct {
		user, key string
		qty       int
	}
	cases := []struct {
		name         string
		stock        int64
		first        call
		between      func(t *testing.T, s *testStore, first reservation.Reservation)
		second       call
		sameID       bool // the second call reuses the first call's reservation id
		wantErr      error
		wantReplayed bool // and the first reservation comes back
		want         counters
	}{
		{
			name:  "same id replays",
			stock: 5, first: call{user: "alice", qty: 1}, second: call{user: "alice", qty: 1}, sameID: true,
			wantReplayed: true, want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name:  "same id replays the original whatever the body",
			stock: 5, first: call{user: "alice", qty: 1}, second: call{user: "alice", qty: 2}, sameID: true,
			wantReplayed: true, want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name:  "same id replays even when sold out since",
			stock: 1, first: call{user: "alice", qty: 1}, second: call{user: "alice", qty: 1}, sameID: true,
			wantReplayed: true, want: counters{Stock: 1, Available: 0, Reserved: 1},
		},
		{
			name:  "same key replays",
			stock: 5, first: call{user: "alice", key: "k1", qty: 2}, second: call{user: "alice", key: "k1", qty: 2},
			wantReplayed: true, want: counters{Stock: 5, Available: 3, Reserved: 2},
		},
		{
			name:  "same key replays when sold out since",
			stock: 2, first: call{user: "alice", key: "k1", qty: 2}, second: call{user: "alice", key: "k1", qty: 2},
			wantReplayed: true, want: counters{Stock: 2, Available: 0, Reserved: 2},
		},
		{
			name:  "same key replays a cancelled reservation as it is",
			stock: 5, first: call{user: "alice", key: "k1", qty: 1}, second: call{user: "alice", key: "k1", qty: 1},
			between: func(t *testing.T, s *testStore, first reservation.Reservation) {
				mustCancel(t, s, first.ID)
			},
			wantReplayed: true, want: counters{Stock: 5, Available: 5},
		},
		{
			name:  "same key with another quantity",
			stock: 5, first: call{user: "alice", key: "k1", qty: 1}, second: call{user: "alice", key: "k1", qty: 2},
			wantErr: reservation.ErrIdempotencyKeyReused, want: counters{Stock: 5, Available: 4, Reserved: 1},
		},
		{
			name:  "same key, other user: independent",
			stock: 5, first: call{user: "alice", key: "k1", qty: 1}, second: call{user: "bob", key: "k1", qty: 1},
			want: counters{Stock: 5, Available: 3, Reserved: 2},
		},
		{
			name:  "user and key do not run together",
			stock: 5, first: call{user: "a:b", key: "c", qty: 1}, second: call{user: "a", key: "b:c", qty: 1},
			want: counters{Stock: 5, Available: 3, Reserved: 2},
		},
		{
			name:  "other key, same user: a new hold",
			stock: 5, first: call{user: "alice", key: "k1", qty: 1}, second: call{user: "alice", key: "k2", qty: 1},
			want: counters{Stock: 5, Available: 3, Reserved: 2},
		},
		{
			name:  "no key: a new hold",
			stock: 5, first: call{user: "alice", qty: 1}, second: call{user: "alice", qty: 1},
			want: counters{Stock: 5, Available: 3, Reserved: 2},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			mustSeed(t, s, itemSpec("sku", tc.stock, 2))
			req1 := request(t, "sku", tc.first.user, tc.first.qty, tc.first.key)
			first, replayed, err := s.Reserve(ctx, req1)
			if err != nil || replayed {
				t.Fatalf("first reserve: replayed=%v err=%v", replayed, err)
			}
			assertInvariant(t, s, "sku")
			if tc.between != nil {
				tc.between(t, s, first)
			}
			// What the first reservation reads as now, to compare the replay with.
			current, err := s.Reservation(ctx, first.ID)
			if err != nil {
				t.Fatalf("Reservation: %v", err)
			}

			req2 := request(t, "sku", tc.second.user, tc.second.qty, tc.second.key)
			if tc.sameID {
				req2.ID = req1.ID
			}
			second, replayed, err := s.Reserve(ctx, req2)
			wantErr(t, "second reserve", err, tc.wantErr)
			wantCounters(t, s, "sku", tc.want)
			switch {
			case tc.wantErr != nil:
				if replayed {
					t.Fatalf("refusal reported replayed")
				}
				if errors.Is(tc.wantErr, reservation.ErrIdempotencyKeyReused) {
					wantReservation(t, second, current) // names the reservation the key belongs to
				}
			case tc.wantReplayed:
				if !replayed {
					t.Fatalf("replayed = false, want true")
				}
				wantReservation(t, second, current)
			default:
				if replayed || second.ID != req2.ID || second.ID == first.ID {
					t.Fatalf("second reserve: replayed=%v id=%s, want a new hold %s", replayed, second.ID, req2.ID)
				}
			}
		})
	}
}

func TestConfirmCancel(t *testing.T) {
	type step struct {
		op         string // "confirm" or "cancel"
		wantErr    error
		wantStatus reservation.Status
		unchanged  bool // the step writes nothing
	}
	// Each case holds 2 of 5 units, then takes its steps.
	cases := []struct {
		name  string
		steps []step
		want  counters
	}{
		{
			name:  "confirm",
			steps: []step{{op: "confirm", wantStatus: reservation.StatusConfirmed}},
			want:  counters{Stock: 5, Available: 3, Sold: 2},
		},
		{
			name: "confirm twice",
			steps: []step{
				{op: "confirm", wantStatus: reservation.StatusConfirmed},
				{op: "confirm", wantStatus: reservation.StatusConfirmed, unchanged: true},
			},
			want: counters{Stock: 5, Available: 3, Sold: 2},
		},
		{
			name:  "cancel returns the units",
			steps: []step{{op: "cancel", wantStatus: reservation.StatusCancelled}},
			want:  counters{Stock: 5, Available: 5},
		},
		{
			name: "cancel twice",
			steps: []step{
				{op: "cancel", wantStatus: reservation.StatusCancelled},
				{op: "cancel", wantStatus: reservation.StatusCancelled, unchanged: true},
			},
			want: counters{Stock: 5, Available: 5},
		},
		{
			name: "confirm after cancel",
			steps: []step{
				{op: "cancel", wantStatus: reservation.StatusCancelled},
				{op: "confirm", wantErr: reservation.ErrReservationCancelled, wantStatus: reservation.StatusCancelled, unchanged: true},
			},
			want: counters{Stock: 5, Available: 5},
		},
		{
			name: "cancel after confirm",
			steps: []step{
				{op: "confirm", wantStatus: reservation.StatusConfirmed},
				{op: "cancel", wantErr: reservation.ErrReservationConfirmed, wantStatus: reservation.StatusConfirmed, unchanged: true},
			},
			want: counters{Stock: 5, Available: 3, Sold: 2},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			mustSeed(t, s, itemSpec("sku", 5, 2))
			held := mustReserve(t, s, "sku", "alice", 2)
			for i, st := range tc.steps {
				s.advance(t, time.Second) // so a write would show in updated_ms
				before := snapshot(t, s, "sku")
				var r reservation.Reservation
				var err error
				switch st.op {
				case "confirm":
					r, err = s.Confirm(ctx, held.ID)
				case "cancel":
					r, err = s.Cancel(ctx, held.ID)
				}
				what := fmt.Sprintf("step %d (%s)", i, st.op)
				wantErr(t, what, err, st.wantErr)
				assertInvariant(t, s, "sku")
				if st.unchanged {
					wantUnchanged(t, s, "sku", before)
				}
				if r.ID != held.ID || r.Status != st.wantStatus || r.Quantity != 2 || r.UserID != "alice" {
					t.Fatalf("%s: reservation %+v, want %s with status %s", what, r, held.ID, st.wantStatus)
				}
				read, err := s.Reservation(ctx, held.ID)
				if err != nil || read.Status != st.wantStatus {
					t.Fatalf("%s: Reservation reads %s, %v; want %s", what, read.Status, err, st.wantStatus)
				}
				wantReservation(t, r, read)
			}
			wantCounters(t, s, "sku", tc.want)
		})
	}
}

func TestNotFound(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("known", 5, 1))
	unknownOfKnown := newID(t, "known")
	unknownOfUnknown := newID(t, "unknown")
	cases := []struct {
		name string
		call func() error
		want error
	}{
		{"Item of an unknown item", func() error { _, err := s.Item(ctx, "unknown"); return err }, reservation.ErrItemNotFound},
		{"Reserve of an unknown item", func() error {
			_, _, err := s.Reserve(ctx, request(t, "unknown", "alice", 1, ""))
			return err
		}, reservation.ErrItemNotFound},
		{"Reservation unknown", func() error { _, err := s.Reservation(ctx, unknownOfKnown); return err }, reservation.ErrReservationNotFound},
		{"Confirm unknown", func() error { _, err := s.Confirm(ctx, unknownOfKnown); return err }, reservation.ErrReservationNotFound},
		{"Cancel unknown", func() error { _, err := s.Cancel(ctx, unknownOfKnown); return err }, reservation.ErrReservationNotFound},
		{"Reservation of an unknown item", func() error { _, err := s.Reservation(ctx, unknownOfUnknown); return err }, reservation.ErrReservationNotFound},
		{"Confirm of an unknown item", func() error { _, err := s.Confirm(ctx, unknownOfUnknown); return err }, reservation.ErrReservationNotFound},
		{"Cancel of an unknown item", func() error { _, err := s.Cancel(ctx, unknownOfUnknown); return err }, reservation.ErrReservationNotFound},
		{"malformed id", func() error { _, err := s.Confirm(ctx, "known.not-an-id"); return err }, reservation.ErrReservationNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, s, "known")
			wantErr(t, tc.name, tc.call(), tc.want)
			wantUnchanged(t, s, "known", before)
			if n, err := s.rdb.Exists(ctx, s.key("unknown", "item")).Result(); err != nil || n != 0 {
				t.Fatalf("unknown item was created: %d %v", n, err)
			}
		})
	}
}

func TestExpiryBoundary(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	spec := itemSpec("sku", 3, 1)
	spec.Hold = 30 * time.Second
	mustSeed(t, s, spec)
	r := mustReserve(t, s, "sku", "alice", 1)

	s.advance(t, spec.Hold-time.Millisecond)
	if got, err := s.Reservation(ctx, r.ID); err != nil || got.Status != reservation.StatusPending {
		t.Fatalf("1ms before expiry: %s, %v; want pending", got.Status, err)
	}
	s.advance(t, time.Millisecond)
	if got, err := s.Reservation(ctx, r.ID); err != nil || got.Status != reservation.StatusExpired {
		t.Fatalf("at expiry: %s, %v; want expired", got.Status, err)
	}
	// Reading settles nothing: the hold is still counted until someone does.
	wantCounters(t, s, "sku", counters{Stock: 3, Available: 2, Reserved: 1})
}

func TestExpirySettledBy(t *testing.T) {
	// alice's hold of 1 of 3 units (per-user limit 5) is due; each case does
	// one thing and checks its answer; then the counters and the stored
	// record are checked.
	ctx := context.Background()
	cases := []struct {
		name        string
		act         func(t *testing.T, s *testStore, id string)
		want        counters
		wantSettled bool // the stored record says expired, not pending
	}{
		{
			name: "Reservation reads expired but writes nothing",
			act: func(t *testing.T, s *testStore, id string) {
				r, err := s.Reservation(ctx, id)
				if err != nil || r.Status != reservation.StatusExpired {
					t.Fatalf("Reservation: %s, %v; want expired", r.Status, err)
				}
			},
			want: counters{Stock: 3, Available: 2, Reserved: 1},
		},
		{
			name: "Confirm refuses and returns the units",
			act: func(t *testing.T, s *testStore, id string) {
				for range 2 { // and again, once it is settled
					r, err := s.Confirm(ctx, id)
					wantErr(t, "confirm", err, reservation.ErrReservationExpired)
					if r.Status != reservation.StatusExpired || r.ID != id {
						t.Fatalf("confirm answered %+v, want the expired reservation", r)
					}
				}
			},
			want: counters{Stock: 3, Available: 3}, wantSettled: true,
		},
		{
			name: "Cancel refuses and returns the units",
			act: func(t *testing.T, s *testStore, id string) {
				for range 2 {
					r, err := s.Cancel(ctx, id)
					wantErr(t, "cancel", err, reservation.ErrReservationExpired)
					if r.Status != reservation.StatusExpired || r.ID != id {
						t.Fatalf("cancel answered %+v, want the expired reservation", r)
					}
				}
			},
			want: counters{Stock: 3, Available: 3}, wantSettled: true,
		},
		{
			name: "Item settles lazily",
			act: func(t *testing.T, s *testStore, id string) {
				it, err := s.Item(ctx, "sku")
				if err != nil || it.Available != 3 || it.Reserved != 0 {
					t.Fatalf("Item: %+v, %v; want available 3 reserved 0", it, err)
				}
			},
			want: counters{Stock: 3, Available: 3}, wantSettled: true,
		},
		{
			name: "SweepDue",
			act: func(t *testing.T, s *testStore, id string) {
				if n, err := s.SweepDue(ctx, 10); err != nil || n != 1 {
					t.Fatalf("SweepDue = %d, %v; want 1", n, err)
				}
			},
			want: counters{Stock: 3, Available: 3}, wantSettled: true,
		},
		{
			name: "another buyer's Reserve",
			act: func(t *testing.T, s *testStore, id string) {
				mustReserve(t, s, "sku", "bob", 1)
			},
			want: counters{Stock: 3, Available: 2, Reserved: 1}, wantSettled: true,
		},
		{
			name: "another buyer's refused Reserve",
			act: func(t *testing.T, s *testStore, id string) {
				_, _, err := s.Reserve(ctx, request(t, "sku", "bob", 4, ""))
				wantErr(t, "reserve 4 of 3", err, reservation.ErrSoldOut)
			},
			want: counters{Stock: 3, Available: 3}, wantSettled: true,
		},
		{
			name: "Seed",
			act: func(t *testing.T, s *testStore, id string) {
				spec := itemSpec("sku", 3, 5)
				spec.Hold = 30 * time.Second
				mustSeed(t, s, spec)
			},
			want: counters{Stock: 3, Available: 3}, wantSettled: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			spec := itemSpec("sku", 3, 5)
			spec.Hold = 30 * time.Second
			mustSeed(t, s, spec)
			r := mustReserve(t, s, "sku", "alice", 1)
			s.advance(t, spec.Hold)
			wantCounters(t, s, "sku", counters{Stock: 3, Available: 2, Reserved: 1})

			tc.act(t, s, r.ID)
			wantCounters(t, s, "sku", tc.want)
			status := rawStatus(t, s, r.ID)
			if settled := status == "expired"; settled != tc.wantSettled {
				t.Fatalf("stored status %q, want settled=%v", status, tc.wantSettled)
			}
			if got, err := s.Reservation(ctx, r.ID); err != nil || got.Status != reservation.StatusExpired {
				t.Fatalf("Reservation afterwards: %s, %v; want expired", got.Status, err)
			}
		})
	}
}

func TestSweepDue(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	short := itemSpec("short", 10, 1)
	short.Hold = 10 * time.Second
	long := itemSpec("long", 10, 1)
	long.Hold = 20 * time.Second
	mustSeed(t, s, short)
	mustSeed(t, s, long)
	mustSeed(t, s, itemSpec("idle", 5, 1))
	// A catalogue entry whose item was never created is passed over.
	if err := s.rdb.SAdd(ctx, s.prefix+":catalog", "ghost").Err(); err != nil {
		t.Fatal(err)
	}

	var shortHolds []reservation.Reservation
	for i := range 5 {
		shortHolds = append(shortHolds, mustReserve(t, s, "short", fmt.Sprintf("u%d", i), 1))
	}
	for i := range 3 {
		mustReserve(t, s, "long", fmt.Sprintf("u%d", i), 1)
	}
	mustConfirm(t, s, shortHolds[0].ID) // sold: never expires
	mustCancel(t, s, shortHolds[1].ID)  // given up: nothing to expire

	steps := []struct {
		name        string
		advance     time.Duration
		batch       int
		wantExpired int
		short, long counters
	}{
		{name: "nothing due yet", advance: 10*time.Second - time.Millisecond, batch: 2, wantExpired: 0,
			short: counters{Stock: 10, Available: 6, Reserved: 3, Sold: 1}, long: counters{Stock: 10, Available: 7, Reserved: 3}},
		{name: "short holds due, in batches smaller than the count", advance: time.Millisecond, batch: 2, wantExpired: 3,
			short: counters{Stock: 10, Available: 9, Sold: 1}, long: counters{Stock: 10, Available: 7, Reserved: 3}},
		{name: "a second sweep finds nothing", batch: 2, wantExpired: 0,
			short: counters{Stock: 10, Available: 9, Sold: 1}, long: counters{Stock: 10, Available: 7, Reserved: 3}},
		{name: "long holds due", advance: 10 * time.Second, batch: 100, wantExpired: 3,
			short: counters{Stock: 10, Available: 9, Sold: 1}, long: counters{Stock: 10, Available: 10}},
	}
	for _, st := range steps {
		if st.advance > 0 {
			s.advance(t, st.advance)
		}
		n, err := s.SweepDue(ctx, st.batch)
		if err != nil || n != st.wantExpired {
			t.Fatalf("%s: SweepDue = %d, %v; want %d", st.name, n, err, st.wantExpired)
		}
		wantCounters(t, s, "short", st.short)
		wantCounters(t, s, "long", st.long)
		wantCounters(t, s, "idle", counters{Stock: 5, Available: 5})
	}
	for _, r := range shortHolds[2:] {
		if st := rawStatus(t, s, r.ID); st != "expired" {
			t.Fatalf("swept hold %s stored as %q", r.ID, st)
		}
	}
}

func TestItemSettlesMoreThanOneBatch(t *testing.T) {
	// More holds fall due at once than one script call settles (64); a
	// reader must still not see units held by expired holds.
	const n = 100
	s := newMiniStore(t)
	ctx := context.Background()
	spec := itemSpec("sku", n, 1)
	spec.Hold = time.Minute
	mustSeed(t, s, spec)
	for i := range n {
		if _, _, err := s.Reserve(ctx, request(t, "sku", fmt.Sprintf("u%d", i), 1, "")); err != nil {
			t.Fatalf("reserve %d: %v", i, err)
		}
	}
	wantCounters(t, s, "sku", counters{Stock: n, Reserved: n})
	s.advance(t, spec.Hold)

	it, err := s.Item(ctx, "sku")
	if err != nil {
		t.Fatalf("Item: %v", err)
	}
	if it.Available != n || it.Reserved != 0 {
		t.Fatalf("Item after %d holds expired: available %d reserved %d, want %d and 0", n, it.Available, it.Reserved, n)
	}
	wantCounters(t, s, "sku", counters{Stock: n, Available: n})
}

func TestSeedMany(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("grow", 5, 1))
	mustSeed(t, s, itemSpec("busy", 5, 5))
	mustConfirm(t, s, mustReserve(t, s, "busy", "alice", 3).ID)
	busyBefore := snapshot(t, s, "busy")

	specs := []reservation.ItemSpec{
		itemSpec("new-a", 7, 1),
		itemSpec("grow", 8, 1),
		itemSpec("busy", 2, 5), // 3 are sold
		itemSpec("new-b", 0, 1),
	}
	results, errs := s.SeedMany(ctx, specs)
	if len(results) != len(specs) || len(errs) != len(specs) {
		t.Fatalf("SeedMany returned %d results and %d errors for %d specs", len(results), len(errs), len(specs))
	}
	want := []struct {
		created bool
		err     error
		c       counters
	}{
		{created: true, c: counters{Stock: 7, Available: 7}},
		{created: false, c: counters{Stock: 8, Available: 8}},
		{err: reservation.ErrStockBelowCommitted, c: counters{Stock: 5, Available: 2, Sold: 3}},
		{created: true, c: counters{Stock: 0, Available: 0}},
	}
	for i, w := range want {
		sku := specs[i].SKU
		wantErr(t, "SeedMany "+sku, errs[i], w.err)
		if w.err == nil && (results[i].Created != w.created || results[i].Item.SKU != sku || results[i].Item.Stock != specs[i].Stock) {
			t.Fatalf("SeedMany %s: %+v, want created=%v", sku, results[i], w.created)
		}
		wantCounters(t, s, sku, w.c)
	}
	wantUnchanged(t, s, "busy", busyBefore)
}

func TestSeedManyAcrossChunks(t *testing.T) {
	// More specs than one pipeline carries (500), and a catalogue that takes
	// more than one SSCAN page to sweep.
	const n = 501
	s := newMiniStore(t)
	ctx := context.Background()
	specs := make([]reservation.ItemSpec, n)
	for i := range specs {
		specs[i] = itemSpec(fmt.Sprintf("item-%04d", i), int64(i), 1)
	}
	results, errs := s.SeedMany(ctx, specs)
	for i := range specs {
		if errs[i] != nil || !results[i].Created || results[i].Item.SKU != specs[i].SKU || results[i].Item.Available != int64(i) {
			t.Fatalf("spec %d: %+v, %v", i, results[i], errs[i])
		}
	}
	if card, err := s.rdb.SCard(ctx, s.prefix+":catalog").Result(); err != nil || card != n {
		t.Fatalf("catalogue has %d members (%v), want %d", card, err, n)
	}
	for _, i := range []int{1, 250, 499, n - 1} {
		mustReserve(t, s, specs[i].SKU, "alice", 1)
	}
	s.advance(t, 10*time.Minute)
	if got, err := s.SweepDue(ctx, 10); err != nil || got != 4 {
		t.Fatalf("SweepDue = %d, %v; want 4", got, err)
	}
}

func TestAfterScriptFlush(t *testing.T) {
	// SCRIPT FLUSH (or a failover to a replica with an empty script cache)
	// must not break anything: every call falls back from EVALSHA to EVAL,
	// the pipelined ones (SeedMany, SweepDue) included.
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, s *testStore, held string)
	}{
		{"Seed", func(t *testing.T, s *testStore, held string) {
			res := mustSeed(t, s, itemSpec("other", 3, 1))
			if !res.Created {
				t.Fatalf("Created = false")
			}
		}},
		{"SeedMany", func(t *testing.T, s *testStore, held string) {
			specs := []reservation.ItemSpec{itemSpec("a", 1, 1), itemSpec("sku", 0, 1), itemSpec("b", 2, 1)}
			results, errs := s.SeedMany(ctx, specs)
			wantErr(t, "seed a", errs[0], nil)
			wantErr(t, "seed sku", errs[1], reservation.ErrStockBelowCommitted)
			wantErr(t, "seed b", errs[2], nil)
			if !results[0].Created || results[0].Item.Stock != 1 || !results[2].Created || results[2].Item.Stock != 2 {
				t.Fatalf("results %+v", results)
			}
			wantCounters(t, s, "a", counters{Stock: 1, Available: 1})
			wantCounters(t, s, "b", counters{Stock: 2, Available: 2})
		}},
		{"Item", func(t *testing.T, s *testStore, held string) {
			if it, err := s.Item(ctx, "sku"); err != nil || it.Reserved != 1 {
				t.Fatalf("Item: %+v, %v", it, err)
			}
		}},
		{"Reserve", func(t *testing.T, s *testStore, held string) {
			mustReserve(t, s, "sku", "bob", 1)
		}},
		{"Reservation", func(t *testing.T, s *testStore, held string) {
			if r, err := s.Reservation(ctx, held); err != nil || r.Status != reservation.StatusPending {
				t.Fatalf("Reservation: %+v, %v", r, err)
			}
		}},
		{"Confirm", func(t *testing.T, s *testStore, held string) { mustConfirm(t, s, held) }},
		{"Cancel", func(t *testing.T, s *testStore, held string) { mustCancel(t, s, held) }},
		{"SweepDue", func(t *testing.T, s *testStore, held string) {
			s.advance(t, 10*time.Minute)
			if n, err := s.SweepDue(ctx, 10); err != nil || n != 1 {
				t.Fatalf("SweepDue = %d, %v; want 1", n, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			mustSeed(t, s, itemSpec("sku", 5, 1))
			held := mustReserve(t, s, "sku", "alice", 1)
			if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatalf("SCRIPT FLUSH: %v", err)
			}
			tc.run(t, s, held.ID)
			assertInvariant(t, s, "sku")
		})
	}
}
