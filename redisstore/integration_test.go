//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// These tests need a real Redis (see internal/redistest), so they are built
// only with the integration tag (make test-integration, make test): they skip
// without one, and fail without one under CI=true. Each works under a key
// prefix of its own, so a shared Redis is fine. Tests written for both
// Redis kinds loop over storeKinds, to which the real Redis is added here.

func init() {
	storeKinds = append(storeKinds, storeKind{name: "redis", open: newRealStore})
}

// crowd sends one Reserve of 1 unit for each of users distinct users through
// the Service, at most workers at a time, and returns how many were granted
// and how many were told sold out; any other error fails the test.
func crowd(t *testing.T, svc *reservation.Service, sku string, users, workers int, between func(done int)) (granted, soldOut int) {
	t.Helper()
	ctx := context.Background()
	jobs := make(chan int)
	errs := make([]error, users)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				_, _, errs[i] = svc.Reserve(ctx, reservation.ReserveRequest{
					SKU: sku, UserID: fmt.Sprintf("user-%05d", i), Quantity: 1,
				})
				if between != nil {
					mu.Lock()
					done++
					n := done
					mu.Unlock()
					between(n)
				}
			}
		})
	}
	for i := range users {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for i, err := range errs {
		switch {
		case err == nil:
			granted++
		case errors.Is(err, reservation.ErrSoldOut):
			soldOut++
		default:
			t.Errorf("user %d: unexpected error %v", i, err)
		}
	}
	return granted, soldOut
}

func TestFlashCrowdRealRedis(t *testing.T) {
	const stock, users, concurrency = 100, 2000, 200
	s := newRealStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("console", stock, 1))

	granted, soldOut := crowd(t, reservation.NewService(s.Store, nil), "console", users, concurrency, nil)
	if granted != stock || soldOut != users-stock {
		t.Fatalf("%d holds granted and %d sold out, want %d and %d", granted, soldOut, stock, users-stock)
	}
	it, err := s.Item(ctx, "console")
	if err != nil {
		t.Fatalf("Item: %v", err)
	}
	if it.Available != 0 || it.Reserved != stock || it.Sold != 0 {
		t.Fatalf("Item: available %d reserved %d sold %d, want 0 %d 0", it.Available, it.Reserved, it.Sold, stock)
	}
	wantCounters(t, s, "console", counters{Stock: stock, Reserved: stock})
}

func TestScriptFlushMidRunRealRedis(t *testing.T) {
	// SCRIPT FLUSH empties the script cache of the shared Redis; that is
	// harmless to everyone, as every call falls back from EVALSHA to EVAL.
	const stock, users, concurrency = 100, 1000, 50
	s := newRealStore(t)
	ctx := context.Background()
	mustSeed(t, s, itemSpec("console", stock, 1))

	var flushes, flushErrs int
	var mu sync.Mutex
	flushEvery := func(done int) {
		if done%100 != 0 {
			return
		}
		err := s.rdb.ScriptFlush(ctx).Err()
		mu.Lock()
		defer mu.Unlock()
		flushes++
		if err != nil {
			flushErrs++
			t.Errorf("SCRIPT FLUSH: %v", err)
		}
	}
	granted, soldOut := crowd(t, reservation.NewService(s.Store, nil), "console", users, concurrency, flushEvery)
	if granted != stock || soldOut != users-stock {
		t.Fatalf("%d holds granted and %d sold out, want %d and %d", granted, soldOut, stock, users-stock)
	}
	if flushes != users/100 || flushErrs != 0 {
		t.Fatalf("%d flushes (%d failed), want %d", flushes, flushErrs, users/100)
	}
	wantCounters(t, s, "console", counters{Stock: stock, Reserved: stock})

	// Every other call, and the pipelined ones, after another flush.
	if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	results, errs := s.SeedMany(ctx, []reservation.ItemSpec{
		itemSpec("console", stock+10, 1), itemSpec("console-2", 5, 1), itemSpec("console", 1, 1),
	})
	wantErr(t, "restock", errs[0], nil)
	wantErr(t, "seed console-2", errs[1], nil)
	wantErr(t, "stock below holds", errs[2], reservation.ErrStockBelowCommitted)
	if results[0].Created || results[0].Item.Available != 10 || !results[1].Created {
		t.Fatalf("SeedMany: %+v", results)
	}
	if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if n, err := s.SweepDue(ctx, 100); err != nil || n != 0 {
		t.Fatalf("SweepDue = %d, %v; want 0 (nothing is due)", n, err)
	}
	r := mustReserve(t, s, "console-2", "alice", 1)
	if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if got, err := s.Reservation(ctx, r.ID); err != nil || got.Status != reservation.StatusPending {
		t.Fatalf("Reservation: %+v, %v", got, err)
	}
	mustConfirm(t, s, r.ID)
	wantCounters(t, s, "console", counters{Stock: stock + 10, Available: 10, Reserved: stock})
	wantCounters(t, s, "console-2", counters{Stock: 5, Available: 4, Sold: 1})
}

