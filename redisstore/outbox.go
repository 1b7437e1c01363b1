package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

// SyncGroup is the consumer group every syncer reads the outboxes through:
// one group, so each entry goes to one syncer, however many run.
const SyncGroup = "flashsale-sync"

var (
	ackScript   = goredis.NewScript(string(luascripts.Ack()))
	pruneScript = goredis.NewScript(string(luascripts.Prune()))
)

// OutboxOptions tune how an Outbox finds and shares work.
type OutboxOptions struct {
	// Consumer names this reader in the group; unique per process.
	Consumer string
	// ClaimIdle: an entry another consumer took and left unacknowledged
	// this long is taken over (its consumer died or is stuck).
	ClaimIdle time.Duration
	// MaxTries: a permanently failing entry is parked in the item's
	// dead-letter stream after this many failed attempts.
	MaxTries int
	// Scan: how often the dirty index is read for items with new changes;
	// the items this reader took are polled on every Read.
	Scan time.Duration
	// Hot: how long an item is kept and polled on every Read after its last
	// change, before it goes back to the index (0: hotFor).
	Hot time.Duration
}

// Outbox reads the per-item outbox streams that the scripts append to.
// Streams are per item (they share the item's hash tag), so every script
// stays in one slot of a Redis Cluster. It learns which have changes from
// the dirty index (see index.go): it takes an item from it for dirtyLease,
// renewed while it polls the item, and gives it back once the item's outbox
// is empty and has been quiet for hotFor; another reader takes over the
// items of one that died when their lease runs out.
type Outbox struct {
	store *Store
	opt   OutboxOptions

	mu        sync.Mutex
	streams   map[string]*streamState
	lastScan  time.Time
	lastPrune time.Time
}

type streamState struct {
	grouped bool      // the consumer group exists, as far as we know
	held    bool      // taken from the dirty index: polled on every Read
	version string    // the index entry's version when taken
	leaseTo time.Time // when the hold runs out (renewed before)
	adopt   bool      // just taken: take over its idle entries on the next poll
	// claimedAt is when idle entries were last looked for.
	claimedAt time.Time
	hotUntil  time.Time // polled until then even with nothing in it
	// claimFrom is where the last XAUTOCLAIM stopped when it found more
	// idle entries than one call takes; the next Read goes on from there,
	// so a long backlog left by a dead consumer drains at full speed.
	claimFrom string
}

// hotFor is how long an item that had changes is polled on every Read
// after its last one, before it goes back to the index: during a sale the
// next change comes long before, so a hot item is taken once, not per change.
const hotFor = 5 * time.Second

// dirtyLease is how long a reader holds an item it took from the dirty
// index; it renews the hold while it keeps the item. An item held by a
// reader that died is taken by another this long after its last renewal.
const dirtyLease = time.Second

// dirtyClaim bounds the items one claim takes from a shard.
const dirtyClaim = 1000

var _ reservation.Outbox = (*Outbox)(nil)

// Outbox returns a reader of the store's outboxes.
func (s *Store) Outbox(opt OutboxOptions) (*Outbox, error) {
	if opt.Consumer == "" || opt.ClaimIdle <= 0 || opt.MaxTries < 1 || opt.Scan <= 0 {
		return nil, fmt.Errorf("redisstore: outbox options %+v: consumer, claim idle, max tries and scan are required", opt)
	}
	if opt.Hot <= 0 {
		opt.Hot = hotFor
	}
	return &Outbox{store: s, opt: opt, streams: map[string]*streamState{}}, nil
}

