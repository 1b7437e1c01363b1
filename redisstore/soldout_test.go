//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// resellBound is the promise of the sold-out memory: units that come back
// through a cancel, an expiry or a restock on any instance are sellable on
// every instance within it.
const resellBound = 100 * time.Millisecond

// twoInstances are two Services on one real Redis, each with the sold-out
// memory the service runs with by default.
func twoInstances(t *testing.T) (a, b *reservation.Service, st *redisstore.Store) {
	t.Helper()
	ts := newRealStore(t)
	other, err := redisstore.New(context.Background(), ts.rdb, ts.prefix)
	if err != nil {
		t.Fatal(err)
	}
	mem := reservation.WithSoldOutMemory(50 * time.Millisecond)
	return reservation.NewService(ts.Store, nil, mem), reservation.NewService(other, nil, mem), ts.Store
}

// sellsWithin reserves on svc as new buyers until one is granted, and
// returns how long that took from start.
func sellsWithin(t *testing.T, svc *reservation.Service, sku string, start time.Time) time.Duration {
	t.Helper()
	ctx := context.Background()
	for i := 0; time.Since(start) < 2*time.Second; i++ {
		_, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: sku, UserID: "late-" + strconv.Itoa(i), Quantity: 1})
		switch {
		case err == nil:
			return time.Since(start)
		case !errors.Is(err, reservation.ErrSoldOut):
			t.Fatalf("reserve: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the returned unit was not sellable within 2s")
	return 0
}

// soldOutOn makes instance svc remember sku as sold out, and checks that it
// does: the next refusal must come from memory.
func soldOutOn(t *testing.T, svc *reservation.Service, sku string) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		_, _, err := svc.Reserve(ctx, reservation.ReserveRequest{SKU: sku, UserID: "crowd", Quantity: 1})
		if !errors.Is(err, reservation.ErrSoldOut) {
			t.Fatalf("want sold out, got %v", err)
		}
	}
}

func TestReturnedUnitsResellWithin100ms(t *testing.T) {
	tests := []struct {
		name string
		// give returns the one unit to the pool, through instance b or by
		// waiting, and says when it came back.
		give func(t *testing.T, b *reservation.Service, hold reservation.Reservation) time.Time
	}{
		{"cancel on another instance", func(t *testing.T, b *reservation.Service, hold reservation.Reservation) time.Time {
			if _, err := b.Cancel(context.Background(), hold.ID); err != nil {
				t.Fatal(err)
			}
			return time.Now()
		}},
		{"restock on another instance", func(t *testing.T, b *reservation.Service, hold reservation.Reservation) time.Time {
			_, err := b.Seed(context.Background(), reservation.ItemSpec{SKU: hold.SKU, Stock: 2, PerUserLimit: 1, Hold: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return time.Now()
		}},
		{"hold expires", func(t *testing.T, _ *reservation.Service, hold reservation.Reservation) time.Time {
			// Redis's clock decides expiry; on one host it is the local clock.
			return hold.ExpiresAt
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, _ := twoInstances(t)
			ctx := context.Background()
			if _, err := a.Seed(ctx, reservation.ItemSpec{SKU: "drop", Stock: 1, PerUserLimit: 1, Hold: time.Second}); err != nil {
				t.Fatal(err)
			}
			hold, _, err := a.Reserve(ctx, reservation.ReserveRequest{SKU: "drop", UserID: "first", Quantity: 1})
			if err != nil {
				t.Fatal(err)
			}
			soldOutOn(t, a, "drop")
			back := tt.give(t, b, hold)
			took := sellsWithin(t, a, "drop", back)
			t.Logf("sellable again on the other instance %v after the unit came back", took.Round(time.Millisecond))
			if took > resellBound {
				t.Fatalf("sellable again after %v, want within %v", took, resellBound)
			}
		})
	}
}
