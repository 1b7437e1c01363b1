package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

// SweepDue settles the due holds of the buckets the due index says are due,
// sharing them with every other instance's sweeper through claims, then
// advances the deployment's safety-net scan of the catalogue by one step
// (if this instance holds the scan's lease). A sweep of an idle catalogue
// costs one small script per index shard, whatever its size.
func (s *Store) SweepDue(ctx context.Context, batch int) (int, error) {
	s.FlushHints(ctx)
	sw := &sweep{store: s, batch: batch, owed: map[string]int{}}
	// Shards in an order of this sweep's own, so that instances sweeping at
	// the same moment do not queue on the same one.
	shards, err := s.dueShards(ctx, indexDue)
	if err != nil {
		return 0, err
	}
	for _, shard := range shards {
		for {
			c, err := s.claim(ctx, shard, indexDue, s.sweepLease, sweepClaim)
			if err != nil {
				return sw.expired, err
			}
			if len(c.buckets) == 0 {
				break
			}
			done := make([]settlement, 0, len(c.buckets))
			for i, b := range c.buckets {
				done = append(done, settlement{bucket: b, version: c.versions[i], next: -1})
			}
			found, err := sw.expire(ctx, c.buckets)
			if err != nil {
				return sw.expired, err
			}
			for i := range done {
				f, ok := found[done[i].bucket]
				switch {
				case !ok:
					// Not reached (the sweep failed on the way): the lease runs out and it is due again.
					done[i].next = c.nowMS + s.sweepLease.Milliseconds()
				case f.gone:
					// Seeded into the catalogue but never created, or gone: nothing falls due.
				default:
					done[i].next = f.next
				}
			}
			if err := s.settle(ctx, indexDue, done); err != nil {
				return sw.expired, err
			}
			if len(c.buckets) < sweepClaim {
				break
			}
		}
	}
	if err := s.scanStep(ctx, sw); err != nil {
		return sw.expired, err
	}
	return sw.expired, sw.finish(ctx)
}

// sweep is one SweepDue's state: what it settled, and the work it found for
// after (stale transfers, owed counts).
type sweep struct {
	store   *Store
	batch   int
	expired int
	failed  error          // the first stale transfer or owed count that could not be finished
	owed    map[string]int // SKU -> buckets, of items a rebuilt bucket of which owes a count
}

// visited is what expire.lua left a bucket as.
type visited struct {
	gone bool  // no item
	next int64 // when it next needs expire.lua (Redis ms), -1 never
}

// expire runs expire.lua on each bucket, pipelined, again for those with
// more due holds than one call settles, and finishes stale transfers.
func (w *sweep) expire(ctx context.Context, buckets []string) (map[string]visited, error) {
	s := w.store
	found := make(map[string]visited, len(buckets))
	for round := 0; len(buckets) > 0 && round < 1000; round++ {
		calls := make([]call, len(buckets))
		for i, b := range buckets {
			calls[i] = call{keys: s.keys(b), args: []any{w.batch, s.retention.Milliseconds()}}
		}
		var again []string
		for i, res := range s.runMany(ctx, s.expire, calls) {
			rep, err := reply(res.val, res.err)
			if err != nil {
				return found, fmt.Errorf("redisstore: sweep %s: %w", buckets[i], err)
			}
			if rep.code() != "ok" {
				found[buckets[i]] = visited{gone: true, next: -1}
				continue
			}
			b, err := rep.expire(buckets[i])
			if err != nil {
				return found, err
			}
			w.expired += int(b.expired)
			next := b.nextMS
			if b.moreDue {
				again = append(again, buckets[i])
			}
			if b.transfersOut > 0 {
				// A transfer that cannot arrive (its bucket is lost until
				// recovery rebuilds it) is reported, but must not stop the
				// sweep of every other item.
				if err := s.finishTransfers(ctx, buckets[i], b.nowMS-transferStale); err != nil && w.failed == nil {
					w.failed = err
				}
				next = minDue(next, b.nowMS+transferStale)
			}
			if b.recount {
				// A rebuilt bucket whose count failed after the rebuild;
				// one count serves every bucket of the item.
				w.owed[bucketSKU(buckets[i])] = min(max(b.item.Buckets, 1), reservation.MaxBuckets)
				next = minDue(next, b.nowMS+1000)
			}
			found[buckets[i]] = visited{next: next}
		}
		buckets = again
	}
	return found, nil
}

