//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkRateLimit measures taking one request from a new buyer's budget
// and from one address's budget that every request shares, as the success
// path does with both limits on: through the store (a script call per
// request) and through the instance's LocalLimiter. Its b.N requests come
// from GOMAXPROCS*16 goroutines, on the real Redis.
//
//	go test -tags integration -run '^$' -bench RateLimit -benchmem ./redisstore
func BenchmarkRateLimit(b *testing.B) {
	user := reservation.Limit{Rate: 5, Per: time.Second, Burst: 10}
	ip := reservation.Limit{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000}
	for _, name := range []string{"store", "local"} {
		b.Run(name, func(b *testing.B) {
			s := newRealStore(b)
			var limiter reservation.RateLimiter = s.Store
			if name == "local" {
				l := s.LocalLimiter()
				defer l.Flush(context.Background())
				limiter = l
			}
			ctx := context.Background()
			var users atomic.Int64
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					keys := []reservation.RateKey{
						{Policy: "user", Subject: run + "u" + strconv.FormatInt(users.Add(1), 10), Limit: user},
						{Policy: "ip", Subject: run, Limit: ip},
					}
					if _, err := limiter.Take(ctx, keys); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkOutboxReadAck measures what the syncer asks of this process per
// outbox entry, besides writing it to the record: reading it in batches of
// 500 (claims, XREADGROUP, parsing) and acknowledging it. The entries are
// holds on one item, made with the timer stopped. Its allocations per entry
// are the syncer's share of the service's garbage on the success path.
//
//	go test -tags integration -run '^$' -bench OutboxReadAck -benchmem ./redisstore
func BenchmarkOutboxReadAck(b *testing.B) {
	const batch = 500
	ctx := context.Background()
	s := newRealStore(b)
	mustSeed(b, s, itemSpec("bench", 1_000_000_000, 1))
	ob, err := s.Outbox(redisstore.OutboxOptions{Consumer: "bench", ClaimIdle: time.Minute, MaxTries: 3, Scan: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	drain := func() int {
		n := 0
		for {
			entries, err := ob.Read(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if len(entries) == 0 {
				return n
			}
			if err := ob.Ack(ctx, entries); err != nil {
				b.Fatal(err)
			}
			n += len(entries)
		}
	}
	drain() // the seed's entry
	var users atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(batch, b.N-done)
		for range n {
			req := reservation.ReserveRequest{ID: newID(b, "bench"), SKU: "bench",
				UserID: "u" + strconv.FormatInt(users.Add(1), 10), Quantity: 1}
			if _, _, err := s.Reserve(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		// Past the store's 5 ms of gathering index hints and the reader's
		// Scan: the item is in the dirty index and the reader looks.
		time.Sleep(10 * time.Millisecond)
		b.StartTimer()
		got := 0
		for tries := 0; got < n && tries < 1000; tries++ {
			if read := drain(); read > 0 {
				tries = 0
				got += read
			}
		}
		if got != n {
			b.Fatalf("read %d of %d entries", got, n)
		}
		done += n
	}
}
