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

var rateLimitScript = goredis.NewScript(string(luascripts.RateLimit()))

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
	res, err := s.spend(ctx, true, ops)
	if err != nil {
		return nil, err
	}
	return res.states(keys)
}

// budgetOp is one budget's part of a ratelimit.lua call: besides the
// request ("take"), what an instance admitted without asking (charge, age
// ago) and leased requests it gives back (refund), and how many it would
// lease ahead.
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

// settleChunk bounds the budgets of one settling call on a single Redis.
const settleChunk = 128

// spend runs ratelimit.lua over ops: take asks every budget for one
// request, all or nothing; without it only charges and refunds are settled.
// On one Redis the ops share a call (settling: calls of settleChunk); on a
// cluster each op is its own call, all in one pipeline.
func (s *Store) spend(ctx context.Context, take bool, ops []budgetOp) (spent, error) {
	var groups [][]budgetOp
	switch _, cluster := s.client.(*goredis.ClusterClient); {
	case cluster:
		for i := range ops {
			groups = append(groups, ops[i:i+1])
		}
	case take:
		groups = [][]budgetOp{ops}
	default:
		for len(ops) > 0 {
			n := min(len(ops), settleChunk)
			groups, ops = append(groups, ops[:n]), ops[n:]
		}
	}
	calls := make([]call, len(groups))
	for i, g := range groups {
		calls[i] = s.rateCall(take, g)
	}
	var results []result
	if len(calls) == 1 {
		results = []result{s.run(ctx, calls[0])}
	} else {
		results = pipelined(ctx, s.client, calls, ackPolicy{})
	}
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

func (s *Store) rateCall(take bool, ops []budgetOp) call {
	mode := "settle"
	if take {
		mode = "take"
	}
	c := call{sc: rateLimitScript, keys: make([]string, len(ops)), args: make([]any, 0, 2+6*len(ops))}
	c.args = append(c.args, mode, rateGrace.Milliseconds())
	for i, op := range ops {
		c.keys[i] = s.rateKey(op.key)
		c.args = append(c.args, op.key.Limit.Interval().Microseconds(), op.key.Limit.Burst,
			op.charge, op.age.Microseconds(), op.refund, op.lease)
	}
	return c
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
