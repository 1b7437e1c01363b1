package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
)

// The sweeper and the syncer find their work through two indexes instead of
// visiting every item of the catalogue on every tick (issue 16: 10,000 idle
// items cost a third of a Redis core per instance). Each is split over
// indexShards keys so the shards spread over a cluster's nodes; a bucket's
// shard is a hash of its name.
//   - due: bucket -> no later than when its next hold falls due (or its
//     next transfer or final reservation needs the sweeper);
//   - dirty: bucket -> its outbox may hold changes not yet synced.
//
// The store hints both after the bucket's own script ran (see noteCall), a
// few milliseconds later and for many calls at once; whoever takes an entry
// (claim) holds it for a lease and settles it with what it found. A hint lost
// with its instance is repaired by the sweeper's slow scan (scanStep).
const indexShards = 16

// The two indexes.
const (
	indexDue   = "due"
	indexDirty = "dirty"
)

// hintEvery is how long a hint waits for others to share its round trip.
const hintEvery = 5 * time.Millisecond

// Defaults of WithSweep.
const (
	DefaultSweepLease = 500 * time.Millisecond
	DefaultSweepScan  = 25
)

// sweepClaim bounds the buckets one claim takes.
const sweepClaim = 500

var indexScript = goredis.NewScript(string(luascripts.Index()))

// WithSweep sets how long the sweeper holds the buckets it took from the due
// index (another instance takes them over when it dies: keep it above the
// time a sweep takes and within the promise that expired holds return about
// a second after falling due), and how many buckets of the catalogue its
// safety-net scan visits per sweep (the deployment's one scan; see scanStep).
func WithSweep(lease time.Duration, scan int) Option {
	return func(s *Store) {
		if lease > 0 {
			s.sweepLease = lease
		}
		if scan > 0 {
			s.sweepScan = scan
		}
	}
}

// indexShard is the shard of a bucket's entries.
func indexShard(bucket string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(bucket))
	return int(h.Sum32() % indexShards)
}

// indexKeys are one shard's keys of an index: the sorted set and its versions.
func (s *Store) indexKeys(shard int, index string) []string {
	tag := s.prefix + ":{idx-" + strconv.Itoa(shard) + "}:"
	return []string{tag + index, tag + index + "-ver"}
}

// bucketOfKey is the bucket a key of keys() belongs to: its hash tag.
func bucketOfKey(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "}")
	return name
}

// hints gathers the index hints of concurrent calls and sends them together,
// one script per index shard, hintEvery after the first.
type hints struct {
	store *Store

	mu      sync.Mutex
	due     map[string]int64 // bucket -> earliest time it needs the sweeper
	dirty   map[string]bool
	running bool
	sending sync.Mutex // one send at a time, so flush waits for one under way
}

func (h *hints) noteDue(bucket string, ms int64) {
	h.mu.Lock()
	if at, ok := h.due[bucket]; !ok || ms < at {
		h.due[bucket] = ms
	}
	h.start()
	h.mu.Unlock()
}

func (h *hints) noteDirty(bucket string) {
	h.mu.Lock()
	h.dirty[bucket] = true
	h.start()
	h.mu.Unlock()
}

// start runs the sender unless it runs; h.mu is held.
func (h *hints) start() {
	if h.running {
		return
	}
	h.running = true
	go h.loop()
}

// loop sends what was noted every hintEvery and ends once nothing was.
func (h *hints) loop() {
	for {
		time.Sleep(hintEvery)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		empty := h.flush(ctx)
		cancel()
		if empty {
			return
		}
	}
}

