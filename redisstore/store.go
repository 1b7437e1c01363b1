// Package redisstore keeps items and reservations in Redis and makes every
// check-and-change of an item one Lua script, so no interleaving of buyers
// can oversell. It implements reservation.Store.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

// settleLimit bounds how many due holds one buyer's script settles on the
// way, so a burst of expiries cannot make one request slow. The sweeper
// settles the rest.
const settleLimit = 64

// maxSettleRounds bounds the calls one request makes while settling a burst
// of expiries (64 000 holds); beyond it the answer is an error, not a guess.
const maxSettleRounds = 1000

// Store is a reservation.Store on Redis (single node or cluster).
type Store struct {
	client   goredis.UniversalClient
	prefix   string
	reserve  *goredis.Script
	confirm  *goredis.Script
	cancel   *goredis.Script
	expire   *goredis.Script
	seed     *goredis.Script
	get      *goredis.Script
	restore  *goredis.Script
	bucket   *goredis.Script
	take     *goredis.Script
	give     *goredis.Script
	freeze   *goredis.Script
	credit   *goredis.Script
	co       *coalescer       // nil: every call on its own connection
	shards   *shardCoalescers // on a cluster with co: co's settings, one per master
	layouts  layouts
	keyCache keyCache
	// retention is how long a final reservation stays in Redis after it
	// settled (and was synced); 0 keeps it for the item's life.
	retention time.Duration
	ack       ackPolicy
	hints     *hints
	// sweepLease and sweepScan are WithSweep's.
	sweepLease time.Duration
	sweepScan  int
	leaseToken string // names this store as the holder of a Lease
}

var _ reservation.Store = (*Store)(nil)

// New returns a Store whose keys start with prefix. It loads every script
// now, so a script that does not compile fails the start, not the first buyer.
func New(ctx context.Context, client goredis.UniversalClient, prefix string, opts ...Option) (*Store, error) {
	if prefix == "" || strings.ContainsAny(prefix, "{} ") {
		return nil, fmt.Errorf("redisstore: key prefix %q must be non-empty without braces or spaces", prefix)
	}
	if cc, ok := client.(*goredis.ClusterClient); ok {
		reloadOnFailure(cc) // for every user of cc, not only this store
	}
	s := &Store{
		client:  client,
		prefix:  prefix,
		reserve: goredis.NewScript(string(luascripts.Reserve())),
		confirm: goredis.NewScript(string(luascripts.Confirm())),
		cancel:  goredis.NewScript(string(luascripts.Cancel())),
		expire:  goredis.NewScript(string(luascripts.Expire())),
		seed:    goredis.NewScript(string(luascripts.Seed())),
		get:     goredis.NewScript(string(luascripts.Reservation())),
		restore: goredis.NewScript(string(luascripts.Restore())),
		bucket:  goredis.NewScript(string(luascripts.Bucket())),
		take:    goredis.NewScript(string(luascripts.Take())),
		give:    goredis.NewScript(string(luascripts.Give())),
		freeze:  goredis.NewScript(string(luascripts.Freeze())),
		credit:  goredis.NewScript(string(luascripts.Credit())),
	}
	s.co = newCoalescer(client, DefaultPipelines, DefaultPipelineBatch)
	s.retention = DefaultRetention
	s.hints = &hints{store: s, due: map[string]int64{}, dirty: map[string]bool{}}
	s.sweepLease, s.sweepScan, s.leaseToken = DefaultSweepLease, DefaultSweepScan, randomToken()
	for _, opt := range opts {
		opt(s)
	}
	if s.co != nil {
		s.co.ack = s.ack
		if cc, ok := client.(*goredis.ClusterClient); ok {
			s.shards = newShardCoalescers(cc, s.co)
		}
	}
	if err := s.LoadScripts(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Defaults of WithPipelines. Two pipelines in flight, not four, since the
// reserves of one item in a pipeline are merged into one call: batches grow
// and Redis does less per hold (docs/performance.md).
const (
	DefaultPipelines     = 2
	DefaultPipelineBatch = 128
)

// Option configures a Store.
type Option func(*Store)

// DefaultRetention is how long a final reservation stays in Redis.
const DefaultRetention = 24 * time.Hour

// WithReplicatedAck answers a change (reserve, confirm, cancel, seed) only
// once replicas replicas have it, waiting at most timeout (Redis's WAIT,
// after the scripts on their connection; on a Redis Cluster, one WAIT per
// master, on that master's connection). replicas = 0, the default, answers
// on the primary's word.
func WithReplicatedAck(replicas int, timeout time.Duration) Option {
	return func(s *Store) { s.ack = ackPolicy{replicas: max(replicas, 0), timeout: timeout} }
}

// WithRetention drops a reservation in a final state (confirmed, cancelled,
// expired), and its idempotency key, from Redis d after it settled, once
// the syncer has written that state to the durable record, which answers
// for it from then on. The sweeper does it. d <= 0 keeps them for the
// item's life.
func WithRetention(d time.Duration) Option {
	return func(s *Store) { s.retention = max(d, 0) }
}

// WithPipelines sends the script calls of concurrent requests together: at
// most n pipelines in flight, each of up to batch calls. n = 0 sends every
// call on its own.
func WithPipelines(n, batch int) Option {
	return func(s *Store) {
		s.co = nil
		if n > 0 {
			s.co = newCoalescer(s.client, n, max(batch, 1))
		}
	}
}

// LoadScripts sends every script to Redis (every master, on a cluster).
// Scripts also survive SCRIPT FLUSH without it: each call falls back from
// EVALSHA to EVAL.
func (s *Store) LoadScripts(ctx context.Context) error {
	load := func(ctx context.Context, c goredis.Scripter) error {
		for _, sc := range []*goredis.Script{s.reserve, s.confirm, s.cancel, s.expire, s.seed, s.get, s.restore, s.bucket, s.take, s.give, s.freeze, s.credit, ackScript, pruneScript, rateLimitScript, chargeScript, indexScript, leaseScript} {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return fmt.Errorf("redisstore: load script: %w", translate(err))
			}
		}
		return nil
	}
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return load(ctx, c) })
	}
	return load(ctx, s.client)
}

