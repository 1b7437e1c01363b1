//go:build integration

package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

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
			redisstore.WithReplicatedAck(1, 100*time.Millisecond))
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
		if waited := time.Since(began); waited < 100*time.Millisecond {
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
