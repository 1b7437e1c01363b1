//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

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
			ctx := context.Background()
			var users atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id, err := reservation.NewID("bench")
					if err != nil {
						b.Error(err)
						return
					}
					req := reservation.ReserveRequest{ID: id, SKU: "bench",
						UserID: "u" + strconv.FormatInt(users.Add(1), 10), Quantity: 1}
					if _, _, err := s.Reserve(ctx, req); !errors.Is(err, tc.wantErr) {
						b.Errorf("reserve: %v, want %v", err, tc.wantErr)
						return
					}
				}
			})
		})
	}
}
