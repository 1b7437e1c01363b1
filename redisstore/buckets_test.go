package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// bucketSums adds up the item hashes of sku's buckets and the units
// recorded as in transit, straight from Redis.
type bucketSums struct {
	total, stock, available, reserved, sold, transit int64
}

func readBuckets(t testing.TB, s *testStore, sku string, n int) bucketSums {
	t.Helper()
	ctx := context.Background()
	var sum bucketSums
	for i, name := range redisstore.Buckets(sku, n) {
		f := s.rdb.HGetAll(ctx, s.key(name, "item")).Val()
		num := func(k string) int64 {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			return v
		}
		if i == 0 {
			sum.total = num("total")
		}
		for _, v := range []int64{num("available"), num("reserved"), num("sold")} {
			if v < 0 {
				t.Fatalf("bucket %s has a negative counter: %v", name, f)
			}
		}
		if num("available")+num("reserved")+num("sold") != num("stock") {
			t.Fatalf("bucket %s: available+reserved+sold != stock: %v", name, f)
		}
		sum.stock += num("stock")
		sum.available += num("available")
		sum.reserved += num("reserved")
		sum.sold += num("sold")
		for _, rec := range s.rdb.HVals(ctx, s.key(name, "xout")).Val() {
			// "to_bucket|units|created_ms"
			parts := strings.Split(rec, "|")
			if len(parts) != 3 {
				t.Fatalf("bucket %s: transfer record %q", name, rec)
			}
			units, _ := strconv.ParseInt(parts[1], 10, 64)
			sum.transit += units
		}
	}
	if sum.stock+sum.transit != sum.total {
		t.Fatalf("%s: buckets hold %d and %d are in transit, total is %d", sku, sum.stock, sum.transit, sum.total)
	}
	return sum
}

func TestBucketsSellExactlyTheStock(t *testing.T) {
	s := newMiniStore(t)
	ctx := context.Background()
	spec := itemSpec("hot", 30, 1)
	spec.Buckets = 3
	res := mustSeed(t, s, spec)
	if res.Item.Buckets != 3 || res.Item.Stock != 30 || res.Item.Available != 30 {
		t.Fatalf("seeded item = %+v", res.Item)
	}
	sum := readBuckets(t, s, "hot", 3)
	if sum.available != 30 {
		t.Fatalf("after seeding, buckets have %+v", sum)
	}
	created, soldOut := 0, 0
	for u := range 100 {
		_, _, err := s.Reserve(ctx, request(t, "hot", "user-"+strconv.Itoa(u), 1, ""))
		var so *reservation.SoldOutError
		switch {
		case err == nil:
			created++
		case errors.As(err, &so):
			soldOut++
		default:
			t.Fatalf("reserve: %v", err)
		}
	}
	if created != 30 || soldOut != 70 {
		t.Fatalf("created %d, sold out %d; want 30 and 70", created, soldOut)
	}
	it, err := s.Item(ctx, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if it.Available != 0 || it.Reserved != 30 || it.Stock != 30 {
		t.Fatalf("item = %+v", it)
	}
	readBuckets(t, s, "hot", 3)
}
