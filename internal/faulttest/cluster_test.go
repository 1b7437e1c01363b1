//go:build fault

package faulttest

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/reservation"
)

// clusterEnv points a flashsale process at rc instead of a single Redis,
// with extra on top. FLASHSALE_REDIS_ADDR is emptied over whatever
// startFlashsale or syncEnv put there: the two are exclusive, and an empty
// variable is an unset one, which FLASHSALE_REDIS_CLUSTER_ADDRS makes valid.
func clusterEnv(rc *testenv.RedisCluster, extra map[string]string) map[string]string {
	env := map[string]string{"FLASHSALE_REDIS_ADDR": "", "FLASHSALE_REDIS_CLUSTER_ADDRS": strings.Join(rc.Addrs(), ",")}
	maps.Copy(env, extra)
	return env
}

// ackedOf keeps the reservations of sku (their ids parse to it, whichever
// bucket they are in).
func ackedOf(acked map[string]string, sku string) map[string]string {
	out := map[string]string{}
	for id, st := range acked {
		if got, ok := reservation.ParseID(id); ok && got == sku {
			out[id] = st
		}
	}
	return out
}

// checkEach runs the end check on every item.
func checkEach(t *testing.T, rdb goredis.UniversalClient, prefix string, skus []string, dsn string, acked map[string]string) {
	t.Helper()
	for _, sku := range skus {
		checkConsistent(t, rdb, prefix, sku, dsn, ackedOf(acked, sku))
	}
}

// startLoads starts a load of workers buyers on each item.
func startLoads(t *testing.T, baseURL string, skus []string, workers int) []*load {
	t.Helper()
	loads := make([]*load, len(skus))
	for i, sku := range skus {
		loads[i] = startLoad(t, baseURL, sku, workers)
	}
	return loads
}

// stopLoads stops every load and merges what they saw.
func stopLoads(loads []*load) loadResult {
	all := loadResult{Acked: map[string]string{}, Errors: map[string]int{}}
	for _, l := range loads {
		r := l.Stop()
		maps.Copy(all.Acked, r.Acked)
		for k, v := range r.Errors {
			all.Errors[k] += v
		}
		all.Requests += r.Requests
		all.Unresolved += r.Unresolved
	}
	return all
}

func errorExamples(loads []*load) map[string]string {
	out := map[string]string{}
	for _, l := range loads {
		maps.Copy(out, l.ErrorExamples())
	}
	return out
}

// TestClusterFlashCrowd: a flash crowd through `flashsale serve` on a
// Redis Cluster of three masters, one scarce item on each and one split over
// three buckets (one on each master). 500 buyers per
// item, 64 requests in flight, race for 100 units each with a limit of one:
// exactly 100 win on every item, every other buyer is told sold_out, a
// quarter of the winners confirm, and the end check passes on each item
// (the syncer read the outboxes of all three masters).
func TestClusterFlashCrowd(t *testing.T) {
	const stock, buyers, inFlight = 100, 500, 64
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, nil))
	skus := rc.OnEachMaster(t, "crowd")
	for _, sku := range skus {
		seed(t, fs.URL(), sku, stock, 1)
	}
	// And one hot item split over three buckets, one on each master.
	const split = "crowd-split"
	seedBuckets(t, fs.URL(), split, stock, 1, 3)
	skus = append(skus, split)

	l := startLoad(t, fs.URL(), "", 0) // no workers: its client and ledger only
	type job struct {
		sku  string
		user int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	won := map[string][]string{}
	var wg sync.WaitGroup
	begin := time.Now()
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				body := fmt.Sprintf(`{"user_id":"ft-crowd-%d","quantity":1}`, j.user)
				status, res, _ := l.do(l.hardCtx, http.MethodPost, "/v1/items/"+j.sku+"/reservations", body)
				if status == http.StatusCreated {
					l.record(res.ID, res.Status)
					mu.Lock()
					won[j.sku] = append(won[j.sku], res.ID)
					mu.Unlock()
				}
			}
		}()
	}
	for u := range buyers {
		for _, sku := range skus { // interleaved: every master busy at once
			jobs <- job{sku, u}
		}
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d reservations over %d items in %v", buyers*len(skus), len(skus), time.Since(begin).Round(time.Millisecond))
	for _, sku := range skus {
		if len(won[sku]) != stock {
			t.Errorf("item %s: %d buyers won, want exactly %d", sku, len(won[sku]), stock)
		}
		for _, id := range won[sku][:len(won[sku])/4] {
			l.transition(id, "confirm", l.hardCtx)
		}
	}
	res := l.Stop()
	t.Logf("crowd: %v", res)
	if odd := errorsExcept(res.Errors, "sold_out"); len(odd) > 0 {
		t.Errorf("unexpected answers: %v, e.g. %v", odd, l.ErrorExamples())
	}
	if want := len(skus) * (buyers - stock); res.Errors["sold_out"] != want {
		t.Errorf("%d sold_out answers, want %d", res.Errors["sold_out"], want)
	}
	waitDrained(t, cc, fs.Prefix, 30*time.Second)
	checkEach(t, cc, fs.Prefix, skus, dsn, res.Acked)
}

