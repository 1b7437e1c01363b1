// Package redisstore keeps items and reservations in Redis and makes every
// check-and-change of an item one Lua script, so no interleaving of buyers
// can oversell. It implements reservation.Store.
package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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
	client  goredis.UniversalClient
	prefix  string
	reserve *goredis.Script
	confirm *goredis.Script
	cancel  *goredis.Script
	expire  *goredis.Script
	seed    *goredis.Script
	get     *goredis.Script
	restore *goredis.Script
	co      *coalescer // nil: every call on its own connection
}

var _ reservation.Store = (*Store)(nil)

// New returns a Store whose keys start with prefix. It loads every script
// now, so a script that does not compile fails the start, not the first buyer.
func New(ctx context.Context, client goredis.UniversalClient, prefix string, opts ...Option) (*Store, error) {
	if prefix == "" || strings.ContainsAny(prefix, "{} ") {
		return nil, fmt.Errorf("redisstore: key prefix %q must be non-empty without braces or spaces", prefix)
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
	}
	s.co = newCoalescer(client, DefaultPipelines, DefaultPipelineBatch)
	for _, opt := range opts {
		opt(s)
	}
	if err := s.LoadScripts(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Defaults of WithPipelines.
const (
	DefaultPipelines     = 4
	DefaultPipelineBatch = 128
)

// Option configures a Store.
type Option func(*Store)

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
		for _, sc := range []*goredis.Script{s.reserve, s.confirm, s.cancel, s.expire, s.seed, s.get, s.restore, ackScript, pruneScript} {
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

// keys returns the item's keys in the order every script expects (see
// luascripts/lib.lua). The SKU is the hash tag, so they share one slot.
func (s *Store) keys(sku string) []string {
	return s.keysOf(sku, "item", "holds", "users", "res", "idem", "outbox")
}

// ScriptKeys are the item's keys in the order every item script takes them,
// for tools that run a script themselves (the benchmark's redis-benchmark
// row).
func (s *Store) ScriptKeys(sku string) []string { return s.keys(sku) }

// outboxKeys returns the keys ack.lua expects: outbox, tries, dead letters.
func (s *Store) outboxKeys(sku string) []string { return s.keysOf(sku, "outbox", "tries", "dead") }

// key is one of the item's keys by name ("item", "outbox", ...).
func (s *Store) key(sku, name string) string { return s.prefix + ":{" + sku + "}:" + name }

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

// SeedMany pipelines the specs; each is one script, atomic on its own.
func (s *Store) SeedMany(ctx context.Context, specs []reservation.ItemSpec) ([]reservation.SeedResult, []error) {
	results := make([]reservation.SeedResult, len(specs))
	errs := make([]error, len(specs))
	const chunk = 500
	for lo := 0; lo < len(specs); lo += chunk {
		hi := min(lo+chunk, len(specs))
		part := specs[lo:hi]
		// The catalogue is written first: an entry without an item is
		// harmless to the sweeper, an item missing from it would never be swept.
		members := make([]any, len(part))
		for i, spec := range part {
			members[i] = spec.SKU
		}
		if err := s.client.SAdd(ctx, s.catalogKey(), members...).Err(); err != nil {
			for i := range part {
				errs[lo+i] = fmt.Errorf("redisstore: seed %s: %w", part[i].SKU, translate(err))
			}
			continue
		}
		calls := make([]call, len(part))
		for i, spec := range part {
			calls[i] = call{keys: s.keys(spec.SKU), args: []any{
				spec.Stock, spec.PerUserLimit, spec.Hold.Milliseconds(),
				optionalMillis(spec.StartsAt), optionalMillis(spec.EndsAt), spec.Name, settleLimit,
				flag(spec.Recorded),
			}}
		}
		for i, res := range s.runSettled(ctx, s.seed, calls) {
			results[lo+i], errs[lo+i] = parseSeed(part[i].SKU, res.val, res.err)
		}
	}
	return results, errs
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
		return reservation.SeedResult{}, fmt.Errorf("%w: %d units are reserved and %d sold",
			reservation.ErrStockBelowCommitted, rep.int(1), rep.int(2))
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
			// more_due: more holds fell due than one call settles. Go round
			// again, so the reader never sees units held by expired holds.
			if rep.int(14) == 1 && round < maxSettleRounds {
				continue
			}
			return rep.item(sku)
		case "item_not_found":
			return reservation.Item{}, reservation.ErrItemNotFound
		}
		return reservation.Item{}, rep.unexpected("expire")
	}
}

// Reserve runs the reserve script.
func (s *Store) Reserve(ctx context.Context, req reservation.ReserveRequest) (reservation.Reservation, bool, error) {
	idem := ""
	if req.IdempotencyKey != "" {
		// The length prefix keeps (user "a:b", key "c") apart from (user "a", key "b:c").
		idem = strconv.Itoa(len(req.UserID)) + ":" + req.UserID + ":" + req.IdempotencyKey
	}
	res := s.runSettled(ctx, s.reserve, []call{{keys: s.keys(req.SKU),
		args: []any{req.ID, req.UserID, req.Quantity, idem, settleLimit}}})[0]
	rep, err := reply(res.val, res.err)
	if err != nil {
		return reservation.Reservation{}, false, fmt.Errorf("redisstore: reserve %s: %w", req.SKU, err)
	}
	switch rep.code() {
	case "created", "replayed":
		r, err := rep.reservation(req.SKU)
		return r, rep.code() == "replayed", err
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
		return reservation.Reservation{}, false, fmt.Errorf("%w: user holds %d of at most %d units",
			reservation.ErrLimitExceeded, rep.int(1), rep.int(2))
	case "sold_out":
		next := time.Duration(-1)
		if due := rep.int(2); due >= 0 && len(rep) > 2 {
			next = time.Duration(due) * time.Millisecond
		}
		return reservation.Reservation{}, false, &reservation.SoldOutError{Available: rep.int(1), NextExpiry: next}
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
	res := s.run(ctx, call{sc: sc, keys: s.keys(sku), args: []any{id}})
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

// SweepDue walks the catalogue and settles due holds, pipelining one
// expire script per item.
func (s *Store) SweepDue(ctx context.Context, batch int) (int, error) {
	expired := 0
	var cursor uint64
	for {
		skus, next, err := s.client.SScan(ctx, s.catalogKey(), cursor, "", 500).Result()
		if err != nil {
			return expired, fmt.Errorf("redisstore: sweep: %w", translate(err))
		}
		// Items with more due holds than one batch go round again.
		for round := 0; len(skus) > 0 && round < 1000; round++ {
			calls := make([]call, len(skus))
			for i, sku := range skus {
				calls[i] = call{keys: s.keys(sku), args: []any{batch}}
			}
			var again []string
			for i, res := range s.runMany(ctx, s.expire, calls) {
				rep, err := reply(res.val, res.err)
				if err != nil {
					return expired, fmt.Errorf("redisstore: sweep %s: %w", skus[i], err)
				}
				if rep.code() != "ok" {
					continue // seeded into the catalogue but never created
				}
				expired += int(rep.int(13))
				if rep.int(14) == 1 {
					again = append(again, skus[i])
				}
			}
			skus = again
		}
		cursor = next
		if cursor == 0 {
			return expired, nil
		}
	}
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
