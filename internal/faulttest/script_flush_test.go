//go:build fault

package faulttest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestScriptFlushUnderLoad empties Redis's script cache every 50ms while
// buyers reserve, confirm and cancel: what a failover to a replica or a
// Redis restart does to EVALSHA. Every script call must fall back to EVAL
// (go-redis's Script.Run and redisstore's runMany for pipelines, the
// syncer's ack and dead-lettering included), so not a single request may
// fail. On the shared Redis a flush only drops cached scripts, which every
// client reloads the same way.
func TestScriptFlushUnderLoad(t *testing.T) {
	rdb, redisAddr, prefix := sharedRedis(t)
	dsn := testenv.SharedMySQL(t)
	inst := startFlashsale(t, redisAddr, dsn, map[string]string{"FLASHSALE_KEY_PREFIX": prefix})
	const sku = "script-flush"
	seed(t, inst.URL(), sku, 1_000_000, 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var flushes, flushErrs atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
			if err := rdb.ScriptFlush(fctx).Err(); err != nil && ctx.Err() == nil {
				flushErrs.Add(1)
			} else if err == nil {
				flushes.Add(1)
			}
			fcancel()
		}
	}()

	ld := startLoad(t, inst.URL(), sku, 16)
	time.Sleep(4 * time.Second)
	res := ld.Stop()
	cancel()
	wg.Wait()
	t.Logf("load: %v; %d SCRIPT FLUSHes (%d failed)", res, flushes.Load(), flushErrs.Load())
	if flushes.Load() < 20 {
		t.Errorf("only %d SCRIPT FLUSHes ran in 4s (%d failed); the test exercised little", flushes.Load(), flushErrs.Load())
	}
	if len(res.Acked) == 0 {
		t.Fatalf("no reservation acknowledged: %v, e.g. %v", res.Errors, ld.ErrorExamples())
	}
	if len(res.Errors) > 0 {
		t.Errorf("requests failed while the script cache was flushed: %v, e.g. %v", res.Errors, ld.ErrorExamples())
	}

	waitDrained(t, rdb, prefix, 30*time.Second)
	checkConsistent(t, rdb, prefix, sku, dsn, res.Acked)
	if log := inst.Log(); strings.Contains(log, "NOSCRIPT") {
		t.Errorf("the service logged NOSCRIPT errors:\n%s", tail(grepLines(log, "NOSCRIPT"), 20))
	}
}

// grepLines keeps the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
