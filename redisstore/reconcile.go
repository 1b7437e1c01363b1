package redisstore

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/reservation"
)

// A bucket that Redis lost (a cluster master lost its data while the others
// kept theirs) is rebuilt from the record with its reservations, but the
// units it had available are gone with it: nothing else knows how many they
// were. reconcile finds them by counting: the item's total less what its
// buckets hold is what is missing, and it goes back to the head.
//
// The count must not miss a unit in transit: one taken from a bucket read
// later and given to a bucket read earlier would be counted nowhere, and
// crediting it would sell it twice. So every bucket is frozen first (take.lua
// refuses while frozen; buyers, cancels and expiries go on, as they never
// move units between buckets), the transfers in flight are ended (their
// units, unless they arrived, go to the head; see voidTransfers), and only
// then are the buckets read, each while still frozen and with nothing in
// flight. A freeze that ran out before its bucket was read only lets units
// move after that bucket was counted, which can count them twice (too little
// credit) but never not at all. The credit is applied only if the head is
// still as read (credit.lua), so a concurrent restock or a second instance
// reconciling at the same time cannot add the same units again.

// freezeFor bounds how long a count keeps units from moving between buckets
// (buyers of an empty bucket may be refused meanwhile).
const freezeFor = 3000 // ms

var errRecount = errors.New("the item changed during the count")

// reconcile credits the head with the units the item's buckets do not
// account for, and reports how many. A count that met another one, or a
// change, goes again after a pause of a few ms, so that counts of the same
// item by several instances take turns.
func (s *Store) reconcile(ctx context.Context, l *layout) (int64, error) {
	for attempt := 0; ; attempt++ {
		n, err := s.reconcileOnce(ctx, l)
		if !errors.Is(err, errRecount) || attempt == 20 {
			return n, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", err, ctx.Err())
		case <-time.After(time.Duration(5+mathrand.IntN(20)) * time.Millisecond):
		}
	}
}

func (s *Store) reconcileOnce(ctx context.Context, l *layout) (int64, error) {
	token := randomToken()
	defer s.freezeAll(context.WithoutCancel(ctx), l, unfreeze, token) // even when the count fails
	if _, err := s.freezeAll(ctx, l, freezeFor, token); err != nil {
		return 0, err
	}
	for _, name := range l.names {
		if err := s.voidTransfers(ctx, name); err != nil {
			return 0, err
		}
	}
	counts, err := s.freezeAll(ctx, l, 0, token)
	if err != nil {
		return 0, err
	}
	var held int64
	for i, c := range counts {
		if c.transfersOut > 0 || c.frozenFor <= 0 {
			return 0, fmt.Errorf("%w: bucket %s has %d transfers out, frozen for %d ms",
				errRecount, l.names[i], c.transfersOut, c.frozenFor)
		}
		held += c.stock
	}
	head := counts[0]
	missing := max(head.total-held, 0)
	if missing > 0 {
		rep, err := reply(s.run(ctx, call{sc: s.credit, keys: s.keys(l.names[0]),
			args: []any{head.stock, head.total, missing}}).Result())
		if err != nil {
			return 0, fmt.Errorf("redisstore: credit %s: %w", l.names[0], err)
		}
		switch rep.code() {
		case "credited":
		case "changed":
			return 0, errRecount
		default:
			return 0, rep.unexpected("credit")
		}
	}
	// The count is done: rebuilt buckets take transfers again.
	if _, err := s.freezeAll(ctx, l, countDone, token); err != nil {
		return missing, err
	}
	return missing, nil
}

// freeze.lua's ARGV for "unfreeze" and "the count is done" (see the script).
const (
	unfreeze  = -1
	countDone = -2
)

// voidTransfers ends every transfer recorded in bucket without delivering
// it: the receiver is marked as having received it (so a give that comes
// later, from a mover still alive, adds nothing) and the record goes. Units
// that arrived are in the receiver; units that did not, or that arrived in
// a bucket Redis lost since (its receipt lost with it), are in no bucket,
// and the count gives them to the head. Delivering them instead would add
// units a second time to a receiver rebuilt after they had arrived.
func (s *Store) voidTransfers(ctx context.Context, bucket string) error {
	xs, err := s.transfersOut(ctx, bucket)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if err := s.client.ZAddNX(ctx, s.key(x.to, "xin"), goredis.Z{Score: float64(x.at), Member: x.id}).Err(); err != nil {
			return fmt.Errorf("redisstore: void transfer %s: %w", x.id, translate(err))
		}
		if err := s.client.HDel(ctx, s.key(bucket, "xout"), x.id).Err(); err != nil {
			return fmt.Errorf("redisstore: void transfer %s: %w", x.id, translate(err))
		}
	}
	return nil
}

// freezeAll runs freeze.lua on every bucket of l for the count token with
// ARGV ms (see the script). A bucket another count holds is errRecount.
func (s *Store) freezeAll(ctx context.Context, l *layout, ms int64, token string) ([]freezeReply, error) {
	calls := make([]call, l.n())
	for i, name := range l.names {
		calls[i] = call{keys: s.keys(name), args: []any{ms, token}}
	}
	out := make([]freezeReply, l.n())
	for i, res := range s.runMany(ctx, s.freeze, calls) {
		rep, err := reply(res.val, res.err)
		if err != nil {
			return nil, fmt.Errorf("redisstore: freeze %s: %w", l.names[i], err)
		}
		switch rep.code() {
		case "ok":
		case "busy":
			return nil, fmt.Errorf("%w: bucket %s is frozen by another count", errRecount, l.names[i])
		default:
			return nil, fmt.Errorf("redisstore: freeze %s: %w", l.names[i], reservation.ErrRecovering)
		}
		out[i] = rep.frozen()
	}
	return out, nil
}