// Read returns new entries and entries claimed from consumers that went quiet.
func (o *Outbox) Read(ctx context.Context, n int) ([]reservation.OutboxEntry, error) {
	// A few Reads' worth: a Read polls n of them, and Reads follow each
	// other within a batch's wait while there is work.
	if err := o.take(ctx, 4*n); err != nil {
		return nil, err
	}
	skus := o.candidates(n)
	if len(skus) == 0 {
		return nil, nil
	}
	// At most n entries in all: a Read's entries are written within one
	// batch's time, and what is read but not written waits for a claim.
	per := int64(max(1, n/len(skus)))
	if err := o.ensureGroups(ctx, skus); err != nil {
		return nil, err
	}
	s := o.store
	pipe := s.client.Pipeline()
	claims := make([]*goredis.XAutoClaimCmd, len(skus))
	reads := make([]*goredis.XStreamSliceCmd, len(skus))
	lens := make([]*goredis.IntCmd, len(skus))
	now := time.Now()
	o.mu.Lock()
	for i, sku := range skus {
		key := s.key(sku, "outbox")
		st := o.streams[sku]
		// Entries left pending by a reader that died are taken over once
		// idle for ClaimIdle: looked for every ClaimIdle/2 on each item.
		if st.adopt || st.claimFrom != "" || now.Sub(st.claimedAt) >= o.opt.ClaimIdle/2 {
			st.claimedAt = now
			start := st.claimFrom
			if start == "" {
				start = "0-0"
			}
			claims[i] = pipe.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
				Stream: key, Group: SyncGroup, Consumer: o.opt.Consumer,
				MinIdle: o.opt.ClaimIdle, Start: start, Count: per,
			})
		}
		reads[i] = pipe.XReadGroup(ctx, &goredis.XReadGroupArgs{
			Group: SyncGroup, Consumer: o.opt.Consumer, Streams: []string{key, ">"},
			Count: per, Block: -1,
		})
		lens[i] = pipe.XLen(ctx, key)
	}
	o.mu.Unlock()
	_, _ = pipe.Exec(ctx) // read per command below

	var out []reservation.OutboxEntry
	var firstErr error
	var done []settlement
	for i, sku := range skus {
		var msgs []goredis.XMessage
		failed := false
		if claims[i] != nil {
			m, from, err := claims[i].Result()
			if err != nil && !o.lostGroup(sku, err) && firstErr == nil {
				firstErr = err
			}
			failed = failed || err != nil
			if from == "0-0" || err != nil {
				from = ""
			}
			o.mu.Lock()
			o.streams[sku].claimFrom = from
			if err == nil {
				o.streams[sku].adopt = false
			}
			o.mu.Unlock()
			msgs = append(msgs, m...)
		}
		streams, err := reads[i].Result()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			failed = true
			if !o.lostGroup(sku, err) && firstErr == nil {
				firstErr = err
			}
		default:
			for _, st := range streams {
				msgs = append(msgs, st.Messages...)
			}
		}
		length, lerr := lens[i].Result()
		o.mu.Lock()
		st := o.streams[sku]
		switch {
		case len(msgs) > 0:
			st.hotUntil = now.Add(o.opt.Hot)
		case !failed && lerr == nil && length == 0 && !now.Before(st.hotUntil) && st.claimFrom == "":
			// Empty and quiet: back to the index, unless a change was
			// hinted since it was taken (then it stays due, see index.lua).
			// Forgotten too, so a reader keeps state only for what it
			// holds (at 100,000 items, walking every item it ever read on
			// each Read was most of an idle instance's CPU).
			st.held = false
			delete(o.streams, sku)
			done = append(done, settlement{bucket: sku, version: st.version, next: -1})
		}
		if st.held && st.leaseTo.Sub(now) < dirtyLease/2 {
			st.leaseTo = now.Add(dirtyLease)
			done = append(done, settlement{bucket: sku, version: st.version, renew: dirtyLease})
		}
		o.mu.Unlock()
		for _, m := range msgs {
			out = append(out, parseEntry(sku, m))
		}
	}
	if len(done) > 0 {
		if err := s.settle(ctx, indexDirty, done); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil && len(out) == 0 {
		return nil, fmt.Errorf("redisstore: outbox read: %w", translate(firstErr))
	}
	o.prune(ctx, skus)
	return out, nil
}

