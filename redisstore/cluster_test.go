//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// clusterStore is a Store on a private Redis Cluster, its client, and SKUs
// whose hash tags land one on each master.
type clusterStore struct {
	*redisstore.Store
	rc   *testenv.RedisCluster
	cc   *goredis.ClusterClient
	skus []string
}

func newClusterStore(t *testing.T) *clusterStore {
	t.Helper()
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	cc := rc.Client(t)
	st, err := redisstore.New(context.Background(), cc, "fs")
	if err != nil {
		t.Fatalf("redisstore.New on a cluster: %v", err)
	}
	return &clusterStore{Store: st, rc: rc, cc: cc, skus: rc.OnEachMaster(t, "c")}
}

// TestCluster runs the scripts, the sweeper, the outbox reader and an item
// split into buckets on a Redis Cluster of three masters, with items on
// every master, and reserves through a slot migration.
func TestCluster(t *testing.T) {
	cs := newClusterStore(t)
	ctx := context.Background()

	t.Run("lifecycle on every master", func(t *testing.T) {
		for _, sku := range cs.skus {
			spec := itemSpec(sku, 3, 1)
			spec.Hold = 300 * time.Millisecond
			if _, err := cs.Seed(ctx, spec); err != nil {
				t.Fatalf("seed %s: %v", sku, err)
			}
			var ids []string
			for _, user := range []string{"alice", "bob", "carol"} {
				r, _, err := cs.Reserve(ctx, request(t, sku, user, 1, "k1"))
				if err != nil {
					t.Fatalf("reserve %s for %s: %v", sku, user, err)
				}
				ids = append(ids, r.ID)
			}
			if _, _, err := cs.Reserve(ctx, request(t, sku, "dave", 1, "")); !errors.As(err, new(*reservation.SoldOutError)) {
				t.Fatalf("reserve %s beyond the stock: %v, want sold out", sku, err)
			}
			if _, err := cs.Confirm(ctx, ids[0]); err != nil {
				t.Fatalf("confirm %s: %v", ids[0], err)
			}
			if _, err := cs.Cancel(ctx, ids[1]); err != nil {
				t.Fatalf("cancel %s: %v", ids[1], err)
			}
		}
		time.Sleep(400 * time.Millisecond) // carol's holds fall due
		// The sweeper walks the catalogue (one key, on one master) and
		// settles items on every master.
		expired, err := cs.SweepDue(ctx, 100)
		if err != nil || expired != len(cs.skus) {
			t.Fatalf("SweepDue = %d, %v; want %d", expired, err, len(cs.skus))
		}
		for _, sku := range cs.skus {
			it, err := cs.Item(ctx, sku)
			if err != nil {
				t.Fatalf("item %s: %v", sku, err)
			}
			if it.Stock != 3 || it.Available != 2 || it.Reserved != 0 || it.Sold != 1 {
				t.Errorf("item %s = %+v, want available 2, reserved 0, sold 1", sku, it)
			}
		}
		counters, n, err := cs.Counters(ctx, 0)
		if err != nil || n != len(cs.skus) || len(counters) != len(cs.skus) {
			t.Fatalf("Counters = %d items of %d, %v; want %d", len(counters), n, err, len(cs.skus))
		}
	})

	t.Run("outbox reader sees every node", func(t *testing.T) {
		want := map[string]int64{}
		for _, sku := range cs.skus {
			n, err := cs.cc.XLen(ctx, "fs:{"+sku+"}:outbox").Result()
			if err != nil || n == 0 {
				t.Fatalf("XLEN outbox of %s = %d, %v", sku, n, err)
			}
			want[sku] = n
		}
		o, err := cs.Outbox(redisstore.OutboxOptions{Consumer: "c1", ClaimIdle: time.Second, MaxTries: 2, Scan: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			entries, err := o.Read(ctx, 100)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			for _, e := range entries {
				if e.Err != nil {
					t.Fatalf("entry %s of %s: %v", e.ID, e.SKU, e.Err)
				}
				got[e.SKU]++
			}
			if err := o.Ack(ctx, entries); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("entries read per item %v, want %v", got, want)
			}
		}
		b, err := o.Backlog(ctx)
		if err != nil || b.Entries != 0 || b.Dead != 0 {
			t.Fatalf("Backlog after acking everything = %+v, %v", b, err)
		}
	})

	t.Run("buckets spread over the masters", func(t *testing.T) {
		const sku, stock, buyers = "bucketed", 40, 60
		spec := itemSpec(sku, stock, 1)
		spec.Buckets = 4
		if _, err := cs.Seed(ctx, spec); err != nil {
			t.Fatalf("seed: %v", err)
		}
		granted, errs := reserveConcurrently(ctx, t, cs, sku, buyers, func(i int) string { return fmt.Sprintf("b%d", i) })
		if errs != nil {
			t.Fatalf("reserve errors: %v", errs)
		}
		it, err := cs.Item(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		if granted != stock || it.Available != 0 || it.Reserved != stock {
			t.Fatalf("%d of %d buyers granted, item %+v; want exactly %d", granted, buyers, it, stock)
		}
	})

	t.Run("rate limits: the instance's charges reach every master", func(t *testing.T) {
		// Buyers' budgets spread over the masters by their subjects; each is
		// admitted once without asking, then charged (one call per budget
		// on a cluster), so the store's exact path sees them spent.
		l := cs.LocalLimiter()
		user := reservation.Limit{Rate: 1, Per: time.Minute, Burst: 2}
		ip := reservation.RateKey{Policy: "ip", Subject: "203.0.113.5", Limit: reservation.Limit{Rate: 1, Per: time.Minute, Burst: 100}}
		const buyers = 20
		for i := range buyers {
			keys := []reservation.RateKey{{Policy: "user", Subject: fmt.Sprint("rl-", i), Limit: user}, ip}
			if _, err := l.Take(ctx, keys); err != nil {
				t.Fatalf("buyer %d: %v", i, err)
			}
		}
		l.Flush(ctx)
		for i := range buyers {
			k := []reservation.RateKey{{Policy: "user", Subject: fmt.Sprint("rl-", i), Limit: user}}
			if _, err := cs.Take(ctx, k); err != nil {
				t.Fatalf("buyer %d's second request: %v", i, err)
			}
			if _, err := cs.Take(ctx, k); !errors.Is(err, reservation.ErrRateLimited) {
				t.Fatalf("buyer %d's third request: %v, want rate limited (burst 2, one charged)", i, err)
			}
		}
		st, err := cs.Take(ctx, []reservation.RateKey{ip})
		if err != nil || st[0].Remaining != 100-buyers-1 {
			t.Fatalf("the address after %d requests and this one: %+v, %v; want %d remaining", buyers, st, err, 100-buyers-1)
		}
	})

	t.Run("reserve through a slot migration", func(t *testing.T) {
		sku := cs.skus[0]
		spec := itemSpec(sku, 1_000_000, 1)
		if _, err := cs.Seed(ctx, spec); err != nil {
			t.Fatalf("seed: %v", err)
		}
		slot, err := cs.cc.ClusterKeySlot(ctx, "{"+sku+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		from := cs.rc.MasterOf(t, int(slot))
		to := cs.rc.Masters()[1]
		// Buyers run while the slot is held half-migrated for 2 x 150 ms:
		// every script on it meets ASK and TRYAGAIN, which the store waits
		// out instead of answering unavailable.
		stop := make(chan struct{})
		type outcome struct {
			granted int
			errs    []error
		}
		done := make(chan outcome)
		go func() {
			var o outcome
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- o
					return
				default:
				}
				g, errs := reserveConcurrently(ctx, t, cs, sku, 8, func(j int) string { return fmt.Sprintf("m%d-%d", i, j) })
				o.granted += g
				o.errs = append(o.errs, errs...)
			}
		}()
		time.Sleep(50 * time.Millisecond)
		begin := time.Now()
		cs.rc.MoveSlotPaused(t, int(slot), to, 150*time.Millisecond)
		moved := time.Since(begin)
		time.Sleep(50 * time.Millisecond)
		close(stop)
		o := <-done
		if len(o.errs) > 0 {
			t.Errorf("%d reserves failed during the migration, e.g. %v", len(o.errs), o.errs[0])
		}
		if got := cs.rc.MasterOf(t, int(slot)); got != to {
			t.Fatalf("slot %d on %s after the move, want %s (from %s)", slot, got, to, from)
		}
		it, err := cs.Item(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		if it.Reserved != int64(o.granted) || it.Available+it.Reserved+it.Sold != it.Stock {
			t.Errorf("after the move %d granted, item %+v", o.granted, it)
		}
		t.Logf("%d reserves granted while the slot moved in %v", o.granted, moved.Round(time.Millisecond))
	})
}

// reserveConcurrently has n users, named by user(i), reserve one unit of
// sku at once; it returns how many were granted and the errors other than
// sold out.
func reserveConcurrently(ctx context.Context, t *testing.T, cs *clusterStore, sku string, n int, user func(i int) string) (int, []error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	var errs []error
	for i := range n {
		req := request(t, sku, user(i), 1, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := cs.Reserve(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				granted++
			case !errors.As(err, new(*reservation.SoldOutError)):
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	return granted, errs
}
