package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/reservation"
)

var (
	rateLimitScript = goredis.NewScript(string(luascripts.RateLimit()))
	chargeScript    = goredis.NewScript(string(luascripts.Charge()))
)

var _ reservation.RateLimiter = (*Store)(nil)

// rateKey is a budget's key. Its subject is the hash tag, so on a cluster
// budgets spread over the shards rather than crowding one.
func (s *Store) rateKey(k reservation.RateKey) string {
	return s.prefix + ":rl:{" + k.Policy + ":" + k.Subject + "}"
}

// Take spends one request from every budget of keys (ratelimit.lua), in one
// script call and so all or nothing on one Redis. On a cluster the budgets
// live on different shards: each is then its own call, sent together in one
// pipeline (so both cost one round trip), and a request one budget refuses
// may still have been counted by another, which only ever errs towards
// refusing. Every call asks Redis; LocalLimiter asks only when it must.
func (s *Store) Take(ctx context.Context, keys []reservation.RateKey) ([]reservation.RateState, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ops := make([]budgetOp, len(keys))
	for i, k := range keys {
		ops[i].key = k
	}
	res, err := s.spend(ctx, ops)
	if err != nil {
		return nil, err
	}
	return res.states(keys)
}

// budgetOp is one budget's part of a ratelimit.lua or charge.lua call:
// what an instance admitted without asking (charge, age ago) and leased
// requests it gives back (refund), and, with a request (ratelimit.lua), how
// many it would lease ahead.
type budgetOp struct {
	key    reservation.RateKey
	charge int
	age    time.Duration
	refund int
	lease  int
}

// spent is what ratelimit.lua answered for a request's budgets.
type spent struct {
	limited bool
	retry   time.Duration // limited: until every budget allows one request again
	budgets []budgetState // one per op
}

// budgetState is one budget after a call.
type budgetState struct {
	remaining int           // requests it allows at once
	reset     time.Duration // until it is full again
	leased    int           // requests granted beyond the one, already taken
}

// states are res's budgets as the rate-limit headers report them, with a
// *reservation.RateLimitedError when limited.
func (res spent) states(keys []reservation.RateKey) ([]reservation.RateState, error) {
	states := make([]reservation.RateState, len(keys))
	for i, k := range keys {
		states[i] = reservation.RateState{Policy: k.Policy, Limit: k.Limit,
			Remaining: res.budgets[i].remaining, Reset: res.budgets[i].reset}
	}
	if res.limited {
		return states, &reservation.RateLimitedError{RetryAfter: res.retry, States: states}
	}
	return states, nil
}

// rateGrace is how long a budget's key outlives its TAT: an instance charges
// a request it admitted on its own a few milliseconds later (later still
// while Redis fails it), as of when it came, and the charge must find the
// TAT it adds to.
const rateGrace = time.Second

// settleChunk bounds the budgets of one charge.lua call on a single Redis.
const settleChunk = 128