// take claims up to limit items of the dirty index that are due, once per
// Scan: a reader takes what it can poll, and leaves the rest to the others.
func (o *Outbox) take(ctx context.Context, limit int) error {
	o.mu.Lock()
	now := time.Now()
	due := now.Sub(o.lastScan) >= o.opt.Scan
	if due {
		o.lastScan = now
	}
	o.mu.Unlock()
	if !due {
		return nil
	}
	o.store.FlushHints(ctx) // this instance's own changes first
	shards, err := o.store.dueShards(ctx, indexDirty)
	if err != nil {
		return fmt.Errorf("redisstore: outbox read: %w", err)
	}
	taken := 0
	for _, shard := range shards {
		for taken < limit {
			c, err := o.store.claim(ctx, shard, indexDirty, dirtyLease, min(dirtyClaim, limit-taken))
			if err != nil {
				return fmt.Errorf("redisstore: outbox read: %w", err)
			}
			o.mu.Lock()
			for i, b := range c.buckets {
				st := o.streams[b]
				if st == nil {
					st = &streamState{}
					o.streams[b] = st
				}
				// An item new to this reader may have entries a dead one
				// left pending: take those over as soon as they are idle.
				st.adopt = st.adopt || !st.held
				st.held, st.version, st.leaseTo = true, c.versions[i], now.Add(dirtyLease)
			}
			o.mu.Unlock()
			taken += len(c.buckets)
			if len(c.buckets) < min(dirtyClaim, limit-taken+len(c.buckets)) {
				break
			}
		}
	}
	return nil
}

// candidates returns up to limit of the items this reader holds: a window
// that starts somewhere else on every call (Go's map order), so a reader
// holding more items than one Read takes polls them all in turn.
func (o *Outbox) candidates(limit int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var skus []string
	for sku, st := range o.streams {
		if st.held {
			skus = append(skus, sku)
			if len(skus) == limit {
				break
			}
		}
	}
	return skus
}

// prune removes consumers long gone from the groups (see prune.lua). Those
// with pending entries keep them until claimed, and go next time.
func (o *Outbox) prune(ctx context.Context, skus []string) {
	gone := 10 * o.opt.ClaimIdle
	o.mu.Lock()
	due := time.Since(o.lastPrune) >= gone
	if due {
		o.lastPrune = time.Now()
	}
	o.mu.Unlock()
	if !due {
		return
	}
	calls := make([]call, len(skus))
	for i, sku := range skus {
		calls[i] = call{keys: []string{o.store.key(sku, "outbox")}, args: []any{SyncGroup, o.opt.Consumer, gone.Milliseconds()}}
	}
	// Best effort: a consumer not pruned now is pruned next time.
	_ = o.store.runMany(ctx, pruneScript, calls)
}

// lostGroup notes a stream whose group is gone (Redis lost its data) so the
// next Read creates it again; it reports whether err was that.
func (o *Outbox) lostGroup(sku string, err error) bool {
	if !goredis.HasErrorPrefix(err, "NOGROUP") {
		return false
	}
	o.mu.Lock()
	o.streams[sku].grouped = false
	o.mu.Unlock()
	return true
}

// ensureGroups creates the consumer group on each stream that lacks it,
// reading from the very first entry, so nothing appended before is skipped.
func (o *Outbox) ensureGroups(ctx context.Context, skus []string) error {
	var missing []string
	o.mu.Lock()
	for _, sku := range skus {
		if !o.streams[sku].grouped {
			missing = append(missing, sku)
		}
	}
	o.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	pipe := o.store.client.Pipeline()
	cmds := make([]*goredis.StatusCmd, len(missing))
	for i, sku := range missing {
		cmds[i] = pipe.XGroupCreateMkStream(ctx, o.store.key(sku, "outbox"), SyncGroup, "0")
	}
	_, _ = pipe.Exec(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, sku := range missing {
		err := cmds[i].Err()
		if err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("redisstore: create group on %s: %w", sku, translate(err))
		}
		o.streams[sku].grouped = true
	}
	return nil
}