// keys returns a bucket's keys in the order every script expects (see
// luascripts/lib.lua). The bucket's name (the SKU for an item of one
// bucket) is the hash tag, so they share one slot.
//
// The slice is shared between calls (keyCache): callers only read it.
func (s *Store) keys(bucket string) []string {
	if k := s.keyCache.get(bucket); k != nil {
		return k
	}
	k := s.keysOf(bucket, "item", "holds", "users", "res", "idem", "outbox", "xout", "xin", "xtaken", "final")
	s.keyCache.put(bucket, k)
	return k
}

// keyCache keeps the keys of the buckets scripts ran on lately: building
// ten strings for every reserve was 2.6 % of the service's CPU on the
// success path. Any SKU a client names passes here, so it is bounded: once
// full it starts again empty.
type keyCache struct {
	mu sync.RWMutex
	m  map[string][]string
}

const maxCachedKeySets = 16_384

func (c *keyCache) get(bucket string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[bucket]
}

func (c *keyCache) put(bucket string, keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedKeySets {
		c.m = make(map[string][]string)
	}
	c.m[strings.Clone(bucket)] = keys
}

// ScriptKeys are the item's keys in the order every item script takes them,
// for tools that run a script themselves (the benchmark's redis-benchmark
// row).
func (s *Store) ScriptKeys(sku string) []string { return slices.Clone(s.keys(sku)) }

// Buckets are the names of an item's buckets as a store with this layout
// names them, the head (the SKU) first: the hash tags of their keys.
func Buckets(sku string, n int) []string { return newLayout(sku, n).names }

// outboxKeys returns the keys ack.lua expects: outbox, tries, dead letters.
func (s *Store) outboxKeys(sku string) []string { return s.keysOf(sku, "outbox", "tries", "dead") }

