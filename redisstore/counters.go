package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// Counters reads the stock counters of the catalogue's items and changes
// nothing: unlike Item it settles no due holds, so a metrics scrape never
// writes. Holds past expiry therefore count as reserved until the sweeper
// returns them (within its interval).
//
// It returns at most limit items (limit <= 0: all), the first by SKU so
// the same ones come back on every call, with SKU, Stock, Available,
// Reserved and Sold set; and the size of the catalogue. Items in the
// catalogue without an item hash (lost, or never created) are left out.
func (s *Store) Counters(ctx context.Context, limit int) ([]reservation.Item, int, error) {
	skus, err := s.catalog(ctx)
	if err != nil {
		return nil, 0, err
	}
	total := len(skus)
	slices.Sort(skus)
	if limit > 0 && len(skus) > limit {
		skus = skus[:limit]
	}
	out := make([]reservation.Item, 0, len(skus))
	const chunk = 500 // HMGETs per round trip
	for lo := 0; lo < len(skus); lo += chunk {
		part := skus[lo:min(lo+chunk, len(skus))]
		pipe := s.client.Pipeline()
		cmds := make([]*goredis.SliceCmd, len(part))
		for i, sku := range part {
			cmds[i] = pipe.HMGet(ctx, s.key(sku, "item"), "stock", "available", "reserved", "sold")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, 0, fmt.Errorf("redisstore: counters: %w", translate(err))
		}
		for i, sku := range part {
			it, ok, err := counters(sku, cmds[i].Val())
			if err != nil {
				return nil, 0, err
			}
			if ok {
				out = append(out, it)
			}
		}
	}
	return out, total, nil
}

// counters parses HMGET's answer: nil values when the item hash is gone.
func counters(sku string, vals []any) (reservation.Item, bool, error) {
	var n [4]int64
	if len(vals) != len(n) {
		return reservation.Item{}, false, fmt.Errorf("redisstore: counters of %s: %d values, want %d", sku, len(vals), len(n))
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			return reservation.Item{}, false, nil
		}
		var err error
		if n[i], err = strconv.ParseInt(str, 10, 64); err != nil {
			return reservation.Item{}, false, fmt.Errorf("redisstore: counters of %s: field %d: %w", sku, i, err)
		}
	}
	return reservation.Item{SKU: sku, Stock: n[0], Available: n[1], Reserved: n[2], Sold: n[3]}, true, nil
}