// Ack acknowledges and deletes entries, one script per item.
func (o *Outbox) Ack(ctx context.Context, entries []reservation.OutboxEntry) error {
	byBucket := map[string][]any{}
	var order []string
	for _, e := range entries {
		b := e.Bucket
		if _, ok := byBucket[b]; !ok {
			order = append(order, b)
			byBucket[b] = []any{SyncGroup, "ack"}
		}
		byBucket[b] = append(byBucket[b], e.ID)
	}
	calls := make([]call, len(order))
	for i, b := range order {
		calls[i] = call{keys: o.store.outboxKeys(b), args: byBucket[b]}
	}
	for i, res := range o.store.runMany(ctx, ackScript, calls) {
		if _, err := reply(res.val, res.err); err != nil {
			return fmt.Errorf("redisstore: ack %s: %w", order[i], err)
		}
	}
	return nil
}

// Fail counts an attempt; at MaxTries the entry goes to the dead letters.
// The attempt carries a token of its own: go-redis resends a call whose
// reply timed out, though it may have run, and the script counts a resend
// of the attempt it counted last no more (see ack.lua).
func (o *Outbox) Fail(ctx context.Context, e reservation.OutboxEntry, reason string) (bool, error) {
	// Noted first, so a dead letter is never missing from the backlog.
	if err := o.store.client.SAdd(ctx, o.store.deadIndexKey(indexShard(e.Bucket)), e.Bucket).Err(); err != nil {
		return false, fmt.Errorf("redisstore: count try of %s: %w", e.ID, translate(err))
	}
	rep, err := reply(ackScript.Run(ctx, o.store.client, o.store.outboxKeys(e.Bucket),
		SyncGroup, "try", e.ID, reason, o.opt.MaxTries, rand.Text()).Result())
	if err != nil {
		return false, fmt.Errorf("redisstore: count try of %s: %w", e.ID, err)
	}
	return rep.code() == "dead", nil
}

// Backlog sums the unsynced entries of every item's outbox. Acknowledged
// entries are deleted, so an outbox's length is its backlog.
func (o *Outbox) Backlog(ctx context.Context) (reservation.Backlog, error) {
	return o.store.Backlog(ctx)
}

// backlogSample bounds the dirty items whose outboxes one Backlog reads:
// beyond it the reading is an estimate from a random sample of them, so the
// gauge costs Redis the same with 100,000 dirty items as with 2,000.
const backlogSample = 2000

