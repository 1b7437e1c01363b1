//go:build fault

package faulttest

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/client"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// TestLargeCatalogueIdleAndTakeover: 100,000 items and four `flashsale
// serve` instances. Idle, Redis stays under 5 % of a core (the sweepers and
// syncers read the due and dirty indexes, not the catalogue). Then, with
// buyers loading a hot item through two instances, 30 holds taken through
// a third on random items are in MySQL within 2 s; that instance and a
// fourth are SIGKILLed just before the holds fall due, and each hold's
// units are still back in Redis within 1 s of its expiry and its expired
// state in MySQL within 2 s: the survivors take over what the dead held.
func TestLargeCatalogueIdleAndTakeover(t *testing.T) {
	const (
		items     = 100_000
		holdFor   = 8 * time.Second
		holds     = 30
		stock     = 10
		maxCPU    = 0.05
		expiryBy  = time.Second
		recordsBy = 2 * time.Second
	)
	ctx := context.Background()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	dsn := testenv.SharedMySQL(t)
	rdb := redis.Client(t)
	prefix := "ft-" + randomHex(t, 6)

	// Seeded through a store on the same prefix: 100,000 items through HTTP
	// would take the test's time; the instances still sync them all.
	store, err := redisstore.New(ctx, rdb, prefix)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	specs := make([]reservation.ItemSpec, items)
	for i := range specs {
		specs[i] = reservation.ItemSpec{SKU: fmt.Sprintf("cat-%06d", i), Stock: stock, PerUserLimit: 5, Hold: holdFor}
	}
	specs = append(specs, reservation.ItemSpec{SKU: "hot", Stock: 1_000_000_000, PerUserLimit: 1, Hold: 10 * time.Minute})
	if _, errs := store.SeedMany(ctx, specs); errors.Join(errs...) != nil {
		t.Fatalf("seed: %v", errors.Join(errs...))
	}
	store.FlushHints(ctx)
	t.Logf("%d items seeded in %v", items, time.Since(started).Round(time.Millisecond))

	// Without the race detector: its 5-10x slowdown would measure it, not
	// the indexes (syncing 100,000 items took over 4 minutes with it).
	bin := testenv.BuildFlashsaleFast(t)
	instances := make([]*instance, 4)
	for i := range instances {
		// The defaults a deployment runs with, not the harness's faster ones.
		instances[i] = startFlashsaleBin(t, bin, redis.Addr(), dsn, map[string]string{"FLASHSALE_KEY_PREFIX": prefix,
			"FLASHSALE_SYNC_SCAN": "250ms", "FLASHSALE_RECOVERY_INTERVAL": "1s"})
	}
	started = time.Now()
	waitBacklog(t, store, 2*time.Minute)
	t.Logf("the seeding synced to MySQL %v after the instances started", time.Since(started).Round(time.Millisecond))

	// Idle: what is left once the syncers have given the seeding's items
	// back to the index (each after 5 s without changes).
	time.Sleep(10 * time.Second)
	cpu, cmds, top := redisLoad(t, rdb, 10*time.Second)
	t.Logf("idle, %d items, 4 instances: Redis %.1f %% of a core, %.0f commands/s; busiest: %s", items, 100*cpu, cmds, top)
	if cpu >= maxCPU {
		t.Errorf("idle Redis CPU %.1f %% of a core, want under %.0f %%", 100*cpu, 100*maxCPU)
	}

	load := startLoad(t, instances[2].URL(), "hot", 4)
	load.SetBases(instances[2].URL(), instances[3].URL())
	waitAcked(t, load, 0, 10*time.Second)

	api := apiClient(t, instances[0].URL())
	type hold struct {
		client.Reservation
		reservedAt time.Time
	}
	taken := make([]hold, 0, holds)
	for _, n := range rand.Perm(items)[:holds] {
		sku := fmt.Sprintf("cat-%06d", n)
		r, _, err := api.Reserve(ctx, sku, client.ReserveRequest{UserID: "buyer-" + strconv.Itoa(n), Quantity: 1})
		if err != nil {
			t.Fatalf("reserve %s: %v", sku, err)
		}
		taken = append(taken, hold{r, time.Now()})
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, h := range taken {
		got := waitRecord(t, db, h.ID, "pending", h.reservedAt.Add(recordsBy))
		t.Logf("hold %s on %s: in MySQL %v after its reserve", h.ID, h.SKU, got.Sub(h.reservedAt).Round(time.Millisecond))
	}

	// Kill the instance the holds went through and another, just before
	// the holds fall due: whatever they had taken from the indexes dies
	// with them.
	offset := redisClockOffset(t, rdb)
	first := taken[0].ExpiresAt
	time.Sleep(time.Until(first.Add(-offset).Add(-300 * time.Millisecond)))
	instances[0].Kill(t)
	instances[1].Kill(t)
	t.Logf("instances 0 and 1 killed %v before the first hold fell due", first.Sub(time.Now().Add(offset)).Round(time.Millisecond))

	var wg sync.WaitGroup
	for _, h := range taken {
		wg.Add(1)
		go func() {
			defer wg.Done()
			back := waitAvailable(rdb, prefix, h.SKU, stock, h.ExpiresAt.Add(expiryBy), offset)
			if back.IsZero() {
				t.Errorf("hold %s on %s: units not back within %v of its expiry", h.ID, h.SKU, expiryBy)
				return
			}
			expired := waitRecord(t, db, h.ID, "expired", h.ExpiresAt.Add(-offset).Add(recordsBy))
			t.Logf("hold %s: units back %v after its expiry, expired in MySQL %v after it", h.ID,
				back.Sub(h.ExpiresAt).Round(time.Millisecond), expired.Add(offset).Sub(h.ExpiresAt).Round(time.Millisecond))
		}()
	}
	wg.Wait()
	res := load.Stop()
	t.Logf("load on the hot item: %v", res)
	if odd := errorsExcept(res.Errors, "transport"); len(odd) > 0 {
		t.Errorf("unexpected load errors: %v", odd)
	}
}

// waitBacklog waits until no change waits for MySQL.
func waitBacklog(t *testing.T, store *redisstore.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := store.Backlog(context.Background())
		if err == nil && b.Entries == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog %+v, %v after %v", b, err, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// redisLoad is the Redis server's CPU (share of a core) and commands per
// second over window, from INFO, and the commands that took most of its
// time.
func redisLoad(t *testing.T, rdb *goredis.Client, window time.Duration) (cpu, cmds float64, top string) {
	t.Helper()
	type reading struct {
		cpu, cmds float64
		usec      map[string]float64
	}
	read := func() reading {
		info, err := rdb.Info(context.Background(), "cpu", "stats", "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		r := reading{usec: map[string]float64{}}
		for line := range strings.Lines(info) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseFloat(v, 64)
			switch {
			case k == "used_cpu_sys" || k == "used_cpu_user":
				r.cpu += n
			case k == "total_commands_processed":
				r.cmds = n
			case strings.HasPrefix(k, "cmdstat_"):
				for _, f := range strings.Split(v, ",") {
					if u, ok := strings.CutPrefix(f, "usec="); ok {
						r.usec[strings.TrimPrefix(k, "cmdstat_")], _ = strconv.ParseFloat(u, 64)
					}
				}
			}
		}
		return r
	}
	r0 := read()
	start := time.Now()
	time.Sleep(window)
	r1 := read()
	secs := time.Since(start).Seconds()
	var names []string
	for name := range r1.usec {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Compare(r1.usec[b]-r0.usec[b], r1.usec[a]-r0.usec[a])
	})
	var parts []string
	for _, name := range names[:min(6, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1fms/s", name, (r1.usec[name]-r0.usec[name])/1000/secs))
	}
	return (r1.cpu - r0.cpu) / secs, (r1.cmds - r0.cmds) / secs, strings.Join(parts, ", ")
}

// redisClockOffset is Redis's clock minus this process's, which the holds'
// expiry is on.
func redisClockOffset(t *testing.T, rdb *goredis.Client) time.Duration {
	t.Helper()
	before := time.Now()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.Sub(before.Add(time.Since(before) / 2))
}

// waitAvailable polls an item's available units, read raw from its hash
// (an item read through the service would settle the hold itself), until
// they are want, and returns when by Redis's clock; zero if not by until
// (Redis's clock).
func waitAvailable(rdb *goredis.Client, prefix, sku string, want int64, until time.Time, offset time.Duration) time.Time {
	key := prefix + ":{" + sku + "}:item"
	for {
		now := time.Now().Add(offset)
		n, err := rdb.HGet(context.Background(), key, "available").Int64()
		if err == nil && n == want {
			return now
		}
		if now.After(until) {
			return time.Time{}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRecord polls MySQL until the reservation's row has status, and
// returns when; it fails the test if not by deadline (this process's clock).
func waitRecord(t *testing.T, db *sql.DB, id, status string, deadline time.Time) time.Time {
	for {
		var got string
		err := db.QueryRow("SELECT status FROM reservations WHERE id = ?", id).Scan(&got)
		if err == nil && got == status {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Errorf("reservation %s: MySQL has %q (%v), want %q by the deadline", id, got, err, status)
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
}
