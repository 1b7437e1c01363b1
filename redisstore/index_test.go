package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// newSweepStore is a store on a fresh miniredis with the sweeper's lease
// and scan given, beside another store on the same Redis and prefix (a
// second instance of the deployment).
func newSweepStores(t *testing.T, lease time.Duration, scan int) (a, b *testStore) {
	t.Helper()
	mr, rdb := redistest.Miniredis(t)
	open := func() *testStore {
		st, err := redisstore.New(context.Background(), rdb, "fs", redisstore.WithSweep(lease, scan))
		if err != nil {
			t.Fatalf("redisstore.New: %v", err)
		}
		return &testStore{Store: st, rdb: rdb, mr: mr, prefix: "fs"}
	}
	return open(), open()
}

// indexSize counts an index's entries.
func (s *testStore) indexSize(t *testing.T, index string) int64 {
	t.Helper()
	n, _, err := s.IndexSize(context.Background(), index)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustSweep(t *testing.T, s *testStore) int {
	t.Helper()
	n, err := s.SweepDue(context.Background(), 64)
	if err != nil {
		t.Fatalf("SweepDue: %v", err)
	}
	return n
}

// available reads a bucket's available units straight from its hash, so
// the read settles nothing (Item would).
func available(t *testing.T, s *testStore, sku string) int64 {
	t.Helper()
	n, err := s.rdb.HGet(context.Background(), s.key(sku, "item"), "available").Int64()
	if err != nil {
		t.Fatalf("available of %s: %v", sku, err)
	}
	return n
}

func seedMany(t *testing.T, s *testStore, n int) []string {
	t.Helper()
	specs := make([]reservation.ItemSpec, n)
	skus := make([]string, n)
	for i := range specs {
		skus[i] = fmt.Sprintf("b%05d", i)
		specs[i] = itemSpec(skus[i], 5, 5)
	}
	_, errs := s.SeedMany(context.Background(), specs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("seed %s: %v", skus[i], err)
		}
	}
	return skus
}

