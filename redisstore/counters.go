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
	names, err := s.catalog(ctx)
	if err != nil {
		return nil, 0, err
	}
	// The catalogue names buckets; an item with several is one SKU.
	bySKU := map[string][]string{}
	for _, name := range names {
		sku := bucketSKU(name)
		bySKU[sku] = append(bySKU[sku], name)
	}
	skus := make([]string, 0, len(bySKU))
	for sku := range bySKU {
		skus = append(skus, sku)
	}
	total := len(skus)
	slices.Sort(skus)
	if limit > 0 && len(skus) > limit {
		skus = skus[:limit]
	}
	out := make([]reservation.Item, 0, len(skus))
	const chunk = 500 // items per round trip
	for lo := 0; lo < len(skus); lo += chunk {
		part := skus[lo:min(lo+chunk, len(skus))]
		pipe := s.client.Pipeline()
		cmds := make([][]*goredis.SliceCmd, len(part))
		for i, sku := range part {
			for _, name := range bySKU[sku] {
				cmds[i] = append(cmds[i], pipe.HMGet(ctx, s.key(name, "item"), "stock", "available", "reserved", "sold", "total"))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, 0, fmt.Errorf("redisstore: counters: %w", translate(err))
		}
		for i, sku := range part {
			it, ok, err := counters(sku, bySKU[sku], cmds[i])
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

// counters adds up HMGET's answers for an item's buckets. The head's total
// is the stock; units in transit between buckets count as available, as
// they do for readers of the item. A missing head (lost, or never created)
// leaves the item out.
func counters(sku string, names []string, cmds []*goredis.SliceCmd) (reservation.Item, bool, error) {
	it := reservation.Item{SKU: sku}
	var shares int64
	head := false
	for j, cmd := range cmds {
		vals := cmd.Val()
		if len(vals) != 5 {
			return reservation.Item{}, false, fmt.Errorf("redisstore: counters of %s: %d values, want 5", names[j], len(vals))
		}
		var n [5]int64
		present := true
		for k, v := range vals {
			str, ok := v.(string)
			if !ok {
				if k < 4 {
					present = false
				}
				continue
			}
			var err error
			if n[k], err = strconv.ParseInt(str, 10, 64); err != nil {
				return reservation.Item{}, false, fmt.Errorf("redisstore: counters of %s: field %d: %w", names[j], k, err)
			}
		}
		if !present {
			continue
		}
		shares += n[0]
		it.Available += n[1]
		it.Reserved += n[2]
		it.Sold += n[3]
		if names[j] == sku {
			head = true
			it.Stock = n[0]
			if _, ok := vals[4].(string); ok {
				it.Stock = n[4]
			}
		}
	}
	if !head {
		return reservation.Item{}, false, nil
	}
	it.Available += it.Stock - shares
	return it, true, nil
}
