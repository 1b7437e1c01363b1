//go:build fault

package faulttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/testenv"
)

// multiItem is one item the instances sell, with the buyers that load it.
type multiItem struct {
	sku     string
	stock   int64
	buckets int
	workers int
}

// multiItems gives the SKUs, in order, one item whose stock the buyers
// exceed within the first second, so its sold-out state is reached and
// left (through cancels) on every instance, and two that never sell out.
func multiItems(skus []string) []multiItem {
	return []multiItem{
		// The scarce one is split over three buckets: buyers on different
		// instances pull units between them as it sells out.
		{sku: skus[0], stock: 150, buckets: 3, workers: 4},
		{sku: skus[1], stock: 20_000, workers: 4},
		{sku: skus[2], stock: 1_000_000, workers: 4},
	}
}

// TestMultiInstance runs three `flashsale serve` processes against one
// Redis (a single server, or a cluster of three masters with an item on
// each) and one MySQL, buyers spread round-robin over them. One instance is
// stopped with SIGTERM under load and started again, then another is
// SIGKILLed while its syncer holds outbox entries it cannot commit. Exactly
// the stock of the scarce item must be sold, every acknowledged reservation
// must reach MySQL once, the survivors' syncers must claim what the killed
// one held, and more than one instance's syncer must have done the work.
func TestMultiInstance(t *testing.T) {
	cases := []struct {
		name string
		// redis starts the Redis the instances share and returns a client,
		// the environment that points flashsale at it and three SKUs.
		redis func(t *testing.T) (goredis.UniversalClient, map[string]string, []string)
	}{
		{name: "single", redis: func(t *testing.T) (goredis.UniversalClient, map[string]string, []string) {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			return r.Client(t), map[string]string{"FLASHSALE_REDIS_ADDR": r.Addr()},
				[]string{"mi-scarce", "mi-medium", "mi-deep"}
		}},
		{name: "cluster", redis: func(t *testing.T) (goredis.UniversalClient, map[string]string, []string) {
			rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
			return rc.Client(t), clusterEnv(rc, nil), rc.OnEachMaster(t, "mi")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rdb, env, skus := tc.redis(t)
			runMultiInstance(t, rdb, env, multiItems(skus))
		})
	}
}

