package redisstore

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// restoreChunk bounds one restore script call (each takes Redis's only
// thread for its run).
const restoreChunk = 500

// Restore rebuilds an item that Redis lost from the durable record's
// snapshot. It reports restored=false when the item exists (someone else
// restored it first, or it was never lost): live state is never overwritten.
func (s *Store) Restore(ctx context.Context, snap reservation.Snapshot) (bool, error) {
	sku := snap.Item.SKU
	keys := s.keys(sku)
	var reserved, sold int64
	for lo := 0; lo < len(snap.Reservations); lo += restoreChunk {
		part := snap.Reservations[lo:min(lo+restoreChunk, len(snap.Reservations))]
		args := make([]any, 0, 1+3*len(part))
		args = append(args, "records")
		for _, r := range part {
			args = append(args, r.ID, encodeRecord(r.Reservation), r.IdempotencyField)
		}
		rep, err := reply(s.restore.Run(ctx, s.client, keys, args...).Result())
		if err != nil {
			return false, fmt.Errorf("redisstore: restore %s: %w", sku, err)
		}
		switch rep.code() {
		case "exists":
			return false, nil
		case "ok":
			reserved += rep.int(2)
			sold += rep.int(3)
		default:
			return false, rep.unexpected("restore")
		}
	}
	it := snap.Item
	// The catalogue first, as in seeding: the sweeper and the syncer find
	// items through it.
	if err := s.client.SAdd(ctx, s.catalogKey(), sku).Err(); err != nil {
		return false, fmt.Errorf("redisstore: restore %s: %w", sku, translate(err))
	}
	rep, err := reply(s.restore.Run(ctx, s.client, keys, "item",
		it.Stock, it.PerUserLimit, it.Hold.Milliseconds(), optionalMillis(it.StartsAt), optionalMillis(it.EndsAt),
		it.Name, it.CreatedAt.UnixMilli(), it.UpdatedAt.UnixMilli(), it.Rev, reserved, sold).Result())
	if err != nil {
		return false, fmt.Errorf("redisstore: restore %s: %w", sku, err)
	}
	switch rep.code() {
	case "restored":
		return true, nil
	case "exists":
		return false, nil
	}
	return false, rep.unexpected("restore")
}

// Missing returns the skus whose item Redis does not hold.
func (s *Store) Missing(ctx context.Context, skus []string) ([]string, error) {
	var missing []string
	for lo := 0; lo < len(skus); lo += restoreChunk {
		part := skus[lo:min(lo+restoreChunk, len(skus))]
		pipe := s.client.Pipeline()
		cmds := make([]*goredis.IntCmd, len(part))
		for i, sku := range part {
			cmds[i] = pipe.Exists(ctx, s.key(sku, "item"))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redisstore: exists: %w", translate(err))
		}
		for i, sku := range part {
			if cmds[i].Val() == 0 {
				missing = append(missing, sku)
			}
		}
	}
	return missing, nil
}

// epochKey marks a Redis that holds the service's data. It is written once;
// a Redis without it has lost everything (or never had anything).
func (s *Store) epochKey() string { return s.prefix + ":epoch" }

// MarkEpoch writes the epoch marker unless it is there, and reports whether
// it had to: true means this Redis is new or has lost its data, and every
// item the durable record holds must be checked.
func (s *Store) MarkEpoch(ctx context.Context, epoch int64) (bool, error) {
	set, err := s.client.SetNX(ctx, s.epochKey(), strconv.FormatInt(epoch, 10), 0).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: epoch: %w", translate(err))
	}
	return set, nil
}

// Unsynced returns the changes in the item's outbox that the syncers have
// not acknowledged yet: what the record is missing. Entries that cannot be
// parsed are skipped (the syncer parks them).
func (s *Store) Unsynced(ctx context.Context, sku string) ([]reservation.Change, error) {
	msgs, err := s.client.XRange(ctx, s.key(sku, "outbox"), "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: outbox of %s: %w", sku, translate(err))
	}
	out := make([]reservation.Change, 0, len(msgs))
	for _, m := range msgs {
		if e := parseEntry(sku, m); e.Err == nil {
			out = append(out, e.Change)
		}
	}
	return out, nil
}
