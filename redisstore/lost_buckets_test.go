package redisstore_test

// Tests of what happens while an item split into buckets is lost or being
// rebuilt: a seed must neither create nor re-create a lost bucket (recovery
// rebuilds it, with its holds), a buyer must hear "recovering" rather than
// "sold out" while some of the item's units cannot be asked for, and the
// scripts that move units or seed must be safe to resend.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

// loseBuckets deletes every key of the named buckets: Redis lost them.
func loseBuckets(t testing.TB, s *testStore, names ...string) {
	t.Helper()
	for _, key := range s.mr.Keys() {
		for _, name := range names {
			if strings.HasPrefix(key, s.key(name, "")) {
				s.mr.Del(key)
			}
		}
	}
}

// bucketKeys lists the keys left of the named buckets.
func bucketKeys(s *testStore, names ...string) []string {
	var out []string
	for _, key := range s.mr.Keys() {
		for _, name := range names {
			if strings.HasPrefix(key, s.key(name, "")) {
				out = append(out, key)
			}
		}
	}
	return out
}

// TestSeedNeverCreatesALostBucket is issue 11's oversell: an admin seeding
// an item split over buckets while Redis has lost some of them. The seed
// must be refused as recovering and leave the lost buckets absent, so that
// Restore rebuilds them with their holds; afterwards exactly the units the
// record does not hold are sold.
func TestSeedNeverCreatesALostBucket(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose []int // bucket indexes: 0 is the head
	}{
		{name: "every bucket", lose: []int{0, 1, 2}},
		{name: "one bucket, the head kept", lose: []int{1}},
		{name: "two buckets, the head kept", lose: []int{1, 2}},
		{name: "the head alone", lose: []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := newMiniStore(t)
			const sku = "console"
			spec := itemSpec(sku, 12, 3)
			spec.Buckets = 3
			names := seedSplit(t, s, sku, 12, 3, 3)
			// Four buyers of 2 units each, in buckets 1 and 2; two pay.
			var ids []string
			for i, b := range []int{1, 1, 2, 2} {
				r := mustReserve(t, s, sku, userIn(t, names, b, "buyer"+string(rune('a'+i))), 2)
				ids = append(ids, r.ID)
			}
			mustConfirm(t, s, ids[0])
			mustConfirm(t, s, ids[2])
			record := snapshotOf(t, s, spec, ids)

			var lost []string
			for _, b := range tc.lose {
				lost = append(lost, names[b])
			}
			loseBuckets(t, s, lost...)
			again := spec
			again.Recorded = true
			_, err := s.Seed(ctx, again)
			if !errors.Is(err, reservation.ErrRecovering) {
				t.Fatalf("seed while %v are lost: %v, want ErrRecovering", lost, err)
			}
			if keys := bucketKeys(s, lost...); len(keys) > 0 {
				t.Fatalf("the refused seed created keys of lost buckets: %v", keys)
			}

			if restored, err := s.Restore(ctx, record); err != nil || !restored {
				t.Fatalf("Restore: %v, %v", restored, err)
			}
			sums := checkBuckets(t, s, sku, names)
			if sums.total != 12 || sums.reserved != 4 || sums.sold != 4 || sums.available != 4 {
				t.Fatalf("after the rebuild: %+v, want total 12, 4 reserved, 4 sold, 4 available", sums)
			}
			for i, id := range ids {
				r, err := s.Reservation(ctx, id)
				want := reservation.StatusPending
				if i == 0 || i == 2 {
					want = reservation.StatusConfirmed
				}
				if err != nil || r.Status != want {
					t.Fatalf("hold %s after the rebuild: %+v, %v; want %s", id, r, err, want)
				}
			}
			// Fourteen new buyers: exactly the four free units are sold.
			granted := 0
			for i := range 14 {
				_, _, err := s.Reserve(ctx, request(t, sku, "late"+string(rune('a'+i)), 1, ""))
				switch {
				case err == nil:
					granted++
				case !errors.Is(err, reservation.ErrSoldOut):
					t.Fatalf("late buyer %d: %v", i, err)
				}
			}
			if granted != 4 {
				t.Fatalf("%d late buyers were granted a unit, want 4 (12 stock, 8 held or sold)", granted)
			}
			checkBuckets(t, s, sku, names)
			// Now whole, the item takes seeds again.
			if _, err := s.Seed(ctx, again); err != nil {
				t.Fatalf("seed after the rebuild: %v", err)
			}
		})
	}
}