// runMultiInstance runs the scenario of TestMultiInstance; redisEnv points
// a flashsale process at rdb's Redis.
func runMultiInstance(t *testing.T, rdb goredis.UniversalClient, redisEnv map[string]string, items []multiItem) {
	begin := time.Now()
	dsn := testenv.SharedMySQL(t)
	prefix := "ft-" + randomHex(t, 6)
	shared := maps.Clone(redisEnv)
	shared["FLASHSALE_KEY_PREFIX"] = prefix
	skus := make([]string, len(items))
	for i, it := range items {
		skus[i] = it.sku
	}

	a := startFlashsale(t, "", dsn, shared)
	// b reaches MySQL through a proxy, so that its syncer can be made to
	// hold entries it cannot commit when it is killed.
	proxy, proxied := proxiedDSN(t, dsn)
	b := startFlashsale(t, "", proxied, shared)
	c := startFlashsale(t, "", dsn, shared)
	for _, it := range items {
		seedBuckets(t, a.URL(), it.sku, it.stock, 1, max(it.buckets, 1))
	}
	t.Logf("three instances up and items %+v seeded in %v", items, time.Since(begin).Round(time.Millisecond))

	loads := make([]*load, len(items))
	spread := func(insts ...*instance) {
		urls := make([]string, len(insts))
		for i, in := range insts {
			urls[i] = in.URL()
		}
		for _, l := range loads {
			l.SetBases(urls...)
		}
	}
	for i, it := range items {
		loads[i] = startLoad(t, a.URL(), it.sku, it.workers)
	}
	spread(a, b, c)
	deep := loads[len(loads)-1] // never sells out: its acks show the service is selling
	time.Sleep(2 * time.Second)
	waitAcked(t, deep, 0, 10*time.Second)

	// synced records each process's own count of entries its syncer
	// committed, read just before it goes away or after the drain.
	synced := map[string]int64{}
	readSynced := func(name string, in *instance) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := readyzSync(ctx, in.URL())
		if err != nil {
			t.Fatalf("%s /readyz: %v", name, err)
		}
		synced[name] = st.Synced
	}

	// Transport errors are what a buyer sees of an instance going away;
	// they may come only while one is going (a request in flight to it,
	// or sent before the buyers move on), never while all run.
	transport := map[string]int{"all three up": totalErrors(loads)["transport"]}
	// settled counts the transport errors since the previous phase once
	// requests that picked a dead instance before the move have failed.
	settled := func(phase string, since int) int {
		time.Sleep(250 * time.Millisecond)
		n := totalErrors(loads)["transport"]
		transport[phase] = n - since
		return n
	}

	// SIGTERM a while buyers still reach it; they move on once it is gone.
	// Stop returns when the process has exited, which for a binary built
	// with -race is a second after its HTTP server closed (the race
	// runtime's exit delay): the buyers' transport errors of that second
	// are this phase's.
	readSynced("a (first run)", a)
	before, errsBefore := deep.AckedCount(), totalErrors(loads)
	stopAt := time.Now()
	a.Stop(t)
	stopTook := time.Since(stopAt)
	spread(b, c)
	mark := settled("a stopping", errsBefore["transport"])
	t.Logf("a stopped with SIGTERM in %v; errors so far %v -> %v", stopTook.Round(time.Millisecond),
		errsBefore, totalErrors(loads))
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, deep, before, 10*time.Second)

	a.Restart(t)
	spread(a, b, c)
	before = deep.AckedCount()
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, deep, before, 10*time.Second)

	// SIGKILL b while its syncer holds entries: with its MySQL gone it
	// keeps reading its share of the outboxes and can commit none of it.
	proxy.Down(t)
	bPid := b.Pid()
	bPending := waitPendingFor(t, rdb, prefix, skus, bPid, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a few more batches it cannot commit
	readSynced("b", b)
	before, errsBefore = deep.AckedCount(), totalErrors(loads)
	transport["a down, then back"] = errsBefore["transport"] - mark
	b.Kill(t)
	killedAt := time.Now()
	spread(a, c)
	mark = settled("b killed", errsBefore["transport"])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	atKill, err := pendingOf(ctx, rdb, prefix, skus, bPid)
	cancel()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS after the kill: %v", err)
	}
	if atKill == 0 {
		t.Fatalf("b was killed with no entry pending (%d were a moment before)", bPending)
	}
	t.Logf("b SIGKILLed with %d outbox entries pending for its syncer; errors %v -> %v", atKill, errsBefore, totalErrors(loads))
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, deep, before, 10*time.Second)

	results := make([]loadResult, len(loads))
	for i, l := range loads {
		results[i] = l.Stop()
	}
	loadEnd := time.Now()
	// Stop has resolved every cancel, so units only leave the scarce item
	// now; once a sold-out memory has lapsed, demand past the stock sells
	// exactly what the cancels gave back.
	time.Sleep(100 * time.Millisecond) // FLASHSALE_SOLD_OUT_MEMORY is 50ms
	scarce := items[0]
	bought := buyOut(t, []string{a.URL(), c.URL()}, scarce.sku)

	took := waitDrained(t, rdb, prefix, 30*time.Second)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	left, err := pendingOf(ctx, rdb, prefix, skus, bPid)
	cancel()
	if err != nil {
		t.Fatalf("XINFO CONSUMERS after the drain: %v", err)
	}
	if left != 0 {
		t.Errorf("the killed b still has %d entries pending after the drain", left)
	}
	t.Logf("drained %v after the load stopped, %v after b was killed with %d entries pending (claim idle 2s)",
		took.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond), atKill)
	readSynced("a (second run)", a)
	readSynced("c", c)

	var requests, acked int
	errs := map[string]int{}
	for i, it := range items {
		res := results[i]
		t.Logf("load %s (stock %d, %d workers): %v", it.sku, it.stock, it.workers, res)
		requests += res.Requests
		acked += len(res.Acked)
		for k, v := range res.Errors {
			errs[k] += v
		}
		allowed := []string{"transport"} // a stopping or killed instance's connections
		if it.sku == scarce.sku {
			allowed = append(allowed, "sold_out")
			if res.Errors["sold_out"] == 0 {
				t.Errorf("%s never sold out: the demand did not exceed the stock", it.sku)
			}
		}
		if odd := errorsExcept(res.Errors, allowed...); len(odd) > 0 {
			t.Errorf("%s: unexpected errors %v, e.g. %v", it.sku, odd, loads[i].ErrorExamples())
		}
		want := res.Acked
		if it.sku == scarce.sku {
			want = mergeAcked(res.Acked, bought)
		}
		checkConsistent(t, rdb, prefix, it.sku, dsn, want)
	}
	transport["a and c after the kill"] = errs["transport"] - mark
	t.Logf("all loads: %d requests, %d reservations acknowledged (+%d bought out after), errors %v; transport errors by phase %v",
		requests, acked, len(bought), errs, transport)
	for _, phase := range []string{"all three up", "a down, then back", "a and c after the kill"} {
		if transport[phase] > 0 {
			t.Errorf("%d transport errors while %s: only an instance going away may cause them", transport[phase], phase)
		}
	}

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	available, reserved, sold, ok := itemCounters(ctx, rdb, prefix, scarce.sku)
	cancel()
	if !ok || available != 0 || reserved+sold != scarce.stock {
		t.Errorf("%s: available %d, reserved %d + sold %d, want exactly the stock %d sold or held (item read: %v)",
			scarce.sku, available, reserved, sold, scarce.stock, ok)
	}

	// Each process counts only what its own syncer committed, so more than
	// one instance with a count means the consumer group spread the work.
	perInstance := map[string]int64{
		"a": synced["a (first run)"] + synced["a (second run)"],
		"b": synced["b"],
		"c": synced["c"],
	}
	working := 0
	for _, n := range perInstance {
		if n > 0 {
			working++
		}
	}
	t.Logf("entries synced per process: %v (per instance %v)", synced, perInstance)
	if working < 2 {
		t.Errorf("only %d instance's syncer committed entries (%v): the syncers did not share the work", working, synced)
	}
	t.Logf("total %v (load %v)", time.Since(begin).Round(time.Millisecond), loadEnd.Sub(begin).Round(time.Millisecond))
}