// spend runs ratelimit.lua over ops: every budget gives one request, all or
// nothing, and takes what ops carry. On one Redis the ops share a call; on a
// cluster each op is its own call, all in one pipeline.
func (s *Store) spend(ctx context.Context, ops []budgetOp) (spent, error) {
	groups := [][]budgetOp{ops}
	if _, cluster := s.client.(*goredis.ClusterClient); cluster {
		groups = groups[:0]
		for i := range ops {
			groups = append(groups, ops[i:i+1])
		}
	}
	calls := make([]call, len(groups))
	for i, g := range groups {
		calls[i] = s.rateCall(g)
	}
	results := s.runMany(ctx, rateLimitScript, calls)
	var out spent
	var errs []error
	for i, res := range results {
		rep, err := reply(res.val, res.err)
		if err == nil {
			err = rep.spent(&out, len(groups[i]))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return spent{}, fmt.Errorf("redisstore: rate limit: %w", err)
	}
	return out, nil
}

func (s *Store) rateCall(ops []budgetOp) call {
	c := call{sc: rateLimitScript, keys: make([]string, len(ops)), args: make([]any, 0, 1+6*len(ops))}
	c.args = append(c.args, rateGrace.Milliseconds())
	for i, op := range ops {
		c.keys[i] = s.rateKey(op.key)
		c.args = append(c.args, op.key.Limit.Interval().Microseconds(), op.key.Limit.Burst,
			op.charge, op.age.Microseconds(), op.refund, op.lease)
	}
	return c
}

// charge settles ops with charge.lua: the requests this instance admitted
// without asking and the leased ones it gives back, never refused. It
// returns each op's budget after it. A call carries one limit, so ops of
// one limit share calls (of settleChunk entries at most); on a cluster each
// op is its own call, all in one pipeline.
func (s *Store) charge(ctx context.Context, ops []budgetOp) ([]budgetState, error) {
	_, cluster := s.client.(*goredis.ClusterClient)
	var calls []call
	var entries [][]int             // the op of each entry of each call
	open := map[time.Duration]int{} // a limit's call with room, by interval
	for i, op := range ops {
		iv := op.key.Limit.Interval()
		at, ok := open[iv]
		if !ok || cluster || len(entries[at])+2 > settleChunk {
			at = len(calls)
			calls = append(calls, call{args: []any{rateGrace.Milliseconds(), iv.Microseconds()}})
			entries = append(entries, nil)
			open[iv] = at
		}
		c := &calls[at]
		// A charge first, then a refund: the refund gives back leased
		// requests, which the charge never took from.
		if op.charge > 0 {
			c.keys = append(c.keys, s.rateKey(op.key))
			c.args = append(c.args, op.charge, op.age.Microseconds())
			entries[at] = append(entries[at], i)
		}
		if op.refund > 0 {
			c.keys = append(c.keys, s.rateKey(op.key))
			c.args = append(c.args, -op.refund, 0)
			entries[at] = append(entries[at], i)
		}
	}
	var results []result
	if len(calls) > 0 {
		results = s.runMany(ctx, chargeScript, calls)
	}
	out := make([]budgetState, len(ops))
	var errs []error
	for i, res := range results {
		rep, err := reply(res.val, res.err)
		switch {
		case err != nil:
		case rep.code() != "charged" || len(rep) != 1+len(entries[i]):
			err = fmt.Errorf("reply %v to %d budgets", []any(rep), len(entries[i]))
		default:
			for j, op := range entries[i] {
				// An op's entries follow each other in its call: its last is its state.
				out[op] = budgetAfter(ops[op].key.Limit, time.Duration(rep.int(1+j))*time.Microsecond)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("redisstore: rate limit charge: %w", err)
	}
	return out, nil
}

// budgetAfter is a budget of limit l that is full again in reset: it allows
// as many requests at once as fit in its burst's room beyond reset.
func budgetAfter(l reservation.Limit, reset time.Duration) budgetState {
	iv := l.Interval()
	return budgetState{remaining: max(int((iv*time.Duration(l.Burst)-reset)/iv), 0), reset: reset}
}

// spent appends the reply of a call over n budgets to out.
func (r scriptReply) spent(out *spent, n int) error {
	if len(r) != rateFirst+rateEach*n {
		return fmt.Errorf("reply of %d values for %d budgets", len(r), n)
	}
	switch r.code() {
	case "allowed":
	case "limited":
		out.limited = true
		out.retry = max(out.retry, time.Duration(r.int(rateRetry))*time.Microsecond)
	default:
		return fmt.Errorf("unexpected reply %v", []any(r))
	}
	for i := range n {
		at := rateFirst + rateEach*i
		out.budgets = append(out.budgets, budgetState{remaining: int(r.int(at)),
			reset: time.Duration(r.int(at+1)) * time.Microsecond, leased: int(r.int(at + 2))})
	}
	return nil
}