// TestRestoreCountsOnce: instances that notice the same lost bucket at once
// all run the count; the head is credited once.
func TestRestoreCountsOnce(t *testing.T) {
	s := newRealStore(t)
	ctx := context.Background()
	const stock = 40
	spec := itemSpec("once", stock, 1)
	spec.Buckets = 4
	names := seedSplit(t, s, "once", stock, 1, 4)
	snap := snapshotOf(t, s, spec, nil)
	loseBucket(t, s, names[3])

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Restore(ctx, snap) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Restore %d: %v", i, err)
		}
	}
	if sum := checkBuckets(t, s, "once", names); sum.stock != stock || sum.available != stock {
		t.Fatalf("after concurrent restores the buckets hold %+v, want %d units", sum, stock)
	}
	if got := buyAll(t, s, "once", "buyer"); got != stock {
		t.Fatalf("%d units sold, want exactly %d", got, stock)
	}
}

// TestOutboxPrunesGoneConsumers: consumers silent for ten claim periods
// leave the group; their pending entries are claimed first, never dropped.
func TestOutboxPrunesGoneConsumers(t *testing.T) {
	ctx := context.Background()
	s := newRealStore(t)
	mustSeed(t, s, itemSpec("a", 5, 1))
	gone := newOutboxIdle(t, s, "gone", 20*time.Millisecond)
	if got := mustRead(t, gone, 10); len(got) != 1 {
		t.Fatalf("Read = %+v, want the seed's entry", got)
	} else if err := gone.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, s, "a", "u1", 1)
	// Each reader below stands for a process of its own, the one before it
	// dead: the item it took from the dirty index is free again.
	release := func() {
		t.Helper()
		s.FlushHints(ctx)
		if err := s.ReleaseIndexes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	release()
	dead := newOutboxIdle(t, s, "dead", 20*time.Millisecond)
	held := mustRead(t, dead, 10) // taken, never acknowledged
	if len(held) != 1 {
		t.Fatalf("Read = %+v, want the reservation's entry", held)
	}
	time.Sleep(300 * time.Millisecond) // past 10 claim periods

	release()
	live := newOutboxIdle(t, s, "live", 20*time.Millisecond)
	got := mustRead(t, live, 10)
	if len(got) != 1 || got[0].ID != held[0].ID {
		t.Fatalf("live Read = %+v, want the dead consumer's entry %s", got, held[0].ID)
	}
	consumers, err := s.rdb.XInfoConsumers(ctx, s.key("a", "outbox"), redisstore.SyncGroup).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range consumers {
		names = append(names, c.Name)
	}
	if len(names) != 1 || names[0] != "live" {
		t.Fatalf("consumers after pruning: %v, want only live", names)
	}
	if n := pendingCount(t, s, "a"); n != 1 {
		t.Fatalf("pending = %d, want the claimed entry still pending (for live)", n)
	}
}

// TestBucketsConcurrentSellOut: as many buyers as units rush a split item at
// once on a real Redis. The rush may leave a unit in transit between buckets
// when a buyer's pull misses it (the documented window), but once the rush
// is over every unit sells: one more try by each refused buyer sells exactly
// the rest, and nothing beyond the stock. Pulling half of a donor only while
// it has plenty keeps the rush from scattering the last units (with 8
// buckets, 8 of 20 rushes left a unit unsold before; none after).
func TestBucketsConcurrentSellOut(t *testing.T) {
	for _, n := range []int{3, 8, 64} {
		t.Run(strconv.Itoa(n)+" buckets", func(t *testing.T) {
			const units = 100
			short := 0
			for run := range 5 {
				s := newRealStore(t)
				sku := "rush" + strconv.Itoa(run)
				spec := itemSpec(sku, units, 1)
				spec.Buckets = n
				mustSeed(t, s, spec)
				var granted atomic.Int64
				var refusedMu sync.Mutex
				var refused []string
				var wg sync.WaitGroup
				for u := range units {
					wg.Go(func() {
						user := "u" + strconv.Itoa(u)
						_, _, err := s.Reserve(context.Background(), request(t, sku, user, 1, ""))
						var so *reservation.SoldOutError
						switch {
						case err == nil:
							granted.Add(1)
						case errors.As(err, &so):
							refusedMu.Lock()
							refused = append(refused, user)
							refusedMu.Unlock()
						default:
							t.Errorf("reserve: %v", err)
						}
					})
				}
				wg.Wait()
				if granted.Load() < units {
					short++
				}
				for _, user := range refused {
					if _, _, err := s.Reserve(context.Background(), request(t, sku, user, 1, "")); err == nil {
						granted.Add(1)
					}
				}
				if got := granted.Load(); got != units {
					t.Fatalf("run %d: %d units sold, want exactly %d", run, got, units)
				}
				names := redisstore.Buckets(sku, n)
				if sum := checkBuckets(t, s, sku, names); sum.reserved != units || sum.available != 0 {
					t.Fatalf("run %d: buckets after the rush %+v", run, sum)
				}
			}
			t.Logf("%d of 5 rushes left a unit for the second try", short)
		})
	}
}

// newRealStore returns a Store on the shared real Redis, under a key prefix
// of its own that is deleted when the test ends.
func newRealStore(t testing.TB) *testStore {
	t.Helper()
	rdb, prefix := redistest.Client(t)
	return newTestStore(t, rdb, nil, prefix)
}