// finish runs the counts the sweep found owed.
func (w *sweep) finish(ctx context.Context) error {
	for sku, n := range w.owed {
		if _, err := w.store.reconcile(ctx, newLayout(sku, n)); err != nil && w.failed == nil {
			w.failed = err
		}
	}
	return w.failed
}

// The safety-net scan's keys: where it is in the catalogue, and whether a
// whole pass has run since the indexes began (its lease is Lease's "scan").
func (s *Store) scanCursorKey() string { return s.prefix + ":scan:cursor" }
func (s *Store) scanDoneKey() string   { return s.prefix + ":scan:passed" }

// scanStep is the safety net under the indexes: one scan of the whole
// catalogue per deployment, advanced by whichever instance holds its lease,
// sweepScan buckets per sweep. Each bucket visited is settled and hinted
// again into both indexes, so an entry a hint lost (its instance killed
// between a bucket's script and the hint; a Redis that lost the indexes
// but not the items) comes back within one pass. Until a first pass has
// completed (a deployment that had no indexes, or a Redis that lost them)
// the holder runs the whole pass at once.
func (s *Store) scanStep(ctx context.Context, w *sweep) error {
	lease := 2 * s.sweepLease
	if held, err := s.Lease(ctx, "scan", lease); err != nil || !held {
		return err // another instance scans
	}
	passed, err := s.client.Exists(ctx, s.scanDoneKey()).Result()
	if err != nil {
		return fmt.Errorf("redisstore: scan: %w", translate(err))
	}
	cursor, err := s.client.Get(ctx, s.scanCursorKey()).Uint64()
	if err != nil && !errors.Is(err, goredis.Nil) {
		cursor = 0 // unreadable: start over
	}
	count := int64(s.sweepScan)
	if passed == 0 {
		count = 500
	}
	for {
		names, next, err := s.client.SScan(ctx, s.catalogKey(), cursor, "", count).Result()
		if err != nil {
			return fmt.Errorf("redisstore: scan: %w", translate(err))
		}
		if err := s.rehint(ctx, w, names); err != nil {
			return err
		}
		cursor = next
		if err := s.client.Set(ctx, s.scanCursorKey(), strconv.FormatUint(cursor, 10), 0).Err(); err != nil {
			return fmt.Errorf("redisstore: scan: %w", translate(err))
		}
		if cursor == 0 {
			if passed == 0 {
				if err := s.client.Set(ctx, s.scanDoneKey(), time.Now().UTC().Format(time.RFC3339), 0).Err(); err != nil {
					return fmt.Errorf("redisstore: scan: %w", translate(err))
				}
			}
			return nil
		}
		if passed != 0 {
			return nil
		}
		if held, err := s.Lease(ctx, "scan", lease); err != nil || !held {
			return err
		}
	}
}

// rehint settles the buckets and writes their due entries again, straight
// away; their dirty entries are hinted by expire.lua's own calls (noteCall
// notes every bucket it leaves with unsynced changes).
func (s *Store) rehint(ctx context.Context, w *sweep, buckets []string) error {
	if len(buckets) == 0 {
		return nil
	}
	found, err := w.expire(ctx, buckets)
	if err != nil {
		return err
	}
	due := map[string]int64{}
	for b, f := range found {
		if f.next >= 0 {
			due[b] = f.next
		}
	}
	if len(due) == 0 {
		return nil
	}
	return s.hint(ctx, due, nil)
}

// Lease takes or keeps the deployment-wide lease called name for ttl, and
// reports whether this store holds it: a task one instance of the
// deployment does at a time (the safety-net scan, the periodic audit). The
// holder keeps it by calling again within ttl; when it stops (it died), the
// lease runs out and the next caller takes it.
func (s *Store) Lease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	key := s.prefix + ":" + name + ":lease"
	got, err := s.client.SetNX(ctx, key, s.leaseToken, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: %s lease: %w", name, translate(err))
	}
	if got {
		return true, nil
	}
	rep, err := reply(leaseScript.Run(ctx, s.client, []string{key}, s.leaseToken, ttl.Milliseconds()).Result())
	if err != nil {
		return false, fmt.Errorf("redisstore: %s lease: %w", name, err)
	}
	return rep.code() == "renewed", nil
}

var leaseScript = goredis.NewScript(string(luascripts.Lease()))
