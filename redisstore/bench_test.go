//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// BenchmarkReserve measures one reserve script round trip through the Store
// against the real Redis, from b.N goroutines spread over GOMAXPROCS*16
// workers, on both paths a flash sale has: holds granted and sold out.
//
//	go test -tags integration -run '^$' -bench Reserve -benchmem ./redisstore
func BenchmarkReserve(b *testing.B) {
	cases := []struct {
		name    string
		stock   int64
		wantErr error
	}{
		{name: "granted", stock: 1_000_000_000},
		{name: "sold_out", stock: 0, wantErr: reservation.ErrSoldOut},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s := newRealStore(b)
			mustSeed(b, s, itemSpec("bench", tc.stock, 1))
			reserveInParallel(b, s.Store, "bench", 16, tc.wantErr)
		})
	}
}

// reserveInParallel reserves one unit of sku from b.N goroutines spread
// over GOMAXPROCS*parallelism workers, each call from a new user, and fails
// on any answer other than wantErr.
func reserveInParallel(b *testing.B, s *redisstore.Store, sku string, parallelism int, wantErr error) {
	ctx := context.Background()
	var users atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id, err := reservation.NewID(sku)
			if err != nil {
				b.Error(err)
				return
			}
			req := reservation.ReserveRequest{ID: id, SKU: sku,
				UserID: "u" + strconv.FormatInt(users.Add(1), 10), Quantity: 1}
			if _, _, err := s.Reserve(ctx, req); !errors.Is(err, wantErr) {
				b.Errorf("reserve: %v, want %v", err, wantErr)
				return
			}
		}
	})
}
