//go:build fault

package faulttest

import (
	"context"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// waitAcked polls until the load has more than n acknowledged reservations,
// failing the test after timeout.
func waitAcked(t *testing.T, l *load, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for l.AckedCount() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("load acknowledged %d reservations, want more than %d after %v; errors %v, e.g. %v",
				l.AckedCount(), n, timeout, l.ErrorCounts(), l.ErrorExamples())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServiceKilledUnderLoad SIGKILLs flashsale while buyers are reserving,
// confirming and cancelling, and restarts it on the same port. Whatever the
// dead process had written to Redis but not yet synced stays in the outbox,
// with entries pending for its consumer; the new process must claim them,
// and every buyer that was answered must find their reservation in both
// stores.
func TestServiceKilledUnderLoad(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: false})
	dsn := testenv.SharedMySQL(t)
	rdb := redis.Client(t)
	fs := startFlashsale(t, redis.Addr(), dsn, nil)
	const sku = "kill-sku"
	seed(t, fs.URL(), sku, 100000, 1)

	l := startLoad(t, fs.URL(), sku, 16)
	time.Sleep(3 * time.Second)
	waitAcked(t, l, 0, 10*time.Second)
	before := l.AckedCount()

	killedAt := time.Now()
	fs.Kill(t)
	// What the dead process left: unsynced entries, and entries its
	// syncer had read but not acknowledged, which only a claim recovers.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	entries, pending, _, err := backlog(ctx, rdb, fs.Prefix)
	cancel()
	if err != nil {
		t.Fatalf("backlog after the kill: %v", err)
	}
	t.Logf("the killed process left %d outbox entries, %d of them read by its syncer and unacknowledged", entries, pending)
	fs.Restart(t)
	t.Logf("killed and restarted in %v with %d reservations acknowledged", time.Since(killedAt).Round(time.Millisecond), before)
	l.SetBase(fs.URL()) // the same port: a no-op, kept to show the intent

	time.Sleep(3 * time.Second)
	waitAcked(t, l, before, 10*time.Second)
	res := l.Stop()
	t.Logf("load: %v", res)
	if after := len(res.Acked) - before; after <= 0 {
		t.Errorf("no reservation acknowledged after the restart")
	}
	// While the process is dead, requests fail in transport; nothing else
	// should fail with stock this large.
	if odd := errorsExcept(res.Errors, "transport"); len(odd) > 0 {
		t.Errorf("unexpected errors: %v, e.g. %v", odd, l.ErrorExamples())
	}

	// The dead consumer's pending entries are claimed after CLAIM_IDLE (2s).
	took := waitDrained(t, rdb, fs.Prefix, 30*time.Second)
	t.Logf("drained %v after the load stopped", took.Round(time.Millisecond))
	checkConsistent(t, rdb, fs.Prefix, sku, dsn, res.Acked)
}
