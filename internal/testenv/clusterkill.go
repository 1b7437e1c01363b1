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
// It returns the promoted replica's address, when the master died and when the
// replica first called itself a master. It needs a replica; with several,
// it returns whichever won the election.
func (c *RedisCluster) CrashMaster(t testing.TB, master string) (replica string, killed, promoted time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var replicas []string
	for _, r := range c.ReplicasOf(t, master) {
		replicas = append(replicas, r.addr)
	}
	i := slices.IndexFunc(c.nodes, func(r *Redis) bool { return r.addr == master })
	c.nodes[i].p.killT(t)
	killed = time.Now()
	for {
		// With several replicas any of them may win the election.
		for _, replica := range replicas {
			if n, err := c.self(ctx, replica); err == nil && n.master {
				promoted = time.Now()
				t.Logf("testenv: %s promoted %v after %s was killed", replica, promoted.Sub(killed).Round(time.Millisecond), master)
				return replica, killed, promoted
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: none of %v was promoted within %v of killing %s\n%s", replicas, startTimeout, master, logTail(c.logOf(replicas[0])))
		case <-time.After(pollInterval):
		}
	}
}