// flush sends what was noted. It reports whether there was nothing to send,
// and then marks the sender stopped. Hints that could not be sent are kept
// for the next round (Redis down: the scan repairs whatever is lost).
func (h *hints) flush(ctx context.Context) (empty bool) {
	h.sending.Lock()
	defer h.sending.Unlock()
	h.mu.Lock()
	due, dirty := h.due, h.dirty
	if len(due) == 0 && len(dirty) == 0 {
		h.running = false
		h.mu.Unlock()
		return true
	}
	h.due, h.dirty = map[string]int64{}, map[string]bool{}
	h.mu.Unlock()
	if err := h.store.hint(ctx, due, dirty); err != nil {
		h.mu.Lock()
		for b, ms := range due {
			if at, ok := h.due[b]; !ok || ms < at {
				h.due[b] = ms
			}
		}
		for b := range dirty {
			h.dirty[b] = true
		}
		h.mu.Unlock()
		if ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond) // Redis is down or busy: do not spin
		}
	}
	return false
}

// FlushHints sends the index hints this store has noted and not sent yet
// (they go by themselves within milliseconds). The sweeper calls it first;
// tests call it instead of waiting.
func (s *Store) FlushHints(ctx context.Context) { s.hints.flush(ctx) }

// hint writes due and dirty entries, one script per shard.
func (s *Store) hint(ctx context.Context, due map[string]int64, dirty map[string]bool) error {
	type shardArgs struct{ due, dirty []any }
	byShard := map[int]*shardArgs{}
	of := func(b string) *shardArgs {
		n := indexShard(b)
		a := byShard[n]
		if a == nil {
			a = &shardArgs{}
			byShard[n] = a
		}
		return a
	}
	for b, ms := range due {
		a := of(b)
		a.due = append(a.due, ms, b)
	}
	for b := range dirty {
		a := of(b)
		a.dirty = append(a.dirty, 0, b)
	}
	calls := make([]call, 0, len(byShard))
	for n, a := range byShard {
		args := append([]any{"hint", len(a.due) / 2}, a.due...)
		calls = append(calls, call{sc: indexScript,
			keys: append(s.indexKeys(n, indexDue), s.indexKeys(n, indexDirty)...), args: append(args, a.dirty...)})
	}
	return s.runIndex(ctx, "index hint", calls)
}

// runIndex sends index script calls of several shards in one pipeline and
// joins their errors.
func (s *Store) runIndex(ctx context.Context, what string, calls []call) error {
	var errs []error
	for _, res := range pipelined(ctx, s.client, calls, ackPolicy{}) {
		if _, err := reply(res.val, res.err); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redisstore: %s: %w", what, err)
	}
	return nil
}

// noteCall hints the indexes after a bucket's script answered: a change
// appended to its outbox makes it dirty, a new hold or transfer makes it
// due. Holds a refusal settled on the way are not hinted: they were due, so
// the bucket's due entry is already due, and the sweeper, settling it, hints
// the outbox they were written to.
func (s *Store) noteCall(c call, res result) {
	if res.err != nil || len(c.keys) == 0 {
		return
	}
	rep, ok := res.val.([]any)
	if !ok || len(rep) == 0 {
		return
	}
	code, _ := rep[0].(string)
	switch c.sc {
	case s.reserve:
		if code == "created" && len(rep) >= createdLen {
			b := bucketOfKey(c.keys[0])
			s.hints.noteDue(b, scriptReply(rep).int(createdExpires))
			s.hints.noteDirty(b)
		}
	case s.take:
		if code == "taken" {
			// Units moved out wait in a transfer the sweeper may have to finish.
			b := bucketOfKey(c.keys[0])
			s.hints.noteDue(b, 0)
			s.hints.noteDirty(b)
		}
	case s.confirm, s.cancel:
		if code == "confirmed" || code == "cancelled" || code == "reservation_expired" {
			s.hints.noteDirty(bucketOfKey(c.keys[0]))
		}
	case s.seed:
		if code == "created" || code == "updated" {
			s.hints.noteDirty(bucketOfKey(c.keys[0]))
		}
	case s.expire:
		if code == "ok" && len(rep) >= expireLen && scriptReply(rep).int(expireOutbox) > 0 {
			s.hints.noteDirty(bucketOfKey(c.keys[0]))
		}
	}
}

