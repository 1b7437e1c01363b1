//go:build integration

package baseline

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// The tests here run the MySQL approaches on the shared MariaDB (see
// internal/testenv), so they are built only with the integration tag (make
// test-integration, make test): without a server they skip, or fail under
// CI=true.

// The 12.12 incident: 50 buyers, 5 units.
const (
	buyers = 50
	units  = 5
)

func TestFiftyBuyersForFiveUnits(t *testing.T) {
	tests := []struct {
		name     string
		approach Approach
		// holdAfterRead makes every naive buyer read before any writes.
		holdAfterRead bool
		wantOrders    int64
		wantAvailable int64
		wantOversold  int64
	}{
		{name: "for update sells exactly the stock", approach: ForUpdate, wantOrders: units, wantAvailable: 0, wantOversold: 0},
		{name: "conditional update sells exactly the stock", approach: Conditional, wantOrders: units, wantAvailable: 0, wantOversold: 0},
		// Every buyer reads 5 and writes back 4: 50 orders, the row says 4 left.
		{name: "naive read then write oversells", approach: Naive, holdAfterRead: true,
			wantOrders: buyers, wantAvailable: units - 1, wantOversold: buyers - units},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			shop := openShop(t, tt.approach, units)
			if tt.holdAfterRead {
				shop.afterRead = newBarrier(buyers, 20*time.Second).wait
			}

			var purchased, soldOut atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, buyers)
			for i := range buyers {
				wg.Go(func() {
					outcome, err := shop.Buy(ctx, fmt.Sprintf("user-%02d", i), 1)
					switch {
					case err != nil:
						errs <- err
					case outcome == Purchased:
						purchased.Add(1)
					case outcome == SoldOut:
						soldOut.Add(1)
					default:
						errs <- fmt.Errorf("unknown outcome %q", outcome)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Buy: %v", err)
			}

			v, err := shop.Verify(ctx)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Verification{Stock: units, Available: tt.wantAvailable, Orders: tt.wantOrders,
				UnitsOrdered: tt.wantOrders, Oversold: tt.wantOversold}
			if v != want {
				t.Errorf("Verify = %+v, want %+v", v, want)
			}
			if got := purchased.Load(); got != tt.wantOrders {
				t.Errorf("%d buyers told purchased, want %d", got, tt.wantOrders)
			}
			if got := soldOut.Load(); got != buyers-tt.wantOrders {
				t.Errorf("%d buyers told sold out, want %d", got, buyers-tt.wantOrders)
			}
		})
	}
}

func TestBuyOutcomesInOrder(t *testing.T) {
	for _, a := range Approaches() {
		t.Run(a.String(), func(t *testing.T) {
			ctx := testCtx(t)
			shop := openShop(t, a, 3)
			steps := []struct {
				qty  int
				want string
			}{
				{qty: 2, want: Purchased},
				{qty: 2, want: SoldOut}, // one left: all or nothing
				{qty: 1, want: Purchased},
				{qty: 1, want: SoldOut},
			}
			for i, s := range steps {
				got, err := shop.Buy(ctx, fmt.Sprintf("user-%d", i), s.qty)
				if err != nil {
					t.Fatalf("step %d: Buy(%d): %v", i, s.qty, err)
				}
				if got != s.want {
					t.Fatalf("step %d: Buy(%d) = %q, want %q", i, s.qty, got, s.want)
				}
			}
			v, err := shop.Verify(ctx)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if want := (Verification{Stock: 3, Available: 0, Orders: 2, UnitsOrdered: 3}); v != want {
				t.Errorf("Verify = %+v, want %+v", v, want)
			}
		})
	}
}

func TestBuyRefusesQuantityBelowOne(t *testing.T) {
	shop := openShop(t, Conditional, 1)
	if _, err := shop.Buy(testCtx(t), "u", 0); err == nil {
		t.Fatal("Buy(0) succeeded, want an error")
	}
}

// openShop opens a shop in a database of the test's own on the shared
// MariaDB (skipped without one, failed under CI=true).
func openShop(t *testing.T, a Approach, stock int64) *Shop {
	t.Helper()
	shop, err := Open(testCtx(t), testenv.SharedMySQL(t), a, stock)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", a, stock, err)
	}
	t.Cleanup(func() {
		if err := shop.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return shop
}

// barrier releases its waiters once n have arrived. A waiter gives up
// after timeout, so a buyer that failed before reaching it turns into a
// test failure (wrong counts) instead of a hang.
type barrier struct {
	n       int64
	arrived atomic.Int64
	all     chan struct{}
	timeout time.Duration
}

func newBarrier(n int, timeout time.Duration) *barrier {
	return &barrier{n: int64(n), all: make(chan struct{}), timeout: timeout}
}

func (b *barrier) wait() {
	if b.arrived.Add(1) == b.n {
		close(b.all)
	}
	select {
	case <-b.all:
	case <-time.After(b.timeout):
	}
}

// TestOpenRefusesAUsedDatabase: a second Open on a database that already
// holds a shop is refused.
func TestOpenRefusesAUsedDatabase(t *testing.T) {
	ctx := testCtx(t)
	dsn := testenv.SharedMySQL(t)
	first, err := Open(ctx, dsn, Conditional, 1)
	if err != nil {
		t.Fatalf("first Open: %v", err)
	}
	t.Cleanup(func() { _ = first.Close() })
	if second, err := Open(ctx, dsn, Conditional, 1); err == nil {
		_ = second.Close()
		t.Fatal("second Open on the same database succeeded, want an error")
	}
}