// TestSeedCreatesAnItemOverItsOwnEmptyBuckets: a creation interrupted after
// its empty buckets were made (before the head) is finished by the next
// seed; only a bucket holding units marks a lost head.
func TestSeedCreatesAnItemOverItsOwnEmptyBuckets(t *testing.T) {
	ctx := context.Background()
	s := newMiniStore(t)
	names := seedSplit(t, s, "half", 6, 2, 3)
	// The head is lost while the other buckets hold units, and the record
	// does not know the item yet: its head's loss cannot be repaired, and
	// a fresh item over those buckets would sell their units twice.
	loseBuckets(t, s, names[0])
	spec := itemSpec("half", 6, 2)
	spec.Buckets = 3
	if _, err := s.Seed(ctx, spec); !errors.Is(err, reservation.ErrRecovering) {
		t.Fatalf("seed over occupied buckets of a lost head: %v, want ErrRecovering", err)
	}
	// Empty buckets left by an interrupted creation are taken over.
	loseBuckets(t, s, names...)
	for _, name := range names[1:] {
		s.mr.HSet(s.key(name, "item"), "stock", "0", "available", "0", "reserved", "0", "sold", "0", "buckets", "3")
	}
	res, err := s.Seed(ctx, spec)
	if err != nil || !res.Created || res.Item.Available != 6 {
		t.Fatalf("seed over empty buckets: %+v, %v", res, err)
	}
	checkBuckets(t, s, "half", names)
}

// TestTakeRetriedAfterItsTransferFinished: go-redis resends a script whose
// answer timed out. A take resent after the sweeper had delivered and
// forgotten its transfer must take nothing again.
func TestTakeRetriedAfterItsTransferFinished(t *testing.T) {
	ctx := context.Background()
	s := newMiniStore(t)
	names := seedSplit(t, s, "tk", 10, 5, 2)
	take := goredis.NewScript(string(luascripts.Take()))
	run := func() []any {
		t.Helper()
		rep, err := take.Run(ctx, s.rdb, s.ScriptKeys(names[0]), "t-1", names[1], 2, "0", 64, 2).Slice()
		if err != nil {
			t.Fatalf("take: %v", err)
		}
		return rep
	}
	if rep := run(); rep[0] != "taken" || rep[1] != int64(2) {
		t.Fatalf("take: %v", rep)
	}
	if rep := run(); rep[0] != "taken" || rep[1] != int64(2) {
		t.Fatalf("take resent while in flight: %v, want the first run's units", rep)
	}
	before := availableByBucket(t, s, names)
	// The mover died; the sweeper finishes its transfer once it is stale.
	s.advance(t, 2100*time.Millisecond)
	if _, err := s.SweepDue(ctx, 64); err != nil {
		t.Fatalf("SweepDue: %v", err)
	}
	if got := readBuckets(t, s, "tk", 2); got.transit != 0 || got.available != 10 {
		t.Fatalf("after the sweep: %+v, want 10 available, nothing in transit", got)
	}
	delivered := availableByBucket(t, s, names)
	if delivered[0] != before[0] || delivered[1] != before[1]+2 {
		t.Fatalf("the sweep moved %v -> %v, want 2 units into %s", before, delivered, names[1])
	}
	if rep := run(); rep[0] != "finished" {
		t.Fatalf("take resent after the sweep: %v, want finished", rep)
	}
	if got := readBuckets(t, s, "tk", 2); got.transit != 0 || got.available != 10 {
		t.Fatalf("after the resent take: %+v, want 10 available, nothing in transit", got)
	}
	if after := availableByBucket(t, s, names); after[0] != delivered[0] {
		t.Fatalf("the resent take took again: head %d -> %d", delivered[0], after[0])
	}
}

