package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// Overview reads every item of the catalogue for the sale console: the
// counters as Counters reads them (changing nothing, settling no hold) and
// the offer a watcher needs beside them, its name and sale window. One
// SMEMBERS and one HMGET per bucket, pipelined 500 items a round trip:
// the console's poller calls it once a second however many consoles watch.
// Items come back sorted by SKU; an item without a head hash is left out.
func (s *Store) Overview(ctx context.Context) ([]reservation.Item, error) {
	names, err := s.catalog(ctx)
	if err != nil {
		return nil, err
	}
	bySKU := map[string][]string{}
	for _, name := range names {
		sku := bucketSKU(name)
		bySKU[sku] = append(bySKU[sku], name)
	}
	skus := make([]string, 0, len(bySKU))
	for sku := range bySKU {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	out := make([]reservation.Item, 0, len(skus))
	const chunk = 500
	for lo := 0; lo < len(skus); lo += chunk {
		part := skus[lo:min(lo+chunk, len(skus))]
		pipe := s.client.Pipeline()
		cmds := make([][]*goredis.SliceCmd, len(part))
		for i, sku := range part {
			for _, name := range bySKU[sku] {
				// The first five fields are Counters' (counters() reads them);
				// the offer fields only matter on the head.
				cmds[i] = append(cmds[i], pipe.HMGet(ctx, s.key(name, "item"),
					"stock", "available", "reserved", "sold", "total", "name", "starts_ms", "ends_ms"))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return nil, fmt.Errorf("redisstore: overview: %w", translate(err))
		}
		for i, sku := range part {
			names := bySKU[sku]
			head := -1
			trimmed := make([]*goredis.SliceCmd, len(names))
			for j, cmd := range cmds[i] {
				vals := cmd.Val()
				if len(vals) != 8 {
					return nil, fmt.Errorf("redisstore: overview of %s: %d values, want 8", names[j], len(vals))
				}
				trimmed[j] = goredis.NewSliceResult(vals[:5], nil)
				if names[j] == sku {
					head = j
				}
			}
			it, ok, err := counters(sku, names, trimmed)
			if err != nil {
				return nil, err
			}
			if !ok || head < 0 {
				continue
			}
			vals := cmds[i][head].Val()
			it.Name, _ = vals[5].(string)
			if it.StartsAt, err = optionalMS(vals[6]); err != nil {
				return nil, fmt.Errorf("redisstore: overview of %s: starts_ms: %w", sku, err)
			}
			if it.EndsAt, err = optionalMS(vals[7]); err != nil {
				return nil, fmt.Errorf("redisstore: overview of %s: ends_ms: %w", sku, err)
			}
			it.Buckets = len(names)
			out = append(out, it)
		}
	}
	return out, nil
}

// optionalMS reads an HMGET value holding Unix milliseconds; absent is the
// zero time (no bound).
func optionalMS(v any) (time.Time, error) {
	str, ok := v.(string)
	if !ok || str == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(str, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms).UTC(), nil
}
