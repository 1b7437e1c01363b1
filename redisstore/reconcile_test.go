package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

// snapshotOf is what the record would hold of sku: its offer and the
// reservations with the given ids, as Redis has them now.
func snapshotOf(t testing.TB, s *testStore, spec reservation.ItemSpec, ids []string) reservation.Snapshot {
	t.Helper()
	it := mustItem(t, s, spec.SKU)
	snap := reservation.Snapshot{Item: reservation.ItemRecord{ItemSpec: spec, Rev: 1,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt}}
	for _, id := range ids {
		r, err := s.Reservation(context.Background(), id)
		if err != nil {
			t.Fatalf("Reservation(%s): %v", id, err)
		}
		snap.Reservations = append(snap.Reservations, reservation.RecordedReservation{Reservation: r})
	}
	return snap
}

// loseBucket deletes every key of one bucket, as a cluster master that lost
// its data would.
func loseBucket(t testing.TB, s *testStore, name string) {
	t.Helper()
	ctx := context.Background()
	keys := s.rdb.Keys(ctx, s.prefix+":{"+name+"}:*").Val()
	if len(keys) == 0 {
		t.Fatalf("bucket %s has no keys to lose", name)
	}
	s.rdb.Del(ctx, keys...)
}

// buyAll reserves one unit for fresh users until the item refuses sold_out
// and returns how many were granted.
func buyAll(t testing.TB, s *testStore, sku, tag string) int64 {
	t.Helper()
	var granted int64
	for u := 0; ; u++ {
		_, _, err := s.Reserve(context.Background(), request(t, sku, tag+"-"+strconv.Itoa(u), 1, ""))
		var so *reservation.SoldOutError
		switch {
		case err == nil:
			granted++
		case errors.As(err, &so):
			return granted
		default:
			t.Fatalf("reserve: %v", err)
		}
		if u > 10_000 {
			t.Fatalf("%s never sold out", sku)
		}
	}
}

// TestRestoreLostBucketCreditsItsUnits: a bucket other than the head is
// lost (its master lost its data) with units available in it. Restore
// rebuilds it from its reservations, and the count gives its available
// units back to the head: afterwards exactly the rest of the stock sells,
// not a unit more or less, whichever bucket was lost and whether a transfer
// was in flight.
func TestRestoreLostBucketCreditsItsUnits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lost     int  // index of the lost bucket
		inFlight bool // a transfer out of the lost bucket's neighbour was in flight
	}{
		{name: "second bucket", lost: 1},
		{name: "last bucket", lost: 2},
		{name: "with a transfer in flight", lost: 2, inFlight: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			const stock = 30
			spec := itemSpec("lb", stock, 1)
			spec.Buckets = 3
			names := seedSplit(t, s, "lb", stock, 1, 3)
			var ids []string
			for b := range names {
				for i := range 2 {
					r := mustReserve(t, s, "lb", userIn(t, names, b, "early"+strconv.Itoa(i)), 1)
					ids = append(ids, r.ID)
				}
			}
			if tc.inFlight {
				// A mover died between take and give, out of a surviving bucket.
				if _, n := stuckTransfer(t, s, 3, names[1], names[0], 2, false); n != 2 {
					t.Fatalf("take moved %d", n)
				}
			}
			snap := snapshotOf(t, s, spec, ids)
			loseBucket(t, s, names[tc.lost])

			if missing, err := s.Missing(ctx, []string{"lb"}); err != nil || len(missing) != 1 {
				t.Fatalf("Missing = %v, %v; want lb", missing, err)
			}
			if restored, err := s.Restore(ctx, snap); err != nil || !restored {
				t.Fatalf("Restore = %v, %v", restored, err)
			}
			sum := checkBuckets(t, s, "lb", names)
			if sum.transit != 0 || sum.stock != stock {
				t.Fatalf("after the restore the buckets hold %+v, want all %d units and none in transit", sum, stock)
			}
			if it := mustItem(t, s, "lb"); it.Available != stock-6 || it.Reserved != 6 {
				t.Fatalf("item after the restore: %+v", it)
			}
			if got := buyAll(t, s, "lb", "late"); got != stock-6 {
				t.Fatalf("%d units sold after the restore, want exactly %d", got, stock-6)
			}
			if restored, err := s.Restore(ctx, snap); err != nil || restored {
				t.Fatalf("a second Restore = %v, %v; want nothing to do", restored, err)
			}
			checkBuckets(t, s, "lb", names)
		})
	}
}

