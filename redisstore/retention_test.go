package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// TestRetention: a reservation in a final state, and its idempotency key,
// leave Redis once it has been settled for the retention and the outbox
// entry of its final state is synced (the syncer deletes what it
// acknowledges); not before either, and a pending hold never. The counters
// do not move: units are in the counters, not in records.
func TestRetention(t *testing.T) {
	const retention = 10 * time.Second
	type hold struct {
		user, key string
		end       string // "cancel", "confirm", "expire", "" (stays pending)
	}
	tests := []struct {
		name      string
		holds     []hold
		synced    bool          // the outbox is synced before the sweep
		after     time.Duration // the clock moves this much before the sweep
		wantGone  int           // records dropped
		wantLeft  int           // records left
		wantIdem  int           // idempotency keys left
		wantFinal int           // final reservations still tracked
	}{
		{name: "settled and synced, past the retention: gone with their keys",
			holds:  []hold{{"u1", "k1", "cancel"}, {"u2", "k2", "confirm"}, {"u3", "", "cancel"}},
			synced: true, after: retention + time.Second, wantGone: 3},
		{name: "not yet synced: kept",
			holds:  []hold{{"u1", "k1", "cancel"}, {"u2", "k2", "confirm"}},
			synced: false, after: retention + time.Second, wantLeft: 2, wantIdem: 2, wantFinal: 2},
		{name: "within the retention: kept",
			holds:  []hold{{"u1", "k1", "cancel"}},
			synced: true, after: retention - time.Second, wantLeft: 1, wantIdem: 1, wantFinal: 1},
		{name: "expired holds leave too; a pending one stays",
			holds:  []hold{{"u1", "k1", "expire"}, {"u2", "k2", ""}},
			synced: true, after: retention + time.Second, wantGone: 1, wantLeft: 1, wantIdem: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			mr, rdb := redistest.Miniredis(t)
			st, err := redisstore.New(ctx, rdb, "ret", redisstore.WithRetention(retention))
			if err != nil {
				t.Fatal(err)
			}
			s := &testStore{Store: st, rdb: rdb, mr: mr, prefix: "ret"}
			spec := itemSpec("mug", 10, 5)
			spec.Hold = time.Minute
			mustSeed(t, s, spec)
			var ids []string
			take := func(h hold) {
				r, _, err := s.Reserve(ctx, request(t, "mug", h.user, 1, h.key))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, r.ID)
				switch h.end {
				case "cancel":
					mustCancel(t, s, r.ID)
				case "confirm":
					mustConfirm(t, s, r.ID)
				}
			}
			for _, h := range tt.holds {
				if h.end != "" {
					take(h)
				}
			}
			// The "expire" holds fall due; the sweep settles them.
			for _, h := range tt.holds {
				if h.end == "expire" {
					s.advance(t, time.Minute)
					if _, err := s.SweepDue(ctx, 100); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
			for _, h := range tt.holds {
				if h.end == "" {
					take(h) // pending through the rest of the test
				}
			}
			before := rawCounters(t, s, "mug")
			if tt.synced {
				rdb.XTrimMaxLen(ctx, s.key("mug", "outbox"), 0)
			}
			s.advance(t, tt.after)
			if _, err := s.SweepDue(ctx, 100); err != nil {
				t.Fatal(err)
			}
			if after := rawCounters(t, s, "mug"); after != before {
				t.Errorf("counters moved: %+v -> %+v", before, after)
			}
			gone, left := 0, 0
			for _, id := range ids {
				if _, err := s.Reservation(ctx, id); errors.Is(err, reservation.ErrReservationNotFound) {
					gone++
				} else {
					left++
				}
			}
			idem := idemFields(rdb.HGetAll(ctx, s.key("mug", "idem")).Val())
			final := rdb.ZCard(ctx, s.key("mug", "final")).Val()
			if gone != tt.wantGone || left != tt.wantLeft || len(idem) != tt.wantIdem || int(final) != tt.wantFinal {
				t.Errorf("gone %d, left %d, idempotency keys %d, final tracked %d; want %d, %d, %d, %d",
					gone, left, len(idem), final, tt.wantGone, tt.wantLeft, tt.wantIdem, tt.wantFinal)
			}
			if n := len(rdb.HGetAll(ctx, s.key("mug", "idem")).Val()); n != 2*tt.wantIdem {
				t.Errorf("%d fields in the idem hash, want %d (each key and its reverse field)", n, 2*tt.wantIdem)
			}
		})
	}
}

// TestRetentionKeepsUp: one sweep drops every final reservation that is
// due, however many more than its batch: a hot item settles thousands a
// second, and dropping a batch per sweep interval would fall behind.
func TestRetentionKeepsUp(t *testing.T) {
	ctx := context.Background()
	mr, rdb := redistest.Miniredis(t)
	st, err := redisstore.New(ctx, rdb, "ret", redisstore.WithRetention(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s := &testStore{Store: st, rdb: rdb, mr: mr, prefix: "ret"}
	mustSeed(t, s, itemSpec("hot", 100, 1))
	for i := range 25 {
		r := mustReserve(t, s, "hot", "u"+strconv.Itoa(i), 1)
		mustCancel(t, s, r.ID)
	}
	rdb.XTrimMaxLen(ctx, s.key("hot", "outbox"), 0) // synced
	s.advance(t, 2*time.Second)
	if _, err := s.SweepDue(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if n := rdb.HLen(ctx, s.key("hot", "res")).Val(); n != 0 {
		t.Errorf("%d records left after one sweep of batch 4, want none of 25", n)
	}
}