// totalErrors adds up the error counts of loads so far.
func totalErrors(loads []*load) map[string]int {
	out := map[string]int{}
	for _, l := range loads {
		for k, v := range l.ErrorCounts() {
			out[k] += v
		}
	}
	return out
}

// consumersPending returns every consumer of the sync group on the outboxes
// of skus with the entries delivered to it and not acknowledged, summed.
func consumersPending(ctx context.Context, rdb goredis.UniversalClient, prefix string, skus []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, sku := range skus {
		pend, err := pendingByConsumer(ctx, rdb, outboxKeyOf(prefix, sku))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sku, err)
		}
		for name, n := range pend {
			out[name] += n
		}
	}
	return out, nil
}

// pendingOf sums what consumersPending reports for the syncer of the
// process pid: app names each syncer's consumer <host>-<pid>-<random>, so
// that a restarted process never inherits a dead one's entries by name.
func pendingOf(ctx context.Context, rdb goredis.UniversalClient, prefix string, skus []string, pid int) (int64, error) {
	pend, err := consumersPending(ctx, rdb, prefix, skus)
	if err != nil {
		return 0, err
	}
	var n int64
	for name, p := range pend {
		parts := strings.Split(name, "-")
		if len(parts) >= 3 && parts[len(parts)-2] == strconv.Itoa(pid) {
			n += p
		}
	}
	return n, nil
}

// waitPendingFor waits until the syncer of the process pid holds entries
// delivered to it and not acknowledged, and returns how many.
func waitPendingFor(t *testing.T, rdb goredis.UniversalClient, prefix string, skus []string, pid int, timeout time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := pendingOf(ctx, rdb, prefix, skus, pid)
		cancel()
		if err == nil && n > 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("no entry pending for the syncer of pid %d after %v (last error: %v)", pid, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// buyOut reserves one unit at a time for new users, round-robin over urls,
// until sku is answered sold_out, and returns the reservations granted (all
// pending). Any other answer fails the test.
func buyOut(t *testing.T, urls []string, sku string) map[string]string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	user := "ftbuyout" + randomHex(t, 3) + "-"
	out := map[string]string{}
	for n := 0; n <= 10_000; n++ {
		url := urls[n%len(urls)] + "/v1/items/" + sku + "/reservations"
		body := fmt.Sprintf(`{"user_id":"%s%d","quantity":1}`, user, n)
		resp, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("buy out %s: %v", sku, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("buy out %s: %v", sku, err)
		}
		var res resJSON
		_ = json.Unmarshal(b, &res)
		switch {
		case resp.StatusCode == http.StatusCreated && res.ID != "":
			out[res.ID] = res.Status
		case resp.StatusCode == http.StatusConflict && res.Code == "sold_out":
			return out
		default:
			t.Fatalf("buy out %s: %s: %s", sku, resp.Status, b)
		}
	}
	t.Fatalf("buy out %s: not sold out after 10,000 reservations", sku)
	return nil
}
