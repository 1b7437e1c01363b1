//go:build integration

package testenv_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

func TestRedisCluster(t *testing.T) {
	ctx := context.Background()
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{})
	if n := len(rc.Addrs()); n != 3 {
		t.Fatalf("Addrs() = %d nodes, want 3", n)
	}
	masters := rc.Masters()
	if len(masters) != 3 {
		t.Fatalf("Masters() = %v, want 3", masters)
	}
	c := rc.Client(t)
	for i, name := range rc.OnEachMaster(t, "item") {
		slot, err := c.ClusterKeySlot(ctx, "{"+name+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := rc.MasterOf(t, int(slot)); got != masters[i] {
			t.Errorf("OnEachMaster[%d] = %s is on %s, want %s", i, name, got, masters[i])
		}
	}

	// Keys of one hash tag live together; pick a tag and fill its slot with
	// more keys than one MIGRATE batch takes.
	const tag = "{item-7}"
	slot64, err := c.ClusterKeySlot(ctx, tag).Result()
	if err != nil {
		t.Fatal(err)
	}
	slot := int(slot64)
	const keys = 250
	for i := range keys {
		if err := c.Set(ctx, fmt.Sprintf("%s:%d", tag, i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	from := rc.MasterOf(t, slot)
	if !slices.Contains(masters, from) {
		t.Fatalf("MasterOf(%d) = %s, not one of %v", slot, from, masters)
	}
	to := masters[(slices.Index(masters, from)+1)%len(masters)]

	rc.MoveSlot(t, slot, to)
	if got := rc.MasterOf(t, slot); got != to {
		t.Fatalf("after MoveSlot MasterOf(%d) = %s, want %s", slot, got, to)
	}
	// The client follows the MOVED answers to the new owner; every key went.
	for i := range keys {
		if got, err := c.Get(ctx, fmt.Sprintf("%s:%d", tag, i)).Int(); err != nil || got != i {
			t.Fatalf("after MoveSlot GET %s:%d = %d, %v", tag, i, got, err)
		}
	}
	// Halfway through a paused move, the keys are on the target and the
	// client reaches them there through ASK.
	during := make(chan error, 1)
	go func() {
		time.Sleep(400 * time.Millisecond)
		got, err := c.Get(ctx, tag+":0").Int()
		if err == nil && got != 0 {
			err = fmt.Errorf("got %d, want 0", got)
		}
		during <- err
	}()
	rc.MoveSlotPaused(t, slot, from, 300*time.Millisecond)
	if err := <-during; err != nil {
		t.Errorf("GET %s:0 during the paused move: %v", tag, err)
	}
	rc.MoveSlot(t, slot, from) // a slot already there stays
	if got := rc.MasterOf(t, slot); got != from {
		t.Fatalf("after moving back MasterOf(%d) = %s, want %s", slot, got, from)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != keys {
		t.Fatalf("DBSIZE over the cluster = %d, %v; want %d", n, err, keys)
	}
}

func TestRedisClusterWithReplicas(t *testing.T) {
	ctx := context.Background()
	rc := testenv.StartRedisCluster(t, testenv.ClusterOptions{Replicas: 1, AOF: true})
	if n := len(rc.Addrs()); n != 6 {
		t.Fatalf("Addrs() = %d nodes, want 6", n)
	}
	masters := rc.Masters()
	if len(masters) != 3 {
		t.Fatalf("Masters() = %v, want 3", masters)
	}
	c := rc.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The start waited for every replica to be in sync, so a manual
	// failover can be asked of any of them at once. The old master goes on
	// calling itself one until it hears of the failover; Masters leaves it
	// out already, its slots having a newer owner.
	slot, err := c.ClusterKeySlot(ctx, "k").Result()
	if err != nil {
		t.Fatal(err)
	}
	old := rc.MasterOf(t, int(slot))
	promoted := rc.Failover(t, old)
	if got := rc.MasterOf(t, int(slot)); got != promoted {
		t.Fatalf("after the failover slot %d is on %s, want %s", slot, got, promoted)
	}
	if m := rc.Masters(); len(m) != 3 || slices.Contains(m, old) {
		t.Fatalf("after the failover masters %v, want 3 without %s", m, old)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after failover GET k = %q, %v", got, err)
	}
}
