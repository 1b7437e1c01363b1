package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/flashsale/flashsale/reservation"
)

// These tests need a real Redis (see internal/redistest): they skip without
// one, and fail without one under CI=true. Each works under a key prefix of
// its own, so a shared Redis is fine.

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