// TestIdleCostFollowsTheWork: once the first pass has run, a sweep of an
// idle catalogue and a syncer's read of it send a few commands per index
// shard plus the scan's step, not one per item (issue 16: 10,000 idle items
// cost a third of a Redis core per instance when each was visited).
func TestIdleCostFollowsTheWork(t *testing.T) {
	const items, scan, indexShards = 1000, 10, 16
	s, _ := newSweepStores(t, time.Second, scan)
	ctx := context.Background()
	seedMany(t, s, items)
	mustSweep(t, s) // the first pass, over everything

	o, err := s.Outbox(redisstore.OutboxOptions{Consumer: "c1", ClaimIdle: time.Hour, MaxTries: 2, Scan: time.Nanosecond, Hot: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	// A Read polls a window of the items it holds, which may hold only
	// outboxes already drained (they go back to the index then): a few
	// Reads more than the entries need.
	synced := 0
	for reads := 0; synced < items || s.indexSize(t, "dirty") > 0; reads++ {
		if reads == 50 {
			t.Fatalf("after %d reads: %d of %d seeds synced, %d items dirty", reads, synced, items, s.indexSize(t, "dirty"))
		}
		got := mustRead(t, o, 500)
		if err := o.Ack(ctx, got); err != nil {
			t.Fatal(err)
		}
		synced += len(got)
	}

	cases := []struct {
		name string
		run  func()
		max  int
	}{
		// miniredis counts the commands scripts run too. A look at each
		// shard's first entry is 17 (no claim runs on a shard with nothing
		// due); the scan's lease, marker, cursor and SSCAN a few more, and
		// expire.lua on an idle item 11. Visiting every item would be at
		// least 11 000.
		{name: "sweep", run: func() { mustSweep(t, s) }, max: indexShards + 1 + 8 + 12*scan},
		{name: "syncer read", run: func() { mustRead(t, o, 500) }, max: indexShards + 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.mr.CommandCount()
			tc.run()
			got := s.mr.CommandCount() - before
			t.Logf("%d commands", got)
			if got > tc.max {
				t.Fatalf("%d commands for %d idle items, want at most %d", got, items, tc.max)
			}
		})
	}
}

// TestSweepSettlesDueHoldsThroughTheIndex: a hold comes back once due, and
// the item's entry then waits for what is next (its final reservation
// leaving after the retention), not for every sweep.
func TestSweepSettlesDueHoldsThroughTheIndex(t *testing.T) {
	s, _ := newSweepStores(t, time.Second, 1)
	ctx := context.Background()
	seedMany(t, s, 20)
	mustSweep(t, s)
	spec := itemSpec("z", 5, 5)
	spec.Hold = time.Minute
	mustSeed(t, s, spec)
	r := mustReserve(t, s, "z", "alice", 2)
	s.FlushHints(ctx)
	if at, ok, err := s.IndexEntry(ctx, "due", "z"); err != nil || !ok || at != r.ExpiresAt.UnixMilli() {
		t.Fatalf("due entry = %d, %v, %v; want the hold's expiry %d", at, ok, err, r.ExpiresAt.UnixMilli())
	}
	s.advance(t, time.Minute-time.Millisecond)
	if mustSweep(t, s); available(t, s, "z") != 3 {
		t.Fatalf("available %d before the hold fell due, want 3", available(t, s, "z"))
	}
	s.advance(t, time.Millisecond)
	if mustSweep(t, s); available(t, s, "z") != 5 {
		t.Fatalf("available %d after the hold fell due, want 5", available(t, s, "z"))
	}
	now := s.now(t).UnixMilli()
	if at, ok, err := s.IndexEntry(ctx, "due", "z"); err != nil || !ok || at != now+redisstore.DefaultRetention.Milliseconds() {
		t.Fatalf("due entry = %d, %v, %v; want the expired record's retention end %d", at, ok, err, now+redisstore.DefaultRetention.Milliseconds())
	}
}

// TestSweepTakesOverADeadInstancesClaim: items an instance took from the due
// index and never settled (it died) are settled by another once the lease
// runs out, and not before.
func TestSweepTakesOverADeadInstancesClaim(t *testing.T) {
	const lease = 500 * time.Millisecond
	dead, live := newSweepStores(t, lease, 1)
	ctx := context.Background()
	seedMany(t, live, 20) // "z" sorts last: the scan, one item a sweep, is far from it
	mustSweep(t, live)
	mustSeed(t, live, itemSpec("z", 5, 5))
	mustReserve(t, dead, "z", "alice", 1)
	dead.FlushHints(ctx)
	live.advance(t, 10*time.Minute)

	claimed, err := dead.ClaimDue(ctx, lease)
	if err != nil || len(claimed) != 1 || claimed[0] != "z" {
		t.Fatalf("claim = %v, %v; want z", claimed, err)
	}
	if mustSweep(t, live); available(t, live, "z") != 4 {
		t.Fatal("the live instance settled an item another holds")
	}
	live.advance(t, lease)
	if mustSweep(t, live); available(t, live, "z") != 5 {
		t.Fatal("the hold stayed out once the dead instance's lease ran out")
	}
}

// TestScanRepairsALostHint: an item whose due entry was lost (its instance
// died between the script and the hint) is settled within one pass of the
// safety-net scan.
func TestScanRepairsALostHint(t *testing.T) {
	const items, scan = 30, 5
	s, _ := newSweepStores(t, time.Second, scan)
	ctx := context.Background()
	skus := seedMany(t, s, items)
	mustSweep(t, s)
	sku := skus[items/2]
	mustReserve(t, s, sku, "alice", 1)
	s.FlushHints(ctx)
	if err := s.DropIndexEntry(ctx, "due", sku); err != nil {
		t.Fatal(err)
	}
	s.advance(t, 10*time.Minute)
	for sweeps := 1; available(t, s, sku) != 5; sweeps++ {
		if sweeps > items/scan+1 {
			t.Fatalf("not settled after %d sweeps of %d items each over %d items", sweeps-1, scan, items)
		}
		mustSweep(t, s)
	}
	if _, ok, err := s.IndexEntry(ctx, "due", sku); err != nil || !ok {
		t.Fatalf("due entry not written again: %v, %v", ok, err)
	}
}

// TestIndexSettleKeepsALaterHint: a claimer that settles with what it saw
// before a hint arrived must not drop or postpone the hinted entry.
func TestIndexSettleKeepsALaterHint(t *testing.T) {
	for _, index := range []string{"due", "dirty"} {
		t.Run(index, func(t *testing.T) {
			s, _ := newSweepStores(t, time.Second, 1)
			ctx := context.Background()
			mustSeed(t, s, itemSpec("a", 5, 5))
			if index == "due" {
				mustReserve(t, s, "a", "alice", 1)
			}
			s.FlushHints(ctx)
			s.advance(t, 11*time.Minute)
			claimed, err := s.ClaimIndex(ctx, index, "a", time.Minute)
			if err != nil || claimed["a"] == "" {
				t.Fatalf("claim = %v, %v; want a", claimed, err)
			}
			mustReserve(t, s, "a", "bob", 1) // hints both indexes
			s.FlushHints(ctx)
			if err := s.SettleIndex(ctx, index, "a", claimed["a"], -1); err != nil {
				t.Fatal(err)
			}
			at, ok, err := s.IndexEntry(ctx, index, "a")
			if err != nil || !ok || at > s.now(t).UnixMilli() {
				t.Fatalf("entry = %d, %v, %v; want kept and due now", at, ok, err)
			}
			// Settled with the version it now has, it goes.
			again, err := s.ClaimIndex(ctx, index, "a", time.Minute)
			if err != nil || again["a"] == claimed["a"] {
				t.Fatalf("claim = %v, %v; want a at a new version", again, err)
			}
			if err := s.SettleIndex(ctx, index, "a", again["a"], -1); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := s.IndexEntry(ctx, index, "a"); err != nil || ok {
				t.Fatalf("entry kept after a current settle: %v, %v", ok, err)
			}
		})
	}
}

// TestOutboxTakesOverADeadReadersItem: an item a reader took from the dirty
// index, and whose entries it read and never acknowledged (it died), goes to
// another reader once the hold runs out: its new changes, and the old
// entries, idle for longer than ClaimIdle by then.
func TestOutboxTakesOverADeadReadersItem(t *testing.T) {
	const claimIdle = 50 * time.Millisecond
	s, _ := newSweepStores(t, time.Second, 1)
	mustSeed(t, s, itemSpec("a", 5, 5))
	mustReserve(t, s, "a", "alice", 1)
	opts := func(name string) redisstore.OutboxOptions {
		return redisstore.OutboxOptions{Consumer: name, ClaimIdle: claimIdle, MaxTries: 2, Scan: time.Nanosecond}
	}
	c1, err := s.Outbox(opts("c1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, c1, 10); len(got) != 2 {
		t.Fatalf("c1 read %d entries, want the seed and the hold", len(got))
	}
	// c1 dies here. A new change meanwhile:
	mustReserve(t, s, "a", "bob", 1)
	c2, err := s.Outbox(opts("c2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, c2, 10); len(got) != 0 {
		t.Fatalf("c2 read %d entries of an item c1 holds", len(got))
	}
	s.advance(t, time.Second) // c1's hold runs out
	got := mustRead(t, c2, 10)
	users := map[string]bool{}
	for _, e := range got {
		if e.Change.Reservation != nil {
			users[e.Change.Reservation.UserID] = true
		}
	}
	if len(got) != 3 || !users["alice"] || !users["bob"] {
		t.Fatalf("c2 read %d entries (%v), want c1's two and bob's new hold", len(got), users)
	}
}

// TestBacklogReadsTheIndexes: the backlog counts entries of dirty items and
// the dead letters of items that ever failed one.
func TestBacklogReadsTheIndexes(t *testing.T) {
	s, _ := newSweepStores(t, time.Second, 1)
	ctx := context.Background()
	for i := range 3 {
		mustSeed(t, s, itemSpec("i"+strconv.Itoa(i), 5, 5))
	}
	o := newOutboxIdle(t, s, "c1", time.Hour)
	got := mustRead(t, o, 10)
	if len(got) != 3 {
		t.Fatalf("read %d, want 3", len(got))
	}
	if dead, err := o.Fail(ctx, got[0], "bad"); err != nil || dead {
		t.Fatalf("Fail = %v, %v", dead, err)
	}
	if dead, err := o.Fail(ctx, got[0], "bad"); err != nil || !dead {
		t.Fatalf("Fail = %v, %v; want parked at MaxTries 2", dead, err)
	}
	b, err := s.Backlog(ctx)
	if err != nil || b.Entries != 2 || b.Dead != 1 {
		t.Fatalf("Backlog = %+v, %v; want 2 entries and 1 dead", b, err)
	}
}

// TestBacklogEstimatesManyDirtyItems: with more dirty items than the
// backlog reads, it counts a sample and scales it, so the gauge costs the
// same for any backlog; one entry each, the estimate is exact.
func TestBacklogEstimatesManyDirtyItems(t *testing.T) {
	const items = 2500
	s, _ := newSweepStores(t, time.Second, 1)
	ctx := context.Background()
	for i := range items {
		b := fmt.Sprintf("d%05d", i)
		if err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.key(b, "outbox"), Values: []any{"k", "junk"}}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkDirty(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	before := s.mr.CommandCount()
	got, err := s.Backlog(ctx)
	if err != nil || got.Entries != items {
		t.Fatalf("Backlog = %+v, %v; want %d entries", got, err, items)
	}
	if n := s.mr.CommandCount() - before; n > 2*2000+100 {
		t.Fatalf("Backlog of %d dirty items sent %d commands, want about two per sampled item", items, n)
	}
}

// TestLease: one instance of a deployment holds a lease at a time; the
// holder keeps it by asking again, and another takes it once it ran out
// (its holder died), after which the old holder's renewal fails.
func TestLease(t *testing.T) {
	a, b := newSweepStores(t, time.Second, 1)
	ctx := context.Background()
	steps := []struct {
		name string
		s    *testStore
		wait time.Duration
		want bool
	}{
		{"first asker takes it", a, 0, true},
		{"another is refused", b, 0, false},
		{"the holder renews it", a, 900 * time.Millisecond, true},
		{"another is refused within the renewed lease", b, 900 * time.Millisecond, false},
		{"another takes it once it ran out", b, 200 * time.Millisecond, true},
		{"the old holder's renewal fails", a, 0, false},
	}
	for _, st := range steps {
		a.mr.FastForward(st.wait)
		got, err := st.s.Lease(ctx, "audit", time.Second)
		if err != nil || got != st.want {
			t.Fatalf("%s: Lease = %v, %v; want %v", st.name, got, err, st.want)
		}
	}
}
