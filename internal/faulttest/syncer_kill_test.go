package faulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
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

// syncProc is a `flashsale sync` process. testenv.StartService cannot start
// one: it waits for /healthz, and the sync command serves no HTTP.
type syncProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // written before done is closed
}

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
		"FLASHSALE_LOG_LEVEL":       "info", // startSync waits for the info line "flashsale syncing"
	}
}

// startSync runs `bin sync` with the test's environment minus every
// FLASHSALE_* variable plus env (as StartService does) and waits until it
// logs that it is syncing, i.e. it has opened Redis and MySQL. It is killed
// when the test ends, and the test fails if it reported a data race.
func startSync(t testing.TB, bin, name string, env map[string]string) *syncProc {
	t.Helper()
	var childEnv []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLASHSALE_") {
			childEnv = append(childEnv, kv)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		childEnv = append(childEnv, k+"="+env[k])
	}
	dir := t.TempDir()
	p := &syncProc{name: name, logPath: filepath.Join(dir, "sync.log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer logFile.Close() // the child has its own copy
	p.cmd = exec.Command(bin, "sync")
	p.cmd.Env = childEnv
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = deathSignal()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start %s sync: %v", name, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		log := p.Log()
		if strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", name, log)
		} else if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(log, 40))
		}
	})
	p.waitLog(t, "flashsale syncing", 30*time.Second)
	return p
}

// deathSignal asks the kernel to SIGKILL the child if the test binary dies
// without running its cleanups (go test -timeout). Pdeathsig exists on Linux
// only; reflection keeps this compiling elsewhere.
func deathSignal() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
	return attr
}

// Log returns what the process wrote so far.
func (p *syncProc) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

func (p *syncProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog polls the log until it contains substr.
func (p *syncProc) waitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Log(), substr) {
		if p.exited() {
			t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, substr, tail(p.Log(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %v:\n%s", p.name, substr, timeout, tail(p.Log(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits (bounded) for the process to exit; it
// reports whether it exited.
func (p *syncProc) kill() bool {
	if !p.exited() {
		_ = p.cmd.Process.Kill() // SIGKILL
	}
	select {
	case <-p.done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// Kill is a crash: SIGKILL, no chance to finish a batch or acknowledge.
func (p *syncProc) Kill(t testing.TB) {
	t.Helper()
	if !p.kill() {
		t.Fatalf("%s (pid %d) did not exit within 10s of SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// pendingByConsumer returns XINFO CONSUMERS of the sync group on stream:
// consumer name -> entries delivered to it and not acknowledged.
func pendingByConsumer(ctx context.Context, rdb *goredis.Client, stream string) (map[string]int64, error) {
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
	sync1 := startSync(t, bin, "sync-1 (MySQL through a proxy)", syncEnv(redisAddr, proxied, prefix))
	proxy.Down(t)
	sync1.waitLog(t, "database unreachable", 20*time.Second)

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
	sync2 := startSync(t, bin, "sync-2", syncEnv(redisAddr, dsn, prefix))
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
	if sync2.exited() {
		t.Errorf("sync-2 exited (%v):\n%s", sync2.err, tail(sync2.Log(), 30))
	}
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}