// TestClusterServiceKilledUnderLoad is TestServiceKilledUnderLoad on a
// cluster with an item on every master: the killed process leaves entries
// pending in outboxes on several nodes, and the restarted one must claim
// them on each.
func TestClusterServiceKilledUnderLoad(t *testing.T) {
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, nil))
	skus := rc.OnEachMaster(t, "kill")
	for _, sku := range skus {
		seed(t, fs.URL(), sku, 100_000, 1)
	}
	loads := startLoads(t, fs.URL(), skus, 5)
	time.Sleep(2 * time.Second)
	for _, l := range loads {
		waitAcked(t, l, 0, 10*time.Second)
	}

	fs.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var withPending []string
	for _, sku := range skus {
		pend, err := pendingByConsumer(ctx, cc, outboxKeyOf(fs.Prefix, sku))
		if err != nil {
			t.Fatalf("XINFO CONSUMERS of %s: %v", sku, err)
		}
		if n := sumValues(pend); n > 0 {
			withPending = append(withPending, sku+"="+strconv.FormatInt(n, 10))
		}
	}
	t.Logf("the killed process left entries pending in the outboxes of %v", withPending)
	fs.Restart(t)
	time.Sleep(2 * time.Second)
	res := stopLoads(loads)
	t.Logf("load: %v", res)
	if odd := errorsExcept(res.Errors, "transport"); len(odd) > 0 {
		t.Errorf("unexpected errors: %v, e.g. %v", odd, errorExamples(loads))
	}
	took := waitDrained(t, cc, fs.Prefix, 30*time.Second)
	t.Logf("drained %v after the load stopped", took.Round(time.Millisecond))
	checkEach(t, cc, fs.Prefix, skus, dsn, res.Acked)
}