// TestFrozenBucketGivesNothing: while a count has the item frozen no units
// leave a bucket, and a buyer is served by its own bucket as before. Another
// count can neither take the freeze over nor lift it.
func TestFrozenBucketGivesNothing(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	names := seedSplit(t, s, "fz", 6, 1, 2)
	freeze := goredis.NewScript(string(luascripts.Freeze()))
	for _, name := range names {
		if err := freeze.Run(ctx, s.rdb, s.ScriptKeys(name), 60_000, "count-a").Err(); err != nil {
			t.Fatalf("freeze %s: %v", name, err)
		}
		rep, err := freeze.Run(ctx, s.rdb, s.ScriptKeys(name), 60_000, "count-b").Slice()
		if err != nil || rep[0] != "busy" {
			t.Fatalf("a second count freezing %s = %v, %v; want busy", name, rep, err)
		}
		if err := freeze.Run(ctx, s.rdb, s.ScriptKeys(name), -1, "count-b").Err(); err != nil {
			t.Fatalf("unfreeze %s by another count: %v", name, err)
		}
	}
	rep, err := goredis.NewScript(string(luascripts.Take())).Run(ctx, s.rdb, s.ScriptKeys(names[1]),
		"t1", names[0], 1, "0", 64, 2).Slice()
	if err != nil || len(rep) != 1 || rep[0] != "frozen" {
		t.Fatalf("take from a frozen bucket = %v, %v; want frozen", rep, err)
	}
	mustReserve(t, s, "fz", userIn(t, names, 0, "home"), 1)
	for _, name := range names {
		if err := freeze.Run(ctx, s.rdb, s.ScriptKeys(name), -1, "count-a").Err(); err != nil {
			t.Fatalf("unfreeze %s: %v", name, err)
		}
	}
	if _, n := stuckTransfer(t, s, 2, names[1], names[0], 1, true); n != 1 {
		t.Fatalf("take after the unfreeze moved %d, want 1", n)
	}
	checkBuckets(t, s, "fz", names)
}

// TestRebuiltBucketRefusesTransfersUntilCounted: a transfer whose units
// arrived before the receiving bucket was lost (its mover died before
// forgetting it) must not arrive a second time in the rebuilt bucket, whose
// receipt was lost with it. A rebuilt bucket refuses every transfer until
// the count is done; the sweeper, finding the count owed, runs it, and the
// count voids the transfer instead of delivering it.
func TestRebuiltBucketRefusesTransfersUntilCounted(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	names := seedSplit(t, s, "rb", 4, 1, 2)
	id, n := stuckTransfer(t, s, 2, names[0], names[1], 2, true) // arrived, not forgotten
	if n != 2 {
		t.Fatalf("take moved %d", n)
	}
	// As restore.lua leaves a rebuilt bucket (its receipt of id lost with it).
	s.rdb.ZRem(ctx, s.key(names[1], "xin"), id)
	s.rdb.HSet(ctx, s.key(names[1], "item"), "recount", 1)
	rep, err := goredis.NewScript(string(luascripts.Give())).Run(ctx, s.rdb, s.ScriptKeys(names[1]), id, n).Slice()
	if err != nil || len(rep) != 1 || rep[0] != "recount" {
		t.Fatalf("give to a bucket owing a count = %v, %v; want recount", rep, err)
	}

	s.advance(t, time.Minute) // the transfer is stale: the sweeper would deliver it
	if _, err := s.SweepDue(ctx, 64); err != nil {
		t.Fatalf("SweepDue: %v", err)
	}
	sum := checkBuckets(t, s, "rb", names)
	if sum.stock != 4 || sum.transit != 0 {
		t.Fatalf("after the sweep the buckets hold %+v, want the 4 units once", sum)
	}
	for _, name := range names {
		if s.rdb.HExists(ctx, s.key(name, "item"), "recount").Val() {
			t.Fatalf("%s still owes a count after the sweep ran it", name)
		}
	}
	if got := buyAll(t, s, "rb", "buyer"); got != 4 {
		t.Fatalf("%d units sold, want exactly 4", got)
	}
}
