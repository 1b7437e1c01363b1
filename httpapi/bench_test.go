//go:build integration

package httpapi_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/prommetrics"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// BenchmarkReserveHTTP runs POST /v1/items/{sku}/reservations through the
// whole Fiber handler chain (no socket: a fasthttp.RequestCtx handed to the
// handler) over the real Redis, 64 requests at a time so concurrent script
// calls share pipelines as in production. allocs/op is the server's
// allocations per request.
//
//	go test -tags integration -run '^$' -bench ReserveHTTP -benchmem ./httpapi
func BenchmarkReserveHTTP(b *testing.B) {
	cases := []struct {
		name   string
		stock  int64
		memory time.Duration
		limits bool // the bench's budgets: a buyer's 5/s burst 10, the address's never spent
		// metrics: Prometheus metrics on, as the binary serves them.
		metrics bool
		want    int
	}{
		{"granted", 1_000_000_000, 50 * time.Millisecond, false, false, 201},
		{"granted_limits", 1_000_000_000, 50 * time.Millisecond, true, false, 201},
		{"sold_out_from_redis", 0, 0, false, false, 409},
		{"sold_out_from_memory", 0, 50 * time.Millisecond, false, false, 409},
		// The sold-out row of make bench: memory, metrics and both limits,
		// as a flash crowd meets the service once the stock is gone.
		{"sold_out_as_served", 0, 50 * time.Millisecond, true, true, 409},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			client, prefix := redistest.Client(b)
			ctx := context.Background()
			store, err := redisstore.New(ctx, client, prefix)
			if err != nil {
				b.Fatal(err)
			}
			svc := reservation.NewService(store, nil, reservation.WithSoldOutMemory(tc.memory))
			if _, err := svc.Seed(ctx, reservation.ItemSpec{SKU: "bench", Stock: tc.stock, PerUserLimit: 1, Hold: time.Minute}); err != nil {
				b.Fatal(err)
			}
			cfg := httpapi.Config{AdminTokens: []string{adminToken}, Log: quietLog()}
			if tc.limits {
				limiter := store.LocalLimiter()
				defer limiter.Flush(ctx)
				cfg.Limits = httpapi.RateLimits{Limiter: limiter,
					PerUser: reservation.Limit{Rate: 5, Per: time.Second, Burst: 10},
					PerIP:   reservation.Limit{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000}}
			}
			if tc.metrics {
				cfg.Metrics = prommetrics.New(prommetrics.Config{})
			}
			handler := httpapi.New(svc, cfg).App().Handler()
			var users atomic.Int64
			b.SetParallelism(32) // 64 in flight on two cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var rc fasthttp.RequestCtx
				body := make([]byte, 0, 64)
				for pb.Next() {
					rc.Request.Reset()
					rc.Response.Reset()
					rc.Request.Header.SetMethod(fasthttp.MethodPost)
					rc.Request.SetRequestURI("/v1/items/bench/reservations")
					rc.Request.Header.SetContentType("application/json")
					body = strconv.AppendInt(append(body[:0], `{"user_id":"u`...), users.Add(1), 10)
					rc.Request.SetBody(append(body, `","quantity":1}`...))
					handler(&rc)
					if got := rc.Response.StatusCode(); got != tc.want {
						b.Errorf("status %d, want %d: %s", got, tc.want, rc.Response.Body())
						return
					}
				}
			})
		})
	}
}
