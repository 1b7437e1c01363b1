//go:build integration

package redisstore_test

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/redisstore"
)

// BenchmarkReservePipelining measures granted reserves through Store.Reserve
// on the real Redis, 64 in flight on two cores as in BenchmarkReserveHTTP,
// each from a new user, sent three ways: through the Store's own coalescer
// (the default), each on its own connection (WithPipelines(0, 0)), and
// through go-redis's AutoPipeline (the blocking face, its defaults), which
// batches concurrent commands the way the coalescer does. ns/op is the
// inverse of throughput: 20µs/op is 50k reserves a second.
//
// Run the variants interleaved, as the machine's load drifts:
//
//	go test -c -tags integration -o /tmp/redisstore.test ./redisstore
//	for i in 1 2 3 4 5; do /tmp/redisstore.test -test.run '^$' \
//	    -test.bench ReservePipelining -test.benchtime 3s -test.benchmem; done
func BenchmarkReservePipelining(b *testing.B) {
	cases := []struct {
		name string
		open func(b *testing.B, client *goredis.Client, prefix string) (*redisstore.Store, error)
	}{
		{"coalescer", func(b *testing.B, client *goredis.Client, prefix string) (*redisstore.Store, error) {
			return redisstore.New(context.Background(), client, prefix)
		}},
		{"off", func(b *testing.B, client *goredis.Client, prefix string) (*redisstore.Store, error) {
			return redisstore.New(context.Background(), client, prefix, redisstore.WithPipelines(0, 0))
		}},
		{"autopipeline", func(b *testing.B, client *goredis.Client, prefix string) (*redisstore.Store, error) {
			ap, err := client.AutoPipeline()
			if err != nil {
				return nil, err
			}
			b.Cleanup(func() { _ = ap.Close() })
			return redisstore.New(context.Background(), autoPipelined{client, ap}, prefix, redisstore.WithPipelines(0, 0))
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			client, prefix := redistest.Client(b)
			s, err := tc.open(b, client, prefix)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := s.Seed(ctx, itemSpec("bench", 1_000_000_000, 1)); err != nil {
				b.Fatal(err)
			}
			reserveInParallel(b, s, "bench", 32, nil)
		})
	}
}

// autoPipelined is a client whose script calls go through go-redis's
// AutoPipeline: a Store with its coalescer off runs each script with
// Script.Run, which calls EvalSha (and Eval on NOSCRIPT) on its client.
type autoPipelined struct {
	*goredis.Client
	ap *goredis.AutoPipeliner
}

func (c autoPipelined) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return c.ap.EvalSha(ctx, sha1, keys, args...)
}

func (c autoPipelined) Eval(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	return c.ap.Eval(ctx, script, keys, args...)
}
