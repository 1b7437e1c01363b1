package testenv

import (
	"context"
	"slices"
	"testing"
	"time"
)

// CrashMaster kills the master at addr with SIGKILL (a crash: its
// connections break, its writes not yet on the replica are gone) and waits
// until the cluster has promoted its replica by itself, once the other
// masters have flagged it failed (cluster-node-timeout, see NodeTimeout).
// It returns the replica's address, when the master died and when the
// replica first called itself a master. It needs Replicas: 1.
func (c *RedisCluster) CrashMaster(t testing.TB, master string) (replica string, killed, promoted time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	replica, err := c.replicaOf(ctx, master)
	if err != nil {
		t.Fatalf("testenv: crash master: %v", err)
	}
	i := slices.IndexFunc(c.nodes, func(r *Redis) bool { return r.addr == master })
	c.nodes[i].p.killT(t)
	killed = time.Now()
	for {
		if n, err := c.self(ctx, replica); err == nil && n.master {
			promoted = time.Now()
			t.Logf("testenv: %s promoted %v after %s was killed", replica, promoted.Sub(killed).Round(time.Millisecond), master)
			return replica, killed, promoted
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: %s was not promoted within %v of killing %s\n%s", replica, startTimeout, master, logTail(c.logOf(replica)))
		case <-time.After(pollInterval):
		}
	}
}
