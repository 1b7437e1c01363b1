package redisstore

import (
	"context"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// shardCoalescers gives each master of a cluster a coalescer of its own.
// With one coalescer for the whole cluster a pipeline carries calls for
// every master and answers when its slowest node does: when a master dies,
// go-redis retries its part of each pipeline until its redirects run out
// (seconds), and the calls for the live masters in the same pipelines, and
// every pipeline slot, waited with them, so buyers of items on healthy
// masters timed out too (TestClusterMasterCrashedUnderLoad). Per master,
// only the dead master's items wait.
type shardCoalescers struct {
	cc   *goredis.ClusterClient
	base *coalescer // its settings are copied; it serves a call whose master is unknown

	mu     sync.Mutex
	byAddr map[string]*coalescer
}

func newShardCoalescers(cc *goredis.ClusterClient, base *coalescer) *shardCoalescers {
	return &shardCoalescers{cc: cc, base: base, byAddr: map[string]*coalescer{}}
}

// of returns the coalescer of the master that serves c's keys, as the
// client's slot map says now; a master that took over (a failover, a slot
// moved) gets one of its own on its first call.
func (s *shardCoalescers) of(ctx context.Context, c call) *coalescer {
	if len(c.keys) == 0 {
		return s.base
	}
	node, err := s.cc.MasterForKey(ctx, c.keys[0])
	if err != nil {
		return s.base
	}
	addr := node.Options().Addr
	s.mu.Lock()
	defer s.mu.Unlock()
	co, ok := s.byAddr[addr]
	if !ok {
		co = s.base.sibling()
		s.byAddr[addr] = co
	}
	return co
}

// sibling is a new, idle coalescer with c's client and settings.
func (c *coalescer) sibling() *coalescer {
	s := newCoalescer(c.client, c.slots, c.maxBatch)
	s.ack = c.ack
	return s
}