// key is one of a bucket's keys by name ("item", "outbox", ...).
func (s *Store) key(bucket, name string) string { return s.prefix + ":{" + bucket + "}:" + name }

func (s *Store) keysOf(sku string, names ...string) []string {
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = s.key(sku, name)
	}
	return out
}

func (s *Store) catalogKey() string { return s.prefix + ":catalog" }

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", translate(err))
	}
	return nil
}

// Seed creates the item or changes its offer.
func (s *Store) Seed(ctx context.Context, spec reservation.ItemSpec) (reservation.SeedResult, error) {
	results, errs := s.SeedMany(ctx, []reservation.ItemSpec{spec})
	return results[0], errs[0]
}

// SeedMany pipelines the specs; each is one script, atomic on its own. An
// item with buckets takes a few more steps around its head's script (see
// prepare and seedBuckets), each safe to interrupt.
func (s *Store) SeedMany(ctx context.Context, specs []reservation.ItemSpec) ([]reservation.SeedResult, []error) {
	results := make([]reservation.SeedResult, len(specs))
	errs := make([]error, len(specs))
	const chunk = 500
	for lo := 0; lo < len(specs); lo += chunk {
		hi := min(lo+chunk, len(specs))
		part := specs[lo:hi]
		// The catalogue is written first: an entry without an item is
		// harmless to the sweeper, an item missing from it would never be swept.
		var members []any
		for _, spec := range part {
			for _, name := range newLayout(spec.SKU, max(spec.Buckets, 1)).names {
				members = append(members, name)
			}
		}
		if err := s.client.SAdd(ctx, s.catalogKey(), members...).Err(); err != nil {
			for i := range part {
				errs[lo+i] = fmt.Errorf("redisstore: seed %s: %w", part[i].SKU, translate(err))
			}
			continue
		}
		ready := s.prepare(ctx, part, errs[lo:hi])
		var calls []call
		var idx []int
		for i, spec := range part {
			if !ready[i] {
				continue
			}
			idx = append(idx, i)
			calls = append(calls, call{keys: s.keys(spec.SKU), args: s.seedArgs(spec, randomToken()), ack: true})
		}
		if len(calls) == 0 {
			continue
		}
		for j, res := range s.runSettled(ctx, s.seed, calls) {
			i := idx[j]
			results[lo+i], errs[lo+i] = s.seedBuckets(ctx, part[i], res)
		}
	}
	return results, errs
}

func (s *Store) seedArgs(spec reservation.ItemSpec, seedID string) []any {
	return []any{
		spec.Stock, spec.PerUserLimit, spec.Hold.Milliseconds(),
		optionalMillis(spec.StartsAt), optionalMillis(spec.EndsAt), spec.Name, settleLimit,
		flag(spec.Recorded), spec.Buckets, seedID,
	}
}

// headFields, read with HMGET from an item's head, tell whether the item
// exists and over how many buckets (see headOf).
var headFields = []string{"stock", "buckets"}

// headOf reads HMGET headFields: whether the item exists and its bucket
// count, 1 for an item seeded before there were buckets (no field).
func headOf(vals []any) (exists bool, buckets int) {
	if len(vals) != len(headFields) || vals[0] == nil {
		return false, 0
	}
	buckets = 1
	if str, ok := vals[1].(string); ok {
		if n, err := strconv.Atoi(str); err == nil {
			buckets = min(max(n, 1), reservation.MaxBuckets)
		}
	}
	return true, buckets
}