// Backlog reports the entries not yet synced: those of the items in the
// dirty index (an item with entries is there, but for a hint lost with its
// instance, which the sweeper's scan puts back), estimated from a sample of
// backlogSample of them when there are more, and the dead letters of the
// items that ever failed an entry.
func (s *Store) Backlog(ctx context.Context) (reservation.Backlog, error) {
	s.FlushHints(ctx) // this instance's own changes count at once
	var b reservation.Backlog
	pipe := s.client.Pipeline()
	cards := make([]*goredis.IntCmd, indexShards)
	dead := make([]*goredis.StringSliceCmd, indexShards)
	for n := range indexShards {
		cards[n] = pipe.ZCard(ctx, s.indexKeys(n, indexDirty)[0])
		dead[n] = pipe.SMembers(ctx, s.deadIndexKey(n))
	}
	now := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return b, fmt.Errorf("redisstore: backlog: %w", translate(err))
	}
	var total int64
	for n := range indexShards {
		total += cards[n].Val()
	}
	// Each shard's members, or a sample of them, with the weight each
	// stands for.
	pipe = s.client.Pipeline()
	members := make([]*goredis.StringSliceCmd, indexShards)
	weight := make([]float64, indexShards)
	for n := range indexShards {
		card := cards[n].Val()
		if card == 0 {
			continue
		}
		k := s.indexKeys(n, indexDirty)[0]
		if total <= backlogSample {
			members[n], weight[n] = pipe.ZRange(ctx, k, 0, -1), 1
			continue
		}
		take := max(1, card*backlogSample/total)
		members[n], weight[n] = pipe.ZRandMember(ctx, k, int(take)), float64(card)/float64(take)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return b, fmt.Errorf("redisstore: backlog: %w", translate(err))
	}
	var names []string
	var weights []float64
	for n := range indexShards {
		if members[n] == nil {
			continue
		}
		for _, m := range members[n].Val() {
			names = append(names, m)
			weights = append(weights, weight[n])
		}
	}
	var deadNames []string
	for n := range indexShards {
		deadNames = append(deadNames, dead[n].Val()...)
	}
	var entries float64
	const chunk = 500
	for lo := 0; lo < len(names) || lo < len(deadNames); lo += chunk {
		part := names[min(lo, len(names)):min(lo+chunk, len(names))]
		deadPart := deadNames[min(lo, len(deadNames)):min(lo+chunk, len(deadNames))]
		pipe := s.client.Pipeline()
		lens := make([]*goredis.IntCmd, len(part))
		first := make([]*goredis.XMessageSliceCmd, len(part))
		deadLens := make([]*goredis.IntCmd, len(deadPart))
		for i, name := range part {
			k := s.key(name, "outbox")
			lens[i] = pipe.XLen(ctx, k)
			first[i] = pipe.XRangeN(ctx, k, "-", "+", 1)
		}
		for i, name := range deadPart {
			deadLens[i] = pipe.XLen(ctx, s.key(name, "dead"))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return b, fmt.Errorf("redisstore: backlog: %w", translate(err))
		}
		for i := range part {
			entries += float64(lens[i].Val()) * weights[lo+i]
			if msgs := first[i].Val(); len(msgs) > 0 {
				if age := now.Val().Sub(entryTime(msgs[0].ID)); age > b.Oldest {
					b.Oldest = age
				}
			}
		}
		for i := range deadPart {
			b.Dead += deadLens[i].Val()
		}
	}
	b.Entries = int64(entries + 0.5)
	return b, nil
}

// deadIndexKey is one shard of the set of buckets that may have dead
// letters; Fail adds a bucket before an attempt that may park its entry.
func (s *Store) deadIndexKey(shard int) string {
	return s.prefix + ":{idx-" + strconv.Itoa(shard) + "}:failed"
}

// ItemBacklog is the number of unsynced entries of one item, over its buckets.
func (s *Store) ItemBacklog(ctx context.Context, sku string) (int64, error) {
	n, err := s.client.HGet(ctx, s.key(sku, "item"), "buckets").Int()
	if errors.Is(err, goredis.Nil) {
		n, err = 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: backlog of %s: %w", sku, translate(err))
	}
	var total int64
	for _, name := range newLayout(sku, max(n, 1)).names {
		entries, err := s.client.XLen(ctx, s.key(name, "outbox")).Result()
		if err != nil {
			return 0, fmt.Errorf("redisstore: backlog of %s: %w", name, translate(err))
		}
		total += entries
	}
	return total, nil
}

// entryTime is when Redis appended a stream entry: its id is "<ms>-<seq>".
func entryTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n)
}

func (s *Store) catalog(ctx context.Context) ([]string, error) {
	skus, err := s.client.SMembers(ctx, s.catalogKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: catalogue: %w", translate(err))
	}
	return skus, nil
}

// parseEntry decodes an outbox entry written by lib.lua's emit_res or
// emit_item. A malformed entry comes back with Err set, for the syncer to
// count and eventually park.
func parseEntry(bucket string, m goredis.XMessage) reservation.OutboxEntry {
	sku := bucketSKU(bucket)
	e := reservation.OutboxEntry{SKU: sku, Bucket: bucket, ID: m.ID}
	field := func(name string) string {
		s, _ := m.Values[name].(string)
		return s
	}
	var err error
	switch field("k") {
	case "res":
		var r reservation.Reservation
		r, err = decodeRecord(sku, field("id"), field("rec"))
		e.Change = reservation.Change{Reservation: &r, IdempotencyField: field("idem")}
	case "item":
		var it reservation.ItemRecord
		it, err = decodeItemEntry(sku, field)
		e.Change = reservation.Change{Item: &it}
	default:
		err = fmt.Errorf("unknown kind %q", field("k"))
	}
	if err != nil {
		e.Change = reservation.Change{}
		e.Err = fmt.Errorf("outbox entry %s of %s: %w", m.ID, bucket, err)
	}
	return e
}

