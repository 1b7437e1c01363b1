package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
)

// TestPropertyTransferReceipts: transfers between an item's buckets are
// taken, then delivered in a random order, each a random number of times
// (a slow mover and the sweeper racing, go-redis resending a script whose
// reply timed out); between deliveries the giver's record is sometimes
// deleted, as the mover does once a give went through. The receiver's
// receipt (give.lua's xin) must make every delivery after the first count
// nothing: after each one, every bucket holds exactly what the takes and
// the first deliveries make it, and the buckets plus the units in transit
// add up to the item's total. A sweep at the end, which delivers every
// transfer whose record is left once more, changes no stock either.
func TestPropertyTransferReceipts(t *testing.T) {
	mr, rdb := redistest.Miniredis(t)
	s := newTestStore(t, rdb, mr, "rc")
	ctx := context.Background()
	give := goredis.NewScript(string(luascripts.Give()))
	start := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	rapid.Check(t, func(rt *rapid.T) {
		mr.FlushAll()
		mr.SetTime(start)
		const sku = "rc"
		n := rapid.IntRange(2, 4).Draw(rt, "buckets")
		spec := itemSpec(sku, rapid.Int64Range(int64(n), 40).Draw(rt, "stock"), 1)
		spec.Buckets = n
		if res, err := s.Seed(ctx, spec); err != nil || !res.Created {
			rt.Fatalf("seed %+v: %+v, %v", spec, res, err)
		}
		names := redisstore.Buckets(sku, n)
		stocks := map[string]int64{} // what each bucket must hold
		for _, name := range names {
			stocks[name] = bucketStock(rt, s, name)
		}

		type transfer struct {
			id, from, to string
			units        int64
		}
		var xs []transfer
		for range rapid.IntRange(1, 6).Draw(rt, "transfers") {
			from := rapid.IntRange(0, n-1).Draw(rt, "from")
			to := (from + rapid.IntRange(1, n-1).Draw(rt, "to, after from")) % n
			id, units := stuckTransfer(rt, s, n, names[from], names[to], rapid.Int64Range(1, 5).Draw(rt, "want"), false)
			if units == 0 {
				continue // from had nothing left
			}
			stocks[names[from]] -= units
			xs = append(xs, transfer{id: id, from: names[from], to: names[to], units: units})
		}
		checkStocks := func(when string) {
			for _, name := range names {
				if got := bucketStock(rt, s, name); got != stocks[name] {
					rt.Fatalf("%s: bucket %s holds %d, want %d", when, name, got, stocks[name])
				}
			}
			readBuckets(rt, s, sku, n) // the buckets and the transit add up to the total
		}
		checkStocks("after the takes")

		var deliveries []int // indexes into xs: each once, some again
		for i := range xs {
			for range 1 + rapid.IntRange(0, 3).Draw(rt, "repeats") {
				deliveries = append(deliveries, i)
			}
		}
		if len(deliveries) > 0 {
			deliveries = rapid.Permutation(deliveries).Draw(rt, "order")
		}
		given := make([]bool, len(xs))
		for k, i := range deliveries {
			x := xs[i]
			want := "given"
			if given[i] {
				want = "duplicate"
			}
			rep, err := give.Run(ctx, s.rdb, s.ScriptKeys(x.to), x.id, x.units).Slice()
			if err != nil || len(rep) != 1 || rep[0] != want {
				rt.Fatalf("delivery %d of transfer %s (%d units to %s): %v, %v; want %s", k, x.id, x.units, x.to, rep, err, want)
			}
			if !given[i] {
				given[i] = true
				stocks[x.to] += x.units
			}
			if rapid.Bool().Draw(rt, "the mover forgets the transfer") {
				if err := s.rdb.HDel(ctx, s.key(x.from, "xout"), x.id).Err(); err != nil {
					rt.Fatalf("HDEL xout: %v", err)
				}
			}
			checkStocks("after delivery " + strconv.Itoa(k))
		}
		if sum := readBuckets(rt, s, sku, n); sum.transit != 0 || sum.stock != spec.Stock {
			rt.Fatalf("every transfer delivered: %+v, want nothing in transit and the stock %d in the buckets", sum, spec.Stock)
		}

		// Records older than 2 s are the sweeper's: it delivers them again.
		mr.SetTime(start.Add(3 * time.Second))
		if _, err := s.SweepDue(ctx, 64); err != nil {
			rt.Fatalf("SweepDue: %v", err)
		}
		checkStocks("after the sweep")
		for _, name := range names {
			if left := s.rdb.HLen(ctx, s.key(name, "xout")).Val(); left != 0 {
				rt.Fatalf("after the sweep bucket %s still records %d transfers", name, left)
			}
		}
	})
}

// bucketStock is a bucket's stored stock, read without running a script.
func bucketStock(t failer, s *testStore, bucket string) int64 {
	v, err := s.rdb.HGet(context.Background(), s.key(bucket, "item"), "stock").Result()
	if err != nil {
		t.Fatalf("HGET stock of %s: %v", bucket, err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("stock of %s = %q: %v", bucket, v, err)
	}
	return n
}
