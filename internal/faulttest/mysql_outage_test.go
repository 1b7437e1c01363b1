//go:build fault

package faulttest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestMySQLUnreachable cuts flashsale off from MySQL for 30 s while buyers
// keep buying. Buyers only need Redis, so none may see a failure the outage
// caused; the outbox grows and /readyz shows it; once MySQL is back the
// backlog drains and the record equals Redis.
func TestMySQLUnreachable(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: false})
	rdb := redis.Client(t)
	dsn := testenv.SharedMySQL(t)
	proxy, proxied := proxiedDSN(t, dsn)
	fs := startFlashsale(t, redis.Addr(), proxied, nil)
	const sku = "outage-sku"
	seed(t, fs.URL(), sku, 1_000_000, 1) // far more than 16 buyers take in 35 s

	l := startLoad(t, fs.URL(), sku, 16)
	time.Sleep(2 * time.Second)
	waitAcked(t, l, 0, 10*time.Second)

	const outage = 30 * time.Second
	proxy.Down(t)
	downAt := time.Now()
	t.Logf("MySQL down with %d reservations acknowledged", l.AckedCount())

	// Watch /readyz through the outage: the backlog must show.
	var maxBacklog int64
	sawDBDown := false
	var lastErr error
	for time.Since(downAt) < outage {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := readyzSync(ctx, fs.URL())
		cancel()
		if err != nil {
			lastErr = err
		} else {
			maxBacklog = max(maxBacklog, st.Backlog)
			if !st.DatabaseOK {
				sawDBDown = true
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	ackedDuringOutage := l.AckedCount()
	proxy.Up(t)
	upAt := time.Now()
	t.Logf("MySQL up after %v: /readyz max backlog %d, database_ok=false seen: %v, %d reservations acknowledged",
		upAt.Sub(downAt).Round(time.Millisecond), maxBacklog, sawDBDown, ackedDuringOutage)
	if maxBacklog == 0 {
		t.Errorf("/readyz never showed a backlog during the outage (last error %v)", lastErr)
	}
	if !sawDBDown {
		t.Errorf("/readyz never showed database_ok=false during the outage")
	}

	time.Sleep(2 * time.Second)
	res := l.Stop()
	t.Logf("load: %v", res)
	// Buyers never touch MySQL: not one may fail.
	if bad := errorsExcept(res.Errors); len(bad) > 0 {
		t.Errorf("buyers saw errors while MySQL was unreachable: %v, e.g. %v", bad, l.ErrorExamples())
	}

	took := waitDrained(t, rdb, fs.Prefix, 30*time.Second)
	t.Logf("backlog drained %v after MySQL came back (%v after the load stopped)",
		time.Since(upAt).Round(time.Millisecond), took.Round(time.Millisecond))
	checkConsistent(t, rdb, fs.Prefix, sku, dsn, res.Acked)
}

// TestMySQLConnectionsResetMidBatch breaks flashsale's MySQL connections
// over and over for 5 s while buyers buy. The reset toxic is switched on and
// off every few tens of milliseconds, so that it lands on connections in
// the middle of the syncer's transactions: an INSERT or a COMMIT reaches the
// server and its reply is lost. The syncer must retry every such batch (a
// COMMIT that did happen is applied again, which must change nothing), and
// the record must end equal to Redis.
func TestMySQLConnectionsResetMidBatch(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: false})
	rdb := redis.Client(t)
	dsn := testenv.SharedMySQL(t)
	proxy, proxied := proxiedDSN(t, dsn)
	fs := startFlashsale(t, redis.Addr(), proxied, nil)
	const sku = "reset-sku"
	seed(t, fs.URL(), sku, 100000, 1)

	l := startLoad(t, fs.URL(), sku, 16)
	time.Sleep(time.Second)
	waitAcked(t, l, 0, 10*time.Second)

	begin := time.Now()
	pulses := 0
	for time.Since(begin) < 5*time.Second {
		proxy.ResetPeer(t, time.Duration(rand.IntN(30))*time.Millisecond)
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
		proxy.RemoveToxics(t)
		time.Sleep(time.Duration(20+rand.IntN(130)) * time.Millisecond)
		pulses++
	}
	proxy.RemoveToxics(t)
	t.Logf("%d reset pulses in %v", pulses, time.Since(begin).Round(time.Millisecond))

	time.Sleep(time.Second)
	res := l.Stop()
	t.Logf("load: %v", res)
	if bad := errorsExcept(res.Errors); len(bad) > 0 {
		t.Errorf("buyers saw errors while MySQL connections were reset: %v, e.g. %v", bad, l.ErrorExamples())
	}

	took := waitDrained(t, rdb, fs.Prefix, 30*time.Second)
	t.Logf("drained %v after the load stopped", took.Round(time.Millisecond))

	// The resets must really have cut batches: the syncer saw failed writes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := readyzSync(ctx, fs.URL())
	cancel()
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	failures := syncFailures(fs.Log())
	t.Logf("syncer: synced=%d retries=%d; failed-write errors in the log: %v", st.Synced, st.Retries, failures)
	if st.Retries == 0 {
		t.Errorf("the syncer never retried a batch: the resets did not cut any (log: %v)", failures)
	}
	checkConsistent(t, rdb, fs.Prefix, sku, dsn, res.Acked)
}

// syncFailures counts the syncer's "sync write failed" log lines by the
// tail of their error, which tells a cut INSERT from a cut COMMIT.
func syncFailures(log string) map[string]int {
	out := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "sync write failed") && !strings.Contains(line, "sync batch failed") {
			continue
		}
		var rec struct {
			Msg string `json:"msg"`
			Err string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			out["(unparsed)"]++
			continue
		}
		e := rec.Err
		if i := strings.LastIndex(e, ": "); i >= 0 {
			e = e[i+2:]
		}
		out[rec.Msg+": "+e]++
	}
	return out
}