// decodeRecord parses lib.lua's record "status|qty|created|expires|updated|user".
func decodeRecord(sku, id, rec string) (reservation.Reservation, error) {
	parts := strings.SplitN(rec, "|", 6)
	if len(parts) != 6 {
		return reservation.Reservation{}, fmt.Errorf("record %q: want 6 fields", rec)
	}
	if got, ok := reservation.ParseID(id); !ok || got != sku {
		return reservation.Reservation{}, fmt.Errorf("reservation id %q is not of item %s", id, sku)
	}
	st := reservation.Status(parts[0])
	switch st {
	case reservation.StatusPending, reservation.StatusConfirmed, reservation.StatusCancelled, reservation.StatusExpired:
	default:
		return reservation.Reservation{}, fmt.Errorf("record %q: unknown status", rec)
	}
	var n [4]int64
	for i := range n {
		v, err := strconv.ParseInt(parts[i+1], 10, 64)
		if err != nil || v < 0 {
			return reservation.Reservation{}, fmt.Errorf("record %q: field %d is not a count", rec, i+2)
		}
		n[i] = v
	}
	if !reservation.ValidUserID(parts[5]) || n[0] < 1 {
		return reservation.Reservation{}, fmt.Errorf("record %q: bad user or quantity", rec)
	}
	return reservation.Reservation{
		ID: id, SKU: sku, Status: st, Quantity: int(n[0]), UserID: parts[5],
		CreatedAt: time.UnixMilli(n[1]).UTC(), ExpiresAt: time.UnixMilli(n[2]).UTC(), UpdatedAt: time.UnixMilli(n[3]).UTC(),
	}, nil
}

// encodeRecord is decodeRecord's inverse, for restoring.
func encodeRecord(r reservation.Reservation) string {
	return string(r.Status) + "|" + strconv.Itoa(r.Quantity) + "|" +
		strconv.FormatInt(r.CreatedAt.UnixMilli(), 10) + "|" + strconv.FormatInt(r.ExpiresAt.UnixMilli(), 10) + "|" +
		strconv.FormatInt(r.UpdatedAt.UnixMilli(), 10) + "|" + r.UserID
}

func decodeItemEntry(sku string, field func(string) string) (reservation.ItemRecord, error) {
	num := func(name string, min int64) (int64, error) {
		v, err := strconv.ParseInt(field(name), 10, 64)
		if err != nil || v < min {
			return 0, fmt.Errorf("item field %s=%q", name, field(name))
		}
		return v, nil
	}
	optional := func(name string) (time.Time, error) {
		if field(name) == "" {
			return time.Time{}, nil
		}
		v, err := num(name, 0)
		return time.UnixMilli(v).UTC(), err
	}
	var it reservation.ItemRecord
	var errs [9]error
	var limit, hold, created, updated int64
	it.SKU, it.Name, it.Buckets = sku, field("name"), 1
	if field("buckets") != "" {
		b, err := num("buckets", 1)
		if err != nil || b > reservation.MaxBuckets {
			return it, fmt.Errorf("item field buckets=%q", field("buckets"))
		}
		it.Buckets = int(b)
	}
	it.Rev, errs[0] = num("rev", 1)
	it.Stock, errs[1] = num("stock", 0)
	limit, errs[2] = num("limit", 1)
	hold, errs[3] = num("hold", 1)
	it.StartsAt, errs[4] = optional("starts")
	it.EndsAt, errs[5] = optional("ends")
	created, errs[6] = num("created", 0)
	updated, errs[7] = num("updated", 0)
	if err := errors.Join(errs[:]...); err != nil {
		return it, err
	}
	it.PerUserLimit, it.Hold = int(limit), time.Duration(hold)*time.Millisecond
	it.CreatedAt, it.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return it, nil
}
