package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// The origin test, kept by name: 50 buyers, 5 units. It is the promise the
// service was built to keep.
func TestOrigin50BuyersFor5Units(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { origin50BuyersFor5Units(t, k.open(t)) })
	}
}

func origin50BuyersFor5Units(t *testing.T, s *testStore) {
	const buyers, stock = 50, 5
	ctx := context.Background()
	mustSeed(t, s, itemSpec("phone", stock, 1))
	svc := reservation.NewService(s.Store, nil)

	// A poller reads the raw counter the whole time the buyers run.
	var (
		stop, polled, pollerDone = make(chan struct{}), make(chan struct{}), make(chan struct{})
		polls                    int
		lowest                   = int64(stock)
		pollErr                  error
	)
	go func() {
		defer close(pollerDone)
		for {
			v, err := s.rdb.HGet(ctx, s.key("phone", "item"), "available").Int64()
			if err != nil {
				pollErr = err
				if polls == 0 {
					close(polled)
				}
				return
			}
			lowest = min(lowest, v)
			if polls++; polls == 1 {
				close(polled)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	<-polled

	start := make(chan struct{})
	errs := make([]error, buyers)
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Go(func() {
			<-start
			_, _, errs[i] = svc.Reserve(ctx, reservation.ReserveRequest{
				SKU: "phone", UserID: fmt.Sprintf("buyer-%02d", i), Quantity: 1,
			})
		})
	}
	close(start)
	wg.Wait()
	close(stop)
	<-pollerDone

	won, soldOut := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, reservation.ErrSoldOut):
			soldOut++
		default:
			t.Errorf("buyer %d: unexpected error %v", i, err)
		}
	}
	if won != stock || soldOut != buyers-stock {
		t.Errorf("%d buyers got a unit and %d were told sold out, want %d and %d", won, soldOut, stock, buyers-stock)
	}
	if pollErr != nil {
		t.Errorf("poller: %v", pollErr)
	}
	if lowest < 0 {
		t.Errorf("poller saw available = %d", lowest)
	}
	t.Logf("poller read available %d times, lowest %d", polls, lowest)
	it, err := s.Item(ctx, "phone")
	if err != nil || it.Available != 0 || it.Reserved != stock {
		t.Errorf("Item: %+v, %v; want available 0 reserved %d", it, err, stock)
	}
	wantCounters(t, s, "phone", counters{Stock: stock, Reserved: stock})
}

// TestOriginNaiveReadThenWriteOversells reproduces the 12.12 bug this
// service exists to fix: buyers that read the stock, decide in the
// application, then write the stock back. Between one buyer's GET and its
// SET (an app round-trip in production, a Gosched here) every other buyer
// reads the same count, so all of them take an order on the same unit and
// the last SET wins. A barrier makes every buyer read before any writes, the
// worst case that a real crowd reaches by chance, so the test never flakes.
// The reservation scripts make the read, the check and the write one atomic
// step in Redis instead; see TestOrigin50BuyersFor5Units.
func TestOriginNaiveReadThenWriteOversells(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			s := k.open(t)
			naiveReadThenWrite(t, s.rdb, s.prefix+":naive-stock")
		})
	}
}

func naiveReadThenWrite(t *testing.T, rdb *goredis.Client, key string) {
	const buyers, stock = 50, 5
	ctx := context.Background()
	if err := rdb.Set(ctx, key, stock, 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	var (
		orders atomic.Int64
		read   sync.WaitGroup // the barrier between everyone's read and anyone's write
		wg     sync.WaitGroup
	)
	read.Add(buyers)
	for i := range buyers {
		wg.Go(func() {
			n, err := rdb.Get(ctx, key).Int64()
			read.Done()
			read.Wait()
			if err != nil {
				t.Errorf("buyer %d: GET: %v", i, err)
				return
			}
			if n <= 0 {
				return // sold out, as far as this buyer can tell
			}
			runtime.Gosched() // the app's round-trip between deciding and writing
			if err := rdb.Set(ctx, key, n-1, 0).Err(); err != nil {
				t.Errorf("buyer %d: SET: %v", i, err)
				return
			}
			orders.Add(1)
		})
	}
	wg.Wait()
	left, err := rdb.Get(ctx, key).Int64()
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if got := orders.Load(); got <= stock {
		t.Fatalf("naive read-then-write took %d orders for %d units; the race did not show", got, stock)
	}
	t.Logf("naive read-then-write took %d orders for %d units and still shows %d in stock", orders.Load(), stock, left)
	if left != stock-1 {
		t.Fatalf("stock left = %d, want %d: every buyer wrote back the same count", left, stock-1)
	}
}