// prepare readies the items of specs for their head's script and reports
// which are ready; the others get their error in errs. A seed never creates
// a bucket of an item that exists or that the record holds, and never
// changes an item one of whose buckets is missing: Redis lost that bucket
// with its holds, and only recovery can rebuild it (answer ErrRecovering,
// so the Service starts it). An item about to be created gets its other
// buckets first (empty, and unreachable until the head exists, since buyers
// learn of them from the head); an item the record holds but Redis lacks is
// left to the head's script, which answers "lost".
func (s *Store) prepare(ctx context.Context, specs []reservation.ItemSpec, errs []error) []bool {
	ready := make([]bool, len(specs))
	pipe := s.client.Pipeline()
	heads := make([]*goredis.SliceCmd, len(specs))
	for i, spec := range specs {
		heads[i] = pipe.HMGet(ctx, s.key(spec.SKU, "item"), headFields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		for i, spec := range specs {
			errs[i] = fmt.Errorf("redisstore: seed %s: %w", spec.SKU, translate(err))
		}
		return ready
	}
	var split []*layout
	at := map[string]int{}
	for i, spec := range specs {
		exists, n := headOf(heads[i].Val())
		switch {
		case exists && spec.Buckets > 1 && n != spec.Buckets:
			errs[i] = fmt.Errorf("%w: %s has %d", reservation.ErrBucketsImmutable, spec.SKU, n)
		case exists && n > 1:
			split = append(split, newLayout(spec.SKU, n))
			at[spec.SKU] = i
			ready[i] = true
		case !exists && spec.Buckets > 1 && !spec.Recorded:
			errs[i] = s.createBuckets(ctx, spec)
			ready[i] = errs[i] == nil
		default:
			ready[i] = true
		}
	}
	lost, err := s.lostBuckets(ctx, split)
	if err != nil {
		for _, l := range split {
			ready[at[l.names[0]]] = false
			errs[at[l.names[0]]] = fmt.Errorf("redisstore: seed %s: %w", l.names[0], err)
		}
		return ready
	}
	for _, sku := range lost {
		ready[at[sku]] = false
		errs[at[sku]] = fmt.Errorf("redisstore: seed %s: a bucket is lost: %w", sku, reservation.ErrRecovering)
	}
	return ready
}

// createBuckets creates the other buckets of an item about to be created.
// A bucket that holds units belongs to an existing item: one whose head
// Redis lost (ErrRecovering), or one that another seed created meanwhile,
// which the head's script then updates.
func (s *Store) createBuckets(ctx context.Context, spec reservation.ItemSpec) error {
	err := s.copyOffer(ctx, newLayout(spec.SKU, spec.Buckets), spec, bucketCreate)
	if !errors.Is(err, errOccupied) {
		return err
	}
	vals, herr := s.client.HMGet(ctx, s.key(spec.SKU, "item"), headFields...).Result()
	if herr != nil {
		return fmt.Errorf("redisstore: seed %s: %w", spec.SKU, translate(herr))
	}
	switch exists, n := headOf(vals); {
	case !exists:
		return fmt.Errorf("redisstore: seed %s: its head is lost: %w", spec.SKU, reservation.ErrRecovering)
	case n != spec.Buckets:
		return fmt.Errorf("%w: %s has %d", reservation.ErrBucketsImmutable, spec.SKU, n)
	}
	return nil
}

// bucket.lua's modes: create a missing bucket (an item being created) or
// only update an existing one.
const (
	bucketCreate = "create"
	bucketUpdate = "update"
)

// errOccupied: bucket.lua found a bucket to create already holding units.
var errOccupied = errors.New("the bucket holds units")

// copyOffer writes the offer to every bucket but the head (bucket.lua).
func (s *Store) copyOffer(ctx context.Context, l *layout, spec reservation.ItemSpec, mode string) error {
	calls := make([]call, 0, l.n()-1)
	for _, name := range l.names[1:] {
		calls = append(calls, call{keys: s.keys(name), args: []any{spec.PerUserLimit, spec.Hold.Milliseconds(),
			optionalMillis(spec.StartsAt), optionalMillis(spec.EndsAt), spec.Name, l.n(), mode}})
	}
	var occupied error
	for i, res := range s.runMany(ctx, s.bucket, calls) {
		rep, err := reply(res.val, res.err)
		if err != nil {
			return fmt.Errorf("redisstore: seed %s: %w", l.names[i+1], err)
		}
		switch rep.code() {
		case "created", "updated":
		case "buckets_immutable":
			return fmt.Errorf("%w: %s has %d", reservation.ErrBucketsImmutable, spec.SKU, rep.count())
		case "lost":
			return fmt.Errorf("redisstore: seed %s: bucket %s is lost: %w", spec.SKU, l.names[i+1], reservation.ErrRecovering)
		case "occupied":
			occupied = fmt.Errorf("redisstore: seed %s: bucket %s: %w", spec.SKU, l.names[i+1], errOccupied)
		default:
			return rep.unexpected("bucket")
		}
	}
	return occupied
}

// seedBuckets finishes a seed whose head script answered res. For an item
// with buckets: when the head alone could not cover a smaller total, it
// gathers every bucket's available units into the head and tries once more;
// then it copies the offer to the other buckets, spreads the head's
// available units over them, and reads the whole item.
func (s *Store) seedBuckets(ctx context.Context, spec reservation.ItemSpec, res result) (reservation.SeedResult, error) {
	rep, err := reply(res.val, res.err)
	if err == nil && rep.code() == "stock_below_committed" && rep.belowCommitted().buckets > 1 {
		l := s.layouts.set(spec.SKU, int(rep.belowCommitted().buckets))
		if _, err := s.gather(ctx, l, spec.SKU, reservation.MaxStock, false); err != nil {
			return reservation.SeedResult{}, err
		}
		res = s.runSettled(ctx, s.seed, []call{{keys: s.keys(spec.SKU), args: s.seedArgs(spec, randomToken()), ack: true}})[0]
		if rep, err := reply(res.val, res.err); err == nil && rep.code() == "stock_below_committed" {
			it, err := s.Item(ctx, spec.SKU)
			if err != nil {
				return reservation.SeedResult{}, err
			}
			return reservation.SeedResult{}, fmt.Errorf("%w: %d units are reserved and %d sold",
				reservation.ErrStockBelowCommitted, it.Reserved, it.Sold)
		}
	}
	out, err := parseSeed(spec.SKU, res.val, res.err)
	if err != nil || out.Item.Buckets <= 1 {
		return out, err
	}
	l := s.layouts.set(spec.SKU, out.Item.Buckets)
	spec.Buckets = l.n()
	// Only updates: a bucket missing now was lost since prepare looked.
	if err := s.copyOffer(ctx, l, spec, bucketUpdate); err != nil {
		return reservation.SeedResult{}, err
	}
	if err := s.spread(ctx, l, out.Item.Available); err != nil {
		return reservation.SeedResult{}, err
	}
	it, err := s.Item(ctx, spec.SKU)
	if err != nil {
		return reservation.SeedResult{}, err
	}
	out.Item = it
	return out, nil
}

func parseSeed(sku string, v any, err error) (reservation.SeedResult, error) {
	rep, err := reply(v, err)
	if err != nil {
		return reservation.SeedResult{}, fmt.Errorf("redisstore: seed %s: %w", sku, err)
	}
	switch rep.code() {
	case "created", "updated":
		item, err := rep.item(sku)
		return reservation.SeedResult{Item: item, Created: rep.code() == "created"}, err
	case "stock_below_committed":
		b := rep.belowCommitted()
		return reservation.SeedResult{}, fmt.Errorf("%w: %d units are reserved and %d sold",
			reservation.ErrStockBelowCommitted, b.reserved, b.sold)
	case "buckets_immutable":
		return reservation.SeedResult{}, fmt.Errorf("%w: %s has %d", reservation.ErrBucketsImmutable, sku, rep.count())
	case "lost":
		return reservation.SeedResult{}, fmt.Errorf("redisstore: seed %s: %w", sku, reservation.ErrRecovering)
	}
	return reservation.SeedResult{}, rep.unexpected("seed")
}

// Item settles the item's due holds and reads it.
func (s *Store) Item(ctx context.Context, sku string) (reservation.Item, error) {
	for round := 0; ; round++ {
		res := s.run(ctx, call{sc: s.expire, keys: s.keys(sku), args: []any{settleLimit}})
		rep, err := reply(res.val, res.err)
		if err != nil {
			return reservation.Item{}, fmt.Errorf("redisstore: item %s: %w", sku, err)
		}
		switch rep.code() {
		case "ok":
			b, err := rep.expire(sku)
			if err != nil {
				return reservation.Item{}, err
			}
			// More holds fell due than one call settles: go round again,
			// so the reader never sees units held by expired holds.
			if b.moreDue && round < maxSettleRounds {
				continue
			}
			if b.item.Buckets <= 1 {
				return b.item, nil
			}
			return s.aggregate(ctx, s.layouts.set(sku, b.item.Buckets), b.item)
		case "item_not_found":
			return reservation.Item{}, reservation.ErrItemNotFound
		}
		return reservation.Item{}, rep.unexpected("expire")
	}
}

// Reserve runs the reserve script in the user's bucket. When that bucket
// cannot serve the quantity and the item has others, it pulls units from
// them first: a buyer is refused only when no bucket had the units.
func (s *Store) Reserve(ctx context.Context, req reservation.ReserveRequest) (reservation.Reservation, bool, error) {
	idem := ""
	if req.IdempotencyKey != "" {
		// The length prefix keeps (user "a:b", key "c") apart from (user "a", key "b:c").
		idem = strconv.Itoa(len(req.UserID)) + ":" + req.UserID + ":" + req.IdempotencyKey
	}
	// A layout to learn, then pulls: units pulled into the bucket may go to
	// another buyer of it before this one's retry, but each round that
	// pulls anything moves real units, which are finite; the bound only
	// stops a pathological chase.
	const attempts = 16
	l := s.layouts.of(req.SKU)
	nextDue := int64(-1)
	relearned := false
	foundNone := false // the last pull found no units in the other buckets
	unsure := false    // a bucket asked could not answer for its units (see pull)
	for attempt := 0; ; attempt++ {
		bucket := l.home(req.SKU, req.UserID)
		id := bucketID(req.ID, req.SKU, bucket)
		res := s.runSettledOne(ctx, s.reserve, call{keys: s.keys(bucket),
			args: []any{id, req.UserID, req.Quantity, idem, settleLimit, l.n()}, ack: true, merge: true})
		rep, err := reply(res.val, res.err)
		if err != nil {
			return reservation.Reservation{}, false, fmt.Errorf("redisstore: reserve %s: %w", req.SKU, err)
		}
		switch {
		case rep.code() == "layout" && attempt < attempts:
			l = s.layouts.set(req.SKU, int(rep.count()))
			continue
		case rep.code() == "item_not_found" && l.n() > 1 && !relearned:
			// The cached count may name buckets of an item that Redis lost
			// and that was created again with another count: the head
			// knows (it answers "layout", or item_not_found for good).
			// Once: a bucket that is really gone stays item_not_found.
			relearned = true
			l = s.layouts.set(req.SKU, 1)
			continue
		case rep.code() == "sold_out" && l.n() > 1 && attempt < attempts && !foundNone:
			unsure = unsure || rep.soldOut().recount
			p, err := s.gather(ctx, l, bucket, int64(req.Quantity)-rep.soldOut().available, true)
			if err != nil {
				return reservation.Reservation{}, false, err
			}
			nextDue = minDue(nextDue, p.nextDue)
			unsure = unsure || p.unsure
			// Even when the others had nothing, another buyer of this
			// bucket may have pulled units into it meanwhile (more than it
			// needed): a refusal rests on asking this bucket once more.
			foundNone = p.moved == 0
			continue
		case rep.code() == "sold_out" && (unsure || rep.soldOut().recount):
			// Some of the item's units could not be asked for: a bucket is
			// lost, or rebuilt and being counted. Sold out is not known
			// yet, and must not be remembered as if it were.
			return reservation.Reservation{}, false, fmt.Errorf(
				"redisstore: reserve %s: a bucket is being rebuilt: %w", req.SKU, reservation.ErrRecovering)
		case rep.code() == "sold_out":
			so := rep.soldOut()
			so.nextDueIn = minDue(nextDue, so.nextDueIn)
			return reservation.Reservation{}, false, so.err()
		}
		return s.reserveReply(req, id, rep)
	}
}

func minDue(a, b int64) int64 {
	if a < 0 || (b >= 0 && b < a) {
		return b
	}
	return a
}

// reserveReply reads reserve.lua's answer to req, sent as the reservation id.
func (s *Store) reserveReply(req reservation.ReserveRequest, id string, rep scriptReply) (reservation.Reservation, bool, error) {
	switch rep.code() {
	case "created":
		r, err := rep.created(id, req.SKU, req.UserID, req.Quantity)
		return r, false, err
	case "replayed":
		r, err := rep.reservation(req.SKU)
		return r, true, err
	case "idempotency_key_reused":
		r, err := rep.reservation(req.SKU)
		if err != nil {
			return reservation.Reservation{}, false, err
		}
		return r, false, fmt.Errorf("%w: key first used for reservation %s of quantity %d",
			reservation.ErrIdempotencyKeyReused, r.ID, r.Quantity)
	case "item_not_found":
		return reservation.Reservation{}, false, reservation.ErrItemNotFound
	case "sale_not_active":
		return reservation.Reservation{}, false, reservation.ErrSaleNotActive
	case "limit_exceeded":
		l := rep.limitExceeded()
		return reservation.Reservation{}, false, fmt.Errorf("%w: user holds %d of at most %d units",
			reservation.ErrLimitExceeded, l.held, l.limit)
	case "sold_out":
		return reservation.Reservation{}, false, rep.soldOut().err()
	}
	return reservation.Reservation{}, false, rep.unexpected("reserve")
}

// Reservation reads one reservation.
func (s *Store) Reservation(ctx context.Context, id string) (reservation.Reservation, error) {
	return s.byID(ctx, s.get, "reservation", id)
}

// Confirm runs the confirm script.
func (s *Store) Confirm(ctx context.Context, id string) (reservation.Reservation, error) {
	return s.byID(ctx, s.confirm, "confirm", id)
}

// Cancel runs the cancel script.
func (s *Store) Cancel(ctx context.Context, id string) (reservation.Reservation, error) {
	return s.byID(ctx, s.cancel, "cancel", id)
}

// byID runs one of the scripts that take a reservation id and answer with
// the reservation or a refusal naming its state.
func (s *Store) byID(ctx context.Context, sc *goredis.Script, op, id string) (reservation.Reservation, error) {
	sku, ok := reservation.ParseID(id)
	if !ok {
		return reservation.Reservation{}, reservation.ErrReservationNotFound
	}
	res := s.run(ctx, call{sc: sc, keys: s.keys(idBucket(id)), args: []any{id}, ack: sc != s.get})
	rep, err := reply(res.val, res.err)
	if err != nil {
		return reservation.Reservation{}, fmt.Errorf("redisstore: %s %s: %w", op, id, err)
	}
	var refusal error
	switch rep.code() {
	case "ok", "confirmed", "cancelled":
	case "reservation_not_found":
		return reservation.Reservation{}, reservation.ErrReservationNotFound
	case "reservation_expired":
		refusal = reservation.ErrReservationExpired
	case "reservation_cancelled":
		refusal = reservation.ErrReservationCancelled
	case "reservation_confirmed":
		refusal = reservation.ErrReservationConfirmed
	default:
		return reservation.Reservation{}, rep.unexpected(op)
	}
	r, err := rep.reservation(sku)
	if err != nil {
		return reservation.Reservation{}, err
	}
	return r, refusal
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func optionalMillis(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}