// dueShards returns, in a random order, the shards of an index whose
// earliest entry is due by Redis's clock: one round trip of plain reads, so
// that an idle index costs no script at all (a claim script on each of 16
// shards, every interval on every instance, was most of the idle cost). The
// claim on a shard checks again.
func (s *Store) dueShards(ctx context.Context, index string) ([]int, error) {
	pipe := s.client.Pipeline()
	now := pipe.Time(ctx)
	firsts := make([]*goredis.ZSliceCmd, indexShards)
	for n := range indexShards {
		firsts[n] = pipe.ZRangeWithScores(ctx, s.indexKeys(n, index)[0], 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redisstore: %s index: %w", index, translate(err))
	}
	nowMS := now.Val().UnixMilli()
	var due []int
	for _, n := range mrand.Perm(indexShards) {
		if z := firsts[n].Val(); len(z) > 0 && int64(z[0].Score) <= nowMS {
			due = append(due, n)
		}
	}
	return due, nil
}

// claimed is what a claim took: buckets with their versions, and Redis's
// clock then.
type claimed struct {
	nowMS    int64
	buckets  []string
	versions []string
}

// claim takes up to max entries due by now from one shard of an index, for
// lease.
func (s *Store) claim(ctx context.Context, shard int, index string, lease time.Duration, max int) (claimed, error) {
	rep, err := reply(indexScript.Run(ctx, s.client, s.indexKeys(shard, index), "claim", lease.Milliseconds(), max).Result())
	if err != nil {
		return claimed{}, fmt.Errorf("redisstore: claim %s index: %w", index, err)
	}
	if rep.code() != "claimed" || len(rep)%2 != 0 {
		return claimed{}, rep.unexpected("claim")
	}
	c := claimed{nowMS: rep.int(1)}
	for i := 2; i+1 < len(rep); i += 2 {
		c.buckets = append(c.buckets, rep.str(i))
		c.versions = append(c.versions, rep.str(i+1))
	}
	return c, nil
}

// settlement is one claimed entry's outcome: its next score, or removed
// when next < 0, or renewed for renew from now when renew > 0.
type settlement struct {
	bucket, version string
	next            int64
	renew           time.Duration
}

// settle writes what the claimers found, grouped by shard; an entry hinted
// since its claim is left due at once instead (see index.lua).
func (s *Store) settle(ctx context.Context, index string, done []settlement) error {
	byShard := map[int][]any{}
	for _, d := range done {
		score := ""
		switch {
		case d.renew > 0:
			score = "+" + strconv.FormatInt(d.renew.Milliseconds(), 10)
		case d.next >= 0:
			score = strconv.FormatInt(d.next, 10)
		}
		n := indexShard(d.bucket)
		byShard[n] = append(byShard[n], d.bucket, d.version, score)
	}
	calls := make([]call, 0, len(byShard))
	for n, args := range byShard {
		calls = append(calls, call{sc: indexScript, keys: s.indexKeys(n, index), args: append([]any{"settle"}, args...)})
	}
	return s.runIndex(ctx, "settle "+index+" index", calls)
}

// IndexSize counts the entries of an index ("due" or "dirty") over its
// shards, and the earliest score (Redis ms, -1 when empty).
func (s *Store) IndexSize(ctx context.Context, index string) (entries int64, earliest int64, err error) {
	pipe := s.client.Pipeline()
	cards := make([]*goredis.IntCmd, indexShards)
	firsts := make([]*goredis.ZSliceCmd, indexShards)
	for n := range indexShards {
		k := s.indexKeys(n, index)[0]
		cards[n] = pipe.ZCard(ctx, k)
		firsts[n] = pipe.ZRangeWithScores(ctx, k, 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return 0, -1, fmt.Errorf("redisstore: %s index: %w", index, translate(err))
	}
	earliest = -1
	for n := range indexShards {
		entries += cards[n].Val()
		if z := firsts[n].Val(); len(z) > 0 && (earliest < 0 || int64(z[0].Score) < earliest) {
			earliest = int64(z[0].Score)
		}
	}
	return entries, earliest, nil
}
