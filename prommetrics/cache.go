package prommetrics

import (
	"maps"
	"sync"
	"sync/atomic"
)

// maxMisses bounds the lookups that take the lock before a copy publishes
// what they missed.
const maxMisses = 1024

// readMostly maps label sets to resolved metric children for the request
// path: a hit is one atomic load and a typed map lookup, with no lock and no
// allocation. An RWMutex costs two contended atomic writes per read; a
// sync.Map hashes interface keys by reflection, several times slower than a
// typed map. New keys are rare (the label sets are bounded), so they take
// a mutex and are published by copying the map, as the old sync.Map did,
// once the misses since the last copy reach its size (so copying costs
// amortised O(1) per miss) or maxMisses (so a new hot key of a large
// catalogue leaves the locked path after at most that many requests).
type readMostly[K comparable, V any] struct {
	read atomic.Pointer[map[K]V] // published, never modified

	mu     sync.Mutex
	dirty  map[K]V // every entry, read's included
	misses int     // lookups that missed read since it was published
}

// get returns k's value. A new key is created once, under the lock, by
// create, which returns the key to keep: k's strings may point into a
// request buffer that is about to be reused.
func (c *readMostly[K, V]) get(k K, create func(K) (K, V)) V {
	if m := c.read.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	return c.slow(k, create)
}

func (c *readMostly[K, V]) slow(k K, create func(K) (K, V)) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.dirty[k]
	if !ok {
		if c.dirty == nil {
			c.dirty = make(map[K]V)
		}
		var owned K
		owned, v = create(k)
		c.dirty[owned] = v
	}
	c.misses++
	if published := c.read.Load(); published == nil || c.misses >= min(len(*published), maxMisses) {
		snapshot := maps.Clone(c.dirty)
		c.read.Store(&snapshot)
		c.misses = 0
	}
	return v
}