func sumValues(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestClusterSyncerKilledWithPendingEntries runs `flashsale sync` apart
// from a `flashsale serve` that syncs nothing, on a cluster with an item on
// every master. The first syncer loses MySQL (through a proxy) and keeps
// reading entries it cannot commit from the outboxes of all three masters;
// it is SIGKILLed with entries pending on each. MySQL comes back and a
// second syncer, through the same proxy, must claim the dead one's entries
// on every node and drain them all.
func TestClusterSyncerKilledWithPendingEntries(t *testing.T) {
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	bin := testenv.BuildFlashsale(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, map[string]string{"FLASHSALE_SYNC": "false"}))
	skus := rc.OnEachMaster(t, "sync")
	for _, sku := range skus {
		seed(t, fs.URL(), sku, 1_000_000, 1)
	}
	loads := startLoads(t, fs.URL(), skus, 3)

	proxy, proxied := proxiedDSN(t, dsn)
	syncerEnv := syncEnv("", proxied, fs.Prefix)
	maps.Copy(syncerEnv, clusterEnv(rc, nil))
	sync1 := testenv.StartSyncer(t, bin, syncerEnv)
	proxy.Down(t)
	sync1.WaitLog(t, "database unreachable", 20*time.Second)

	// Wait until sync-1 holds entries on every master's outbox.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pendingOn := func() map[string]int64 {
		out := map[string]int64{}
		for _, sku := range skus {
			pend, err := pendingByConsumer(ctx, cc, outboxKeyOf(fs.Prefix, sku))
			if err != nil {
				continue // no group yet
			}
			out[sku] = sumValues(pend)
		}
		return out
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		pend := pendingOn()
		full := len(pend) == len(skus)
		for _, n := range pend {
			full = full && n > 0
		}
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync-1 does not hold entries on every outbox after 20s: %v\n%s", pend, tail(sync1.Log(), 30))
		}
	}
	sync1.Kill(t)
	res := stopLoads(loads)
	t.Logf("load: %v", res)
	if odd := errorsExcept(res.Errors, "sold_out"); len(odd) > 0 {
		t.Errorf("the load saw errors although only the syncer failed: %v, e.g. %v", odd, errorExamples(loads))
	}
	t.Logf("sync-1 SIGKILLed holding entries pending per item %v", pendingOn())

	proxy.Up(t)
	killedAt := time.Now()
	testenv.StartSyncer(t, bin, syncerEnv)
	waitDrained(t, cc, fs.Prefix, 30*time.Second)
	t.Logf("sync-2 drained every outbox %v after sync-1 was killed", time.Since(killedAt).Round(time.Millisecond))
	if left := pendingOn(); sumValues(left) != 0 {
		t.Errorf("entries still pending after the drain: %v", left)
	}
	checkEach(t, cc, fs.Prefix, skus, dsn, res.Acked)
}

// streamID orders stream entry ids "<ms>-<seq>".
func streamID(id string) [2]int64 {
	ms, seq, _ := strings.Cut(id, "-")
	a, _ := strconv.ParseInt(ms, 10, 64)
	b, _ := strconv.ParseInt(seq, 10, 64)
	return [2]int64{a, b}
}

func idBefore(a, b string) bool {
	x, y := streamID(a), streamID(b)
	return x[0] < y[0] || (x[0] == y[0] && x[1] < y[1])
}