// TestBucketsRecoveringIsNotSoldOut: while some of an item's units cannot
// be asked for (a bucket lost, frozen for a count, or rebuilt and awaiting
// it) a refusal would be a false sold_out, remembered by every instance:
// the buyer hears "recovering" and tries again.
func TestBucketsRecoveringIsNotSoldOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, s *testStore, names []string)
		want  error
	}{
		{name: "every bucket answered", setup: func(*testing.T, *testStore, []string) {}, want: reservation.ErrSoldOut},
		{name: "the other bucket is lost", want: reservation.ErrRecovering,
			setup: func(t *testing.T, s *testStore, names []string) { loseBuckets(t, s, names[0]) }},
		{name: "the other bucket is frozen for a count", want: reservation.ErrRecovering,
			setup: func(t *testing.T, s *testStore, names []string) {
				s.mr.HSet(s.key(names[0], "item"), "frozen_until", "99999999999999", "frozen_by", "count")
			}},
		{name: "its own bucket awaits the count", want: reservation.ErrRecovering,
			setup: func(t *testing.T, s *testStore, names []string) {
				s.mr.HSet(s.key(names[1], "item"), "recount", "1")
			}},
		{name: "the other bucket awaits the count", want: reservation.ErrRecovering,
			setup: func(t *testing.T, s *testStore, names []string) {
				s.mr.HSet(s.key(names[0], "item"), "recount", "1")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMiniStore(t)
			// 4 units, 2 in each bucket; the head's are held.
			names := seedSplit(t, s, "rc", 4, 5, 2)
			mustReserve(t, s, "rc", userIn(t, names, 0, "h"), 2)
			tc.setup(t, s, names)
			_, _, err := s.Reserve(context.Background(), request(t, "rc", userIn(t, names, 1, "b"), 3, ""))
			if !errors.Is(err, tc.want) {
				t.Fatalf("reserve 3 with 2 reachable: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSeedRetriedAnswersAsItsFirstRun: a seed resent after its answer was
// lost answers what the first run did (201 stays 201) and changes nothing
// more (one revision, one outbox entry).
func TestSeedRetriedAnswersAsItsFirstRun(t *testing.T) {
	ctx := context.Background()
	s := newMiniStore(t)
	seed := goredis.NewScript(string(luascripts.Seed()))
	spec := itemSpec("again", 5, 1)
	run := func(seedID string) string {
		t.Helper()
		rep, err := seed.Run(ctx, s.rdb, s.ScriptKeys("again"), s.SeedArgs(spec, seedID)...).Slice()
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
		return rep[0].(string)
	}
	for i, tc := range []struct {
		seedID, want string
		rev          string
	}{
		{seedID: "first", want: "created", rev: "1"},
		{seedID: "first", want: "created", rev: "1"},
		{seedID: "second", want: "updated", rev: "2"},
		{seedID: "second", want: "updated", rev: "2"},
	} {
		if got := run(tc.seedID); got != tc.want {
			t.Fatalf("call %d (seed %s): %s, want %s", i, tc.seedID, got, tc.want)
		}
		if rev := s.mr.HGet(s.key("again", "item"), "rev"); rev != tc.rev {
			t.Fatalf("call %d: rev %s, want %s", i, rev, tc.rev)
		}
	}
	entries, err := s.rdb.XLen(ctx, s.key("again", "outbox")).Result()
	if err != nil || entries != 2 {
		t.Fatalf("outbox has %d entries, %v; want 2 (one per seed, none per resend)", entries, err)
	}
}
