//go:build fault

package faulttest

import (
	"context"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// maxGrantAfterPromotion is how long after the cluster promotes a dead
// master's replica the service may take to sell that master's items again.
const maxGrantAfterPromotion = 5 * time.Second

// TestClusterMasterCrashedUnderLoad kills (SIGKILL) the master that holds a
// busy item while buyers hammer it, and a neighbour item on another master.
// The cluster promotes the replica by itself after its node timeout (1 s
// here). Unlike a manual failover the old master answers nothing, not even
// MOVED: the service must find the new master from the cluster's slot map
// and sell the item again within maxGrantAfterPromotion of the promotion
// (it took 57 s while go-redis waited for its periodic reload of the map),
// and the item on a master that lived must not notice (its calls shared
// pipelines with the dead master's, which waited for it). Then the end check on both, accepting
// only holds lost with the master, which it counts: with
// FLASHSALE_REDIS_ACK_REPLICAS=0 (asynchronous replication) those
// acknowledged before the replica had them; with 1, none may be.
func TestClusterMasterCrashedUnderLoad(t *testing.T) {
	for _, ack := range []string{"0", "1"} {
		t.Run("ack "+ack, func(t *testing.T) { clusterCrash(t, ack) })
	}
}

func clusterCrash(t *testing.T, ack string) {
	replicas := 1
	if ack == "1" {
		replicas = 2 // after the failover one is left to acknowledge
	}
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{Replicas: replicas, NodeTimeout: time.Second})
	cc := rc.Client(t)
	dsn := testenv.SharedMySQL(t)
	fs := startFlashsale(t, "", dsn, clusterEnv(rc, map[string]string{"FLASHSALE_REDIS_ACK_REPLICAS": ack}))
	skus := rc.OnEachMaster(t, "crash")
	sku, neighbour := skus[0], skus[1]
	for _, s := range []string{sku, neighbour} {
		seed(t, fs.URL(), s, 1_000_000, 1)
	}
	slot, err := cc.ClusterKeySlot(context.Background(), "{"+sku+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	loads := startLoads(t, fs.URL(), []string{sku, neighbour}, 8)
	busy, other := loads[0], loads[1]
	time.Sleep(1500 * time.Millisecond)
	waitAcked(t, busy, 0, 10*time.Second)

	old := rc.MasterOf(t, int(slot))
	otherErrs := other.ErrorCounts()
	promoted, killedAt, promotedAt := rc.CrashMaster(t, old)
	var granted time.Time
	for deadline := promotedAt.Add(3 * maxGrantAfterPromotion); ; time.Sleep(20 * time.Millisecond) {
		var ok bool
		if granted, ok = busy.FirstGrantAfter(killedAt); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reservation of %s granted %v after %s took over from the killed %s; errors %v, e.g. %v",
				sku, time.Since(promotedAt).Round(time.Millisecond), promoted, old, busy.ErrorCounts(), busy.ErrorExamples())
		}
	}
	sinceKill, sincePromotion := granted.Sub(killedAt), granted.Sub(promotedAt)
	t.Logf("first grant on the killed master's shard %v after the kill, %v after the promotion (%v after the kill)",
		sinceKill.Round(time.Millisecond), sincePromotion.Round(time.Millisecond), promotedAt.Sub(killedAt).Round(time.Millisecond))
	if sincePromotion > maxGrantAfterPromotion {
		t.Errorf("sales of %s resumed %v after the promotion, want at most %v", sku, sincePromotion.Round(time.Millisecond), maxGrantAfterPromotion)
	}
	ackedAt := busy.AckedCount()
	time.Sleep(time.Second)
	waitAcked(t, busy, ackedAt, 10*time.Second)
	res := stopLoads(loads)
	t.Logf("load: %v", res)
	if odd := errorsExcept(res.Errors, "unavailable", "transport"); len(odd) > 0 {
		t.Errorf("unexpected errors: %v, e.g. %v", odd, errorExamples(loads))
	}
	// The item on a master that lived must not wait on the dead one: no
	// timeouts (a shared pipeline made them time out, 5-16 a run). A 503 it
	// may see: between the other masters flagging the dead one failed and
	// the promotion, a cluster that requires full slot coverage (the
	// default) answers CLUSTERDOWN on every master.
	if d := errorsExcept(diffCounts(other.ErrorCounts(), otherErrs), "unavailable"); len(d) > 0 {
		t.Errorf("the item on a master that lived saw errors: %v, e.g. %v", d, other.ErrorExamples())
	}

	// A client that learnt the slot map before the kill would wait for its
	// own periodic reload: the check asks a new one.
	after := rc.Client(t)
	waitDrained(t, after, fs.Prefix, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lost := 0
	for id := range ackedOf(res.Acked, sku) {
		n, err := after.HExists(ctx, fs.Prefix+":{"+sku+"}:res", id).Result()
		if err != nil {
			t.Fatalf("HEXISTS: %v", err)
		}
		if !n {
			lost++
		}
	}
	t.Logf("FLASHSALE_REDIS_ACK_REPLICAS=%s: acknowledged holds of %s lost with the killed master: %d of %d",
		ack, sku, lost, len(ackedOf(res.Acked, sku)))
	if ack == "1" && lost > 0 {
		t.Errorf("%d acknowledged holds lost in the failover, with every answer waiting for a replica", lost)
	}
	checkConsistent(t, after, fs.Prefix, neighbour, dsn, ackedOf(res.Acked, neighbour))
	checkConsistentWith(t, after, fs.Prefix, sku, dsn, ackedOf(res.Acked, sku), checkOptions{AllowLost: lost > 0})
}