// waitGroupPast waits until the sync group on stream has been delivered
// entries up to id at least: the syncer reads the stream where it lives now.
func waitGroupPast(t *testing.T, cc goredis.UniversalClient, stream, id string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		groups, err := cc.XInfoGroups(ctx, stream).Result()
		cancel()
		for _, g := range groups {
			if g.Name == syncGroup && !idBefore(g.LastDeliveredID, id) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sync group on %s has not reached entry %s after %v: groups %+v, %v", stream, id, timeout, groups, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterSlotMigrationUnderLoad moves a busy item's slot to another
// master while buyers hammer it, and back again, the second time held
// half-migrated for 2 x 200 ms. No request may fail, the syncer must go on
// reading the item's outbox on its new node (the consumer group moves with
// the stream), and the end check must pass.
func TestClusterSlotMigrationUnderLoad(t *testing.T) {
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, nil))
	masters := rc.Masters()
	skus := rc.OnEachMaster(t, "move")
	sku, neighbour := skus[0], skus[1] // the target master holds an item of its own
	for _, s := range []string{sku, neighbour} {
		seed(t, fs.URL(), s, 1_000_000, 1)
	}
	ctx := context.Background()
	slot64, err := cc.ClusterKeySlot(ctx, "{"+sku+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	slot := int(slot64)
	from, to := masters[0], masters[1]
	if got := rc.MasterOf(t, slot); got != from {
		t.Fatalf("slot %d of %s is on %s, want %s", slot, sku, got, from)
	}
	outbox := outboxKeyOf(fs.Prefix, sku)

	loads := startLoads(t, fs.URL(), []string{sku, neighbour}, 8)
	busy := loads[0]
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, busy, 0, 10*time.Second)

	redisErrsBefore := errorStats(t, cc)
	errsBefore := busy.ErrorCounts()
	begin := time.Now()
	rc.MoveSlot(t, slot, to)
	moveTook := time.Since(begin)
	errsMove := diffCounts(busy.ErrorCounts(), errsBefore)
	// The newest entry now lives on the new node: the syncer must get to it.
	last, err := cc.XRevRangeN(ctx, outbox, "+", "-", 1).Result()
	if err != nil || len(last) == 0 {
		t.Fatalf("XREVRANGE %s after the move: %v, %v", outbox, last, err)
	}
	waitGroupPast(t, cc, outbox, last[0].ID, 10*time.Second)
	t.Logf("slot %d moved %s -> %s in %v; the syncer read entry %s on the new node %v after the move",
		slot, from, to, moveTook.Round(time.Millisecond), last[0].ID, time.Since(begin).Round(time.Millisecond))

	time.Sleep(time.Second)
	errsBefore = busy.ErrorCounts()
	begin = time.Now()
	rc.MoveSlotPaused(t, slot, from, 200*time.Millisecond)
	backTook := time.Since(begin)
	errsBack := diffCounts(busy.ErrorCounts(), errsBefore)
	time.Sleep(time.Second)
	res := stopLoads(loads)
	t.Logf("load: %v", res)
	t.Logf("errors answered to buyers during the move: %v; during the paused move back (%v): %v", errsMove, backTook.Round(time.Millisecond), errsBack)
	// What the service met and retried: error replies counted by the masters.
	t.Logf("error replies of the masters since before the first move: %v", diffCounts(errorStats(t, cc), redisErrsBefore))
	if got := rc.MasterOf(t, slot); got != from {
		t.Errorf("slot %d on %s after moving back, want %s", slot, got, from)
	}
	if len(res.Errors) > 0 {
		t.Errorf("requests failed around the migrations: %v, e.g. %v", res.Errors, errorExamples(loads))
	}
	waitDrained(t, cc, fs.Prefix, 30*time.Second)
	checkEach(t, cc, fs.Prefix, []string{sku, neighbour}, dsn, res.Acked)
}

// errorStats sums INFO errorstats over the masters: error prefix -> replies.
func errorStats(t *testing.T, cc *goredis.ClusterClient) map[string]int {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int{}
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *goredis.Client) error {
		info, err := c.Info(ctx, "errorstats").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":count=")
			if !ok {
				continue
			}
			n, _ := strconv.Atoi(rest)
			mu.Lock()
			out[strings.TrimPrefix(name, "errorstat_")] += n
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("INFO errorstats: %v", err)
	}
	return out
}

// diffCounts is after minus before, without the zeros.
func diffCounts(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// TestClusterFailoverUnderLoad promotes the replica of the master that
// holds a busy item (a manual failover: nothing acknowledged is lost) while
// buyers hammer it. The service must keep selling from the new master and
// the end check must pass.
func TestClusterFailoverUnderLoad(t *testing.T) {
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{Replicas: 1})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, nil))
	sku := rc.OnEachMaster(t, "failover")[0]
	seed(t, fs.URL(), sku, 1_000_000, 1)
	slot, err := cc.ClusterKeySlot(context.Background(), "{"+sku+"}").Result()
	if err != nil {
		t.Fatal(err)
	}

	l := startLoad(t, fs.URL(), sku, 8)
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, l, 0, 10*time.Second)
	old := rc.MasterOf(t, int(slot))
	promoted := rc.Failover(t, old)
	ackedAt := l.AckedCount()
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, l, ackedAt, 10*time.Second)
	res := l.Stop()
	t.Logf("load: %v; %d acknowledged after %s took over from %s", res, len(res.Acked)-ackedAt, promoted, old)
	if len(res.Errors) > 0 {
		t.Errorf("requests failed around the failover: %v, e.g. %v", res.Errors, l.ErrorExamples())
	}
	waitDrained(t, cc, fs.Prefix, 30*time.Second)
	checkConsistent(t, cc, fs.Prefix, sku, dsn, res.Acked)
}
