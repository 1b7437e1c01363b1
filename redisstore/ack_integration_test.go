//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// ackTimeout is the tests' FLASHSALE_REDIS_ACK_TIMEOUT: long enough that a
// replica that is up confirms within it on a loaded CI machine (100 ms did
// not always), short enough for the refusals the tests wait out.
const ackTimeout = 500 * time.Millisecond

// TestReplicatedAck: with WithReplicatedAck(1, ...) a change is answered
// once the replica has it. With the replica gone, the change still runs on
// the primary but is answered ErrUnavailable (it might not survive a
// failover); the buyer's retry with the same Idempotency-Key takes nothing
// more, and once the replica is back it answers the same hold.
func TestReplicatedAck(t *testing.T) {
	ctx := context.Background()
	for _, pipelines := range []int{0, 4} { // on its own connection, and through the coalescer
		primary, replicas := testenv.StartReplicated(t, 1)
		replica := replicas[0]
		rdb := primary.Client(t)
		st, err := redisstore.New(ctx, rdb, "ack", redisstore.WithPipelines(pipelines, redisstore.DefaultPipelineBatch),
			redisstore.WithReplicatedAck(1, ackTimeout))
		if err != nil {
			t.Fatal(err)
		}
		s := &testStore{Store: st, rdb: rdb, prefix: "ack"}
		mustSeed(t, s, itemSpec("mug", 10, 2))
		first := mustReserve(t, s, "mug", "alice", 1)

		replica.Kill(t)
		req := request(t, "mug", "bob", 1, "order-1")
		began := time.Now()
		if _, _, err := s.Reserve(ctx, req); !errors.Is(err, reservation.ErrUnavailable) {
			t.Fatalf("pipelines %d: reserve with the replica down: %v, want ErrUnavailable", pipelines, err)
		}
		if waited := time.Since(began); waited < ackTimeout {
			t.Errorf("pipelines %d: refused after %v, before the ack timeout", pipelines, waited)
		}
		if _, err := s.Confirm(ctx, first.ID); !errors.Is(err, reservation.ErrUnavailable) {
			t.Errorf("pipelines %d: confirm with the replica down: %v, want ErrUnavailable", pipelines, err)
		}
		if _, err := s.Reservation(ctx, first.ID); err != nil {
			t.Errorf("pipelines %d: a read waits for no replica: %v", pipelines, err)
		}
		// The retry, as a buyer sends it: same key, a fresh request id.
		retry := request(t, "mug", "bob", 1, "order-1")
		if _, _, err := s.Reserve(ctx, retry); !errors.Is(err, reservation.ErrUnavailable) {
			t.Fatalf("pipelines %d: retry with the replica down: %v, want ErrUnavailable", pipelines, err)
		}

		replica.Restart(t)
		replica.WaitInSync(t)
		r, replayed, err := s.Reserve(ctx, request(t, "mug", "bob", 1, "order-1"))
		if err != nil || !replayed {
			t.Fatalf("pipelines %d: retry once replicated: %+v replayed=%v err=%v, want the hold replayed", pipelines, r, replayed, err)
		}
		if c := rawCounters(t, s, "mug"); c.Reserved != 1 || c.Sold != 1 {
			t.Errorf("pipelines %d: counters %+v: want bob's one hold (taken once) and alice's sale", pipelines, c)
		}
	}
}

// TestReplicatedAckOnCluster: on a Redis Cluster each master's changes wait
// for that master's replicas (a WAIT per shard, on the master's
// connection). With one master's replica down, a change of an item on that
// master is answered ErrUnavailable while an item on another master sells
// as usual; the retry with the same Idempotency-Key answers the same hold
// once the replica is back.
func TestReplicatedAckOnCluster(t *testing.T) {
	ctx := context.Background()
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{Replicas: 1})
	cc := rc.Client(t)
	skus := rc.OnEachMaster(t, "ack")
	down, up := skus[0], skus[1]
	for _, pipelines := range []int{0, 4} { // on its own connection, and through the coalescer
		prefix := fmt.Sprintf("ack%d", pipelines)
		st, err := redisstore.New(ctx, cc, prefix, redisstore.WithPipelines(pipelines, redisstore.DefaultPipelineBatch),
			redisstore.WithReplicatedAck(1, ackTimeout))
		if err != nil {
			t.Fatal(err)
		}
		for _, sku := range skus[:2] {
			if _, err := st.Seed(ctx, itemSpec(sku, 10, 2)); err != nil {
				t.Fatalf("pipelines %d: seed %s: %v", pipelines, sku, err)
			}
		}
		if _, _, err := st.Reserve(ctx, request(t, down, "alice", 1, "")); err != nil {
			t.Fatalf("pipelines %d: reserve with every replica up: %v", pipelines, err)
		}

		slot, err := cc.ClusterKeySlot(ctx, "{"+down+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		replica := rc.ReplicasOf(t, rc.MasterOf(t, int(slot)))[0]
		replica.Kill(t)
		if _, _, err := st.Reserve(ctx, request(t, down, "bob", 1, "order-1")); !errors.Is(err, reservation.ErrUnavailable) {
			t.Fatalf("pipelines %d: reserve with its master's replica down: %v, want ErrUnavailable", pipelines, err)
		}
		if _, _, err := st.Reserve(ctx, request(t, up, "bob", 1, "")); err != nil {
			t.Errorf("pipelines %d: reserve on another master, whose replica is up: %v", pipelines, err)
		}

		replica.Restart(t)
		replica.WaitInSync(t)
		r, replayed, err := st.Reserve(ctx, request(t, down, "bob", 1, "order-1"))
		if err != nil || !replayed {
			t.Fatalf("pipelines %d: retry once replicated: %+v replayed=%v err=%v, want the hold replayed", pipelines, r, replayed, err)
		}
		vals, err := cc.HMGet(ctx, prefix+":{"+down+"}:item", "reserved").Result()
		if err != nil || fmt.Sprint(vals[0]) != "2" {
			t.Errorf("pipelines %d: %s reserved %v (%v), want alice's and bob's one hold each", pipelines, down, vals, err)
		}

		// A master's connection follows no redirect: a call answered MOVED
		// goes again to the slot's new master, with that master's WAIT.
		upSlot, err := cc.ClusterKeySlot(ctx, "{"+up+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		from := rc.MasterOf(t, int(upSlot))
		rc.MoveSlot(t, int(upSlot), rc.MasterOf(t, int(slot)))
		if _, _, err := st.Reserve(ctx, request(t, up, "carol", 1, "")); err != nil {
			t.Errorf("pipelines %d: reserve just after its slot moved: %v", pipelines, err)
		}
		rc.MoveSlot(t, int(upSlot), from)
	}
}
