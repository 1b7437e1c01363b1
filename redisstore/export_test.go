package redisstore

import (
	"context"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// Slot is slot, for the external tests that check where buckets land.
var Slot = slot

// SeedArgs are the seed script's arguments for spec under seedID, for the
// tests that run the script as a retry would.
func (s *Store) SeedArgs(spec reservation.ItemSpec, seedID string) []any {
	return s.seedArgs(spec, seedID)
}

// MarkDirty puts bucket in the dirty index, as a script's hint would, for
// the tests that append to an outbox by hand.
func (s *Store) MarkDirty(ctx context.Context, bucket string) error {
	return s.hint(ctx, nil, map[string]bool{bucket: true})
}

// ReleaseIndexes makes every entry of both indexes due now, as if the
// instances that took them had died and their leases run out.
func (s *Store) ReleaseIndexes(ctx context.Context) error {
	for n := range indexShards {
		for _, index := range []string{indexDue, indexDirty} {
			k := s.indexKeys(n, index)[0]
			members, err := s.client.ZRange(ctx, k, 0, -1).Result()
			if err != nil {
				return err
			}
			for _, m := range members {
				if err := s.client.ZAdd(ctx, k, goredis.Z{Score: 0, Member: m}).Err(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ClaimDue takes every due entry of the due index for lease and never
// settles them: an instance that died holding them.
func (s *Store) ClaimDue(ctx context.Context, lease time.Duration) ([]string, error) {
	var out []string
	for n := range indexShards {
		c, err := s.claim(ctx, n, indexDue, lease, sweepClaim)
		if err != nil {
			return nil, err
		}
		out = append(out, c.buckets...)
	}
	return out, nil
}

// IndexEntry is a bucket's score in an index ("due" or "dirty"), and
// whether it has one.
func (s *Store) IndexEntry(ctx context.Context, index, bucket string) (int64, bool, error) {
	score, err := s.client.ZScore(ctx, s.indexKeys(indexShard(bucket), index)[0], bucket).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, false, nil
	}
	return int64(score), err == nil, err
}

// DropIndexEntry removes a bucket's entry from an index: a hint lost with
// the instance that was to send it.
func (s *Store) DropIndexEntry(ctx context.Context, index, bucket string) error {
	return s.client.ZRem(ctx, s.indexKeys(indexShard(bucket), index)[0], bucket).Err()
}

// SettleIndex settles a claimed entry as a claimer would.
func (s *Store) SettleIndex(ctx context.Context, index, bucket, version string, next int64) error {
	return s.settle(ctx, index, []settlement{{bucket: bucket, version: version, next: next}})
}

// ClaimIndex claims one shard's due entries of an index, with versions.
func (s *Store) ClaimIndex(ctx context.Context, index, bucket string, lease time.Duration) (map[string]string, error) {
	c, err := s.claim(ctx, indexShard(bucket), index, lease, 1000)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for i, b := range c.buckets {
		out[b] = c.versions[i]
	}
	return out, nil
}

// SetClock replaces the limiter's clock, for tests that move it with
// miniredis's. Such a test drives the settler too (Settle, Flush): one in
// the background could run between the moves of the two clocks.
func (l *LocalLimiter) SetClock(now func() time.Time) {
	l.now = now
	l.manual = true
}

// Settle runs one round of the limiter's settler now, as its loop does
// every few milliseconds.
func (l *LocalLimiter) Settle(ctx context.Context) { l.settle(ctx, false) }

// ChargeOp is a budgetOp of charge.lua: requests admitted Age ago without
// asking, and leased requests given back.
type ChargeOp struct {
	Key    reservation.RateKey
	Charge int
	Age    time.Duration
	Refund int
}

// Charge settles ops as the limiter's settler does, and returns each
// budget's remaining and reset after it.
func (s *Store) Charge(ctx context.Context, ops []ChargeOp) ([]reservation.RateState, error) {
	bops := make([]budgetOp, len(ops))
	for i, op := range ops {
		bops[i] = budgetOp{key: op.Key, charge: op.Charge, age: op.Age, refund: op.Refund}
	}
	res, err := s.charge(ctx, bops)
	if err != nil {
		return nil, err
	}
	out := make([]reservation.RateState, len(ops))
	for i, st := range res {
		out[i] = reservation.RateState{Policy: ops[i].Key.Policy, Limit: ops[i].Key.Limit, Remaining: st.remaining, Reset: st.reset}
	}
	return out, nil
}
