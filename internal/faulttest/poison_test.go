//go:build fault

package faulttest

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/testenv"
)

// waitDrainedAround is waitDrained for a test that dead-letters on purpose:
// it polls until every outbox of prefix is empty with nothing pending and
// returns the dead-lettered entries it counted then. (waitDrained fails on
// any dead letter.)
func waitDrainedAround(t testing.TB, rdb *goredis.Client, prefix string, timeout time.Duration) int64 {
	t.Helper()
	begin := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		entries, pending, dead, err := backlog(ctx, rdb, prefix)
		cancel()
		if err == nil && entries == 0 && pending == 0 {
			t.Logf("outboxes of %s drained in %v (%d dead-lettered)", prefix, time.Since(begin).Round(time.Millisecond), dead)
			return dead
		}
		if time.Since(begin) > timeout {
			t.Fatalf("outboxes of %s not drained after %v: %d entries, %d pending, %d dead (last error: %v)",
				prefix, timeout, entries, pending, dead, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPoisonEntryDeadLettered appends an outbox entry no syncer can apply
// (a reservation change without a valid id or record) while buyers keep the
// syncer busy. It must be tried FLASHSALE_SYNC_MAX_TRIES times (first read,
// then reclaimed once idle SYNC_CLAIM_IDLE) and then parked in the item's
// dead-letter stream with the reason, without holding up the entries around
// it, and /readyz must report it.
func TestPoisonEntryDeadLettered(t *testing.T) {
	begin := time.Now()
	rdb, redisAddr, prefix := sharedRedis(t)
	dsn := testenv.SharedMySQL(t)
	inst := startFlashsale(t, redisAddr, dsn, map[string]string{
		"FLASHSALE_KEY_PREFIX":      prefix,
		"FLASHSALE_SYNC_MAX_TRIES":  "3",
		"FLASHSALE_SYNC_TIMEOUT":    "500ms",
		"FLASHSALE_SYNC_CLAIM_IDLE": "1500ms",
	})
	const sku = "poison"
	seed(t, inst.URL(), sku, 1_000_000, 1)
	outbox := outboxKeyOf(prefix, sku)
	deadKey := prefix + ":{" + sku + "}:dead"
	triesKey := prefix + ":{" + sku + "}:tries"

	ld := startLoad(t, inst.URL(), sku, 4)
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	poisonID, err := rdb.XAdd(ctx, &goredis.XAddArgs{
		Stream: outbox,
		Values: []any{"k", "res", "id", "x", "rec", "y"},
	}).Result()
	if err != nil {
		t.Fatalf("XADD poison to %s: %v", outbox, err)
	}
	addedAt := time.Now()

	// Three tries: about 0s, >= 1.5s and >= 3s after it is added; the
	// bound is generous for a loaded machine.
	var parked []goredis.XMessage
	deadline := addedAt.Add(20 * time.Second)
	for {
		parked, err = rdb.XRange(ctx, deadKey, "-", "+").Result()
		if err == nil && len(parked) > 0 {
			break
		}
		if time.Now().After(deadline) {
			tries, _ := rdb.HGet(ctx, triesKey, poisonID).Result()
			t.Fatalf("poison entry %s not dead-lettered after 20s (tries so far %q, err %v)", poisonID, tries, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	parkedAfter := time.Since(addedAt)
	t.Logf("poison entry %s dead-lettered %v after it was added", poisonID, parkedAfter.Round(time.Millisecond))
	if parkedAfter < 2*time.Second {
		// Tries 2 and 3 each wait for the entry to idle 1.5s.
		t.Errorf("poison parked after %v: fewer than 3 tries?", parkedAfter)
	}

	time.Sleep(500 * time.Millisecond) // the load goes on past the parking
	res := ld.Stop()
	t.Logf("load: %v", res)
	if len(res.Errors) > 0 {
		t.Errorf("the load saw errors: %v, e.g. %v", res.Errors, ld.ErrorExamples())
	}
	if dead := waitDrainedAround(t, rdb, prefix, 30*time.Second); dead != 1 {
		t.Errorf("%d dead-lettered entries under %s, want exactly the poison", dead, prefix)
	}

	parked, err = rdb.XRange(ctx, deadKey, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", deadKey, err)
	}
	if len(parked) != 1 {
		t.Fatalf("%s holds %d entries, want 1: %v", deadKey, len(parked), parked)
	}
	v := parked[0].Values
	if v["entry"] != poisonID {
		t.Errorf("dead letter field entry = %v, want the poison's id %s", v["entry"], poisonID)
	}
	if reason, _ := v["reason"].(string); reason == "" {
		t.Errorf("dead letter has no reason: %v", v)
	} else {
		t.Logf("dead letter reason: %s", reason)
	}
	if v["k"] != "res" || v["id"] != "x" || v["rec"] != "y" {
		t.Errorf("dead letter does not carry the original fields k=res id=x rec=y: %v", v)
	}
	if n, err := rdb.XLen(ctx, outbox).Result(); err != nil || n != 0 {
		t.Errorf("outbox %s: XLEN %d, %v after the drain", outbox, n, err)
	}
	if n, err := rdb.HLen(ctx, triesKey).Result(); err != nil || n != 0 {
		t.Errorf("tries hash %s keeps %d entries (%v); parking should clear the count", triesKey, n, err)
	}
	if log := inst.Log(); !strings.Contains(log, "parked in the dead-letter stream") {
		t.Errorf("the service did not log the parking:\n%s", tail(log, 30))
	}

	// /readyz refreshes the backlog every second.
	var st syncStatus
	deadline = time.Now().Add(15 * time.Second)
	for {
		st, err = readyzSync(ctx, inst.URL())
		if err == nil && st.DeadLetters == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz sync.dead_letters = %d after 15s, want 1 (sync %+v, err %v)", st.DeadLetters, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("/readyz sync: %+v", st)

	checkConsistent(t, rdb, prefix, sku, dsn, res.Acked)
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}
