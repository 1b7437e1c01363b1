package redisstore

import (
	"context"

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
