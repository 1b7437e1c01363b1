package redisstore

import (
	"context"
	"fmt"
	"slices"
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
//
// An item with buckets is rebuilt bucket by bucket, each from the
// reservations whose ids name it and holding just their units, the head
// last (buyers find the item through the head); buckets that survived are
// kept. Then an exact count (reconcile) gives the head what the buckets do
// not account for: the available units of every lost bucket.
func (s *Store) Restore(ctx context.Context, snap reservation.Snapshot) (bool, error) {
	it := snap.Item
	sku := it.SKU
	l := newLayout(sku, max(it.Buckets, 1))
	byBucket := map[string][]reservation.RecordedReservation{}
	var committed int64
	for _, r := range snap.Reservations {
		b := idBucket(r.ID)
		byBucket[b] = append(byBucket[b], r)
		if r.Status == reservation.StatusPending || r.Status == reservation.StatusConfirmed {
			committed += int64(r.Quantity)
		}
	}
	// The catalogue first, as in seeding: the sweeper and the syncer find
	// buckets through it.
	members := make([]any, l.n())
	for i, name := range l.names {
		members[i] = name
	}
	if err := s.client.SAdd(ctx, s.catalogKey(), members...).Err(); err != nil {
		return false, fmt.Errorf("redisstore: restore %s: %w", sku, translate(err))
	}
	if l.n() == 1 {
		return s.restoreBucket(ctx, sku, it, byBucket[sku], it.Stock, it.Stock)
	}
	restored := false
	for _, name := range append(slices.Clone(l.names[1:]), sku) {
		// A restock that Redis took but the record never saw can leave the
		// recorded stock below what is committed; the committed units win.
		total := int64(-1)
		if name == sku {
			total = max(it.Stock, committed)
		}
		r, err := s.restoreBucket(ctx, name, it, byBucket[name], -1, total)
		if err != nil {
			return false, err
		}
		restored = restored || r
	}
	// Always, not only when this call rebuilt something: a count that
	// failed before is owed until it succeeds.
	if _, err := s.reconcile(ctx, l); err != nil {
		return restored, err
	}
	return restored, nil
}

// restoreBucket rebuilds one bucket unless it exists, and reports whether
// it did. share < 0 gives the bucket exactly its committed units; total is
// the item's total on the head, < 0 on the other buckets.
func (s *Store) restoreBucket(ctx context.Context, bucket string, it reservation.ItemRecord,
	recs []reservation.RecordedReservation, share, total int64) (bool, error) {
	keys := s.keys(bucket)
	var reserved, sold int64
	for lo := 0; lo < len(recs) || lo == 0; lo += restoreChunk {
		part := recs[lo:min(lo+restoreChunk, len(recs))]
		args := make([]any, 0, 1+3*len(part))
		args = append(args, "records")
		for _, r := range part {
			args = append(args, r.ID, encodeRecord(r.Reservation), r.IdempotencyField)
		}
		rep, err := reply(s.restore.Run(ctx, s.client, keys, args...).Result())
		if err != nil {
			return false, fmt.Errorf("redisstore: restore %s: %w", bucket, err)
		}
		switch rep.code() {
		case "exists":
			return false, nil
		case "ok":
			n := rep.restoredRecords()
			reserved += n.reserved
			sold += n.sold
		default:
			return false, rep.unexpected("restore")
		}
	}
	if share < 0 {
		share = reserved + sold
	}
	totalArg := ""
	if total >= 0 {
		totalArg = strconv.FormatInt(total, 10)
	}
	rep, err := reply(s.restore.Run(ctx, s.client, keys, "item",
		share, it.PerUserLimit, it.Hold.Milliseconds(), optionalMillis(it.StartsAt), optionalMillis(it.EndsAt),
		it.Name, it.CreatedAt.UnixMilli(), it.UpdatedAt.UnixMilli(), it.Rev, reserved, sold,
		totalArg, max(it.Buckets, 1)).Result())
	if err != nil {
		return false, fmt.Errorf("redisstore: restore %s: %w", bucket, err)
	}
	switch rep.code() {
	case "restored":
		// Its holds and final reservations wait for the sweeper, which
		// learns of them here (the index was lost with them, or never had them).
		s.hints.noteDue(bucket, 0)
		return true, nil
	case "exists":
		return false, nil
	}
	return false, rep.unexpected("restore")
}

// Missing returns the skus whose item Redis does not hold whole: the head
// is gone, or one of the other buckets is (on a cluster a master can lose
// its data while the others keep theirs).
func (s *Store) Missing(ctx context.Context, skus []string) ([]string, error) {
	var missing []string
	for lo := 0; lo < len(skus); lo += restoreChunk {
		part := skus[lo:min(lo+restoreChunk, len(skus))]
		pipe := s.client.Pipeline()
		cmds := make([]*goredis.SliceCmd, len(part))
		for i, sku := range part {
			cmds[i] = pipe.HMGet(ctx, s.key(sku, "item"), headFields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redisstore: exists: %w", translate(err))
		}
		var split []*layout
		for i, sku := range part {
			switch exists, n := headOf(cmds[i].Val()); {
			case !exists:
				missing = append(missing, sku)
			case n > 1:
				split = append(split, newLayout(sku, n))
			}
		}
		lost, err := s.lostBuckets(ctx, split)
		if err != nil {
			return nil, err
		}
		missing = append(missing, lost...)
	}
	return missing, nil
}

// lostBuckets returns the SKUs of the items one of whose buckets other than
// the head is gone.
func (s *Store) lostBuckets(ctx context.Context, items []*layout) ([]string, error) {
	if len(items) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([][]*goredis.IntCmd, len(items))
	for i, l := range items {
		for _, name := range l.names[1:] {
			cmds[i] = append(cmds[i], pipe.Exists(ctx, s.key(name, "item")))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: exists: %w", translate(err))
	}
	var lost []string
	for i, l := range items {
		for _, c := range cmds[i] {
			if c.Val() == 0 {
				lost = append(lost, l.names[0])
				break
			}
		}
	}
	return lost, nil
}

// epochKey marks a Redis that holds the service's data. It is written once;
// a Redis without it has lost everything (or never had anything).
func (s *Store) epochKey() string { return s.prefix + ":epoch" }

// MarkEpoch writes the epoch marker unless it is there, and returns the
// marker as it now stands and whether it had to write it: fresh means this
// Redis is new or has lost its data, and every item the durable record holds
// must be checked. The marker only ever changes by being lost and written
// anew, so a caller that sees another value than before knows Redis lost
// its data in between.
func (s *Store) MarkEpoch(ctx context.Context, epoch int64) (current int64, fresh bool, err error) {
	pipe := s.client.Pipeline()
	set := pipe.SetNX(ctx, s.epochKey(), strconv.FormatInt(epoch, 10), 0)
	get := pipe.Get(ctx, s.epochKey())
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, false, fmt.Errorf("redisstore: epoch: %w", translate(err))
	}
	current, err = get.Int64()
	if err != nil {
		return 0, false, fmt.Errorf("redisstore: epoch: %w", err)
	}
	return current, set.Val(), nil
}

// Unsynced returns the changes in the outboxes of the item's buckets that
// the syncers have not acknowledged yet: what the record is missing. Entries
// that cannot be parsed are skipped (the syncer parks them).
func (s *Store) Unsynced(ctx context.Context, sku string, buckets int) ([]reservation.Change, error) {
	var out []reservation.Change
	for _, name := range newLayout(sku, max(buckets, 1)).names {
		msgs, err := s.client.XRange(ctx, s.key(name, "outbox"), "-", "+").Result()
		if err != nil {
			return nil, fmt.Errorf("redisstore: outbox of %s: %w", name, translate(err))
		}
		for _, m := range msgs {
			if e := parseEntry(name, m); e.Err == nil {
				out = append(out, e.Change)
			}
		}
	}
	return out, nil
}
