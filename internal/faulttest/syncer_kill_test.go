//go:build fault

package faulttest

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
)

// sharedRedis returns a client to the shared Redis, its address and a key
// prefix for a flashsale instance of the test's own (pass it to
// startFlashsale as FLASHSALE_KEY_PREFIX). Every key under the prefix is
// deleted when the test ends; the cleanup is registered before the instance
// starts, so it runs after the instance was killed and nothing writes again.
func sharedRedis(t testing.TB) (*goredis.Client, string, string) {
	t.Helper()
	rdb, _ := redistest.Client(t) // skips (fails under CI) without a shared Redis
	prefix := "ft-" + randomHex(t, 6)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The prefix is "ft-" and hex: no glob characters.
		iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("delete keys %s:*: %v", prefix, err)
			return
		}
		for lo := 0; lo < len(keys); lo += 500 {
			if err := rdb.Unlink(ctx, keys[lo:min(lo+500, len(keys))]...).Err(); err != nil {
				t.Errorf("delete keys %s:*: %v", prefix, err)
				return
			}
		}
	})
	return rdb, rdb.Options().Addr, prefix
}

// itemKeyOf and outboxKeyOf are the keys redisstore gives an item.
func itemKeyOf(prefix, sku string) string   { return prefix + ":{" + sku + "}:item" }
func outboxKeyOf(prefix, sku string) string { return prefix + ":{" + sku + "}:outbox" }

// syncEnv is the environment of a `flashsale sync` process with the same
// fast settings startFlashsale gives `flashsale serve`.
func syncEnv(redisAddr, mysqlDSN, prefix string) map[string]string {
	return map[string]string{
		"FLASHSALE_REDIS_ADDR":      redisAddr,
		"FLASHSALE_MYSQL_DSN":       mysqlDSN,
		"FLASHSALE_KEY_PREFIX":      prefix,
		"FLASHSALE_SYNC_WAIT":       "20ms",
		"FLASHSALE_SYNC_TIMEOUT":    "1s",
		"FLASHSALE_SYNC_CLAIM_IDLE": "2s",
		"FLASHSALE_SYNC_SCAN":       "200ms",
		"FLASHSALE_LOG_LEVEL":       "info", // StartSyncer waits for the info line "flashsale syncing"
	}
}

// pendingByConsumer returns XINFO CONSUMERS of the sync group on stream:
// consumer name -> entries delivered to it and not acknowledged.
func pendingByConsumer(ctx context.Context, rdb goredis.UniversalClient, stream string) (map[string]int64, error) {
	cs, err := rdb.XInfoConsumers(ctx, stream, syncGroup).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(cs))
	for _, c := range cs {
		out[c.Name] = c.Pending
	}
	return out, nil
}

// TestSyncerKilledWithPendingEntries runs the syncer as its own process
// (`flashsale sync`) beside a `flashsale serve` that syncs nothing. The first
// syncer reaches MySQL through a proxy that goes down once it is running: it
// keeps reading outbox entries into its pending list and cannot commit them.
// It is SIGKILLed with entries pending; a second syncer, with a working
// DSN, must claim them once they have idled SYNC_CLAIM_IDLE and drain the
// outbox, and both stores must agree on every acknowledged reservation.
func TestSyncerKilledWithPendingEntries(t *testing.T) {
	begin := time.Now()
	rdb, redisAddr, prefix := sharedRedis(t)
	dsn := testenv.SharedMySQL(t)
	bin := testenv.BuildFlashsale(t)
	inst := startFlashsale(t, redisAddr, dsn, map[string]string{
		"FLASHSALE_KEY_PREFIX": prefix,
		"FLASHSALE_SYNC":       "false", // no in-process syncer
	})
	const sku = "syncer-kill"
	seed(t, inst.URL(), sku, 1_000_000, 1)
	outbox := outboxKeyOf(prefix, sku)

	ld := startLoad(t, inst.URL(), sku, 8)
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	filled, err := rdb.XLen(ctx, outbox).Result()
	if err != nil || filled == 0 {
		t.Fatalf("outbox %s after 2s of load: XLEN %d, %v; load errors %v", outbox, filled, err, ld.ErrorCounts())
	}
	t.Logf("outbox filled with %d entries while nothing synced", filled)

	// The sync command opens MySQL (ping and migration) before it reads a
	// thing, so the proxy goes down only once it runs. The load goes on,
	// so the entries it reads from then on can only pile up as pending.
	proxy, proxied := proxiedDSN(t, dsn)
	sync1 := testenv.StartSyncer(t, bin, syncEnv(redisAddr, proxied, prefix)) // MySQL through a proxy
	proxy.Down(t)
	sync1.WaitLog(t, "database unreachable", 20*time.Second)

	var dead string
	var deadPending int64
	deadline := time.Now().Add(20 * time.Second)
	for {
		pend, err := pendingByConsumer(ctx, rdb, outbox)
		if err == nil && len(pend) > 1 {
			t.Fatalf("consumers %v: only sync-1 should have read the outbox", pend)
		}
		for name, n := range pend {
			dead, deadPending = name, n
		}
		if deadPending > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no entry pending for sync-1 after 20s (consumers %v, err %v)\n%s", pend, err, tail(sync1.Log(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let it take a few more batches it cannot commit.
	time.Sleep(500 * time.Millisecond)
	sync1.Kill(t)
	res := ld.Stop()
	t.Logf("load: %v", res)
	if odd := errorsExcept(res.Errors, "sold_out"); len(odd) > 0 {
		t.Errorf("the load saw errors although only the syncer failed: %v, e.g. %v", odd, ld.ErrorExamples())
	}
	pend, err := pendingByConsumer(ctx, rdb, outbox)
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s: %v", outbox, err)
	}
	deadPending = pend[dead]
	backlogAtKill, _ := rdb.XLen(ctx, outbox).Result()
	if deadPending == 0 {
		t.Fatalf("sync-1 (%s) was killed with nothing pending; consumers %v", dead, pend)
	}
	t.Logf("sync-1 %s SIGKILLed with %d entries pending for it, %d in the outbox", dead, deadPending, backlogAtKill)

	killedAt := time.Now()
	sync2 := testenv.StartSyncer(t, bin, syncEnv(redisAddr, dsn, prefix))
	took := waitDrained(t, rdb, prefix, 30*time.Second)
	t.Logf("sync-2 drained the outbox %v after sync-1 was killed (drain wait %v)",
		time.Since(killedAt).Round(time.Millisecond), took.Round(time.Millisecond))

	pend, err = pendingByConsumer(ctx, rdb, outbox)
	if err != nil {
		t.Fatalf("XINFO CONSUMERS %s: %v", outbox, err)
	}
	if pend[dead] != 0 {
		t.Errorf("dead consumer %s still has %d entries pending after the drain", dead, pend[dead])
	}
	checkConsistent(t, rdb, prefix, sku, dsn, res.Acked)
	if !sync2.Running() {
		t.Errorf("sync-2 exited:\n%s", tail(sync2.Log(), 30))
	}
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}
