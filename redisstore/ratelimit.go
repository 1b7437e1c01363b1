package redisstore

import (
	"context"
	"fmt"
	"sync"
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
// live on different shards: each is then its own call, sent concurrently
// (so both cost one round trip), and a request one budget refuses may still
// have been counted by another, which only ever errs towards refusing.
func (s *Store) Take(ctx context.Context, keys []reservation.RateKey) ([]reservation.RateState, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if _, cluster := s.client.(*goredis.ClusterClient); !cluster || len(keys) == 1 {
		return s.takeCall(ctx, keys)
	}
	states := make([]reservation.RateState, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			var st []reservation.RateState
			st, errs[i] = s.takeCall(ctx, keys[i:i+1])
			if len(st) == 1 {
				states[i] = st[0]
			}
		})
	}
	wg.Wait()
	var limited *reservation.RateLimitedError
	for _, err := range errs {
		switch e := err.(type) {
		case nil:
		case *reservation.RateLimitedError:
			if limited == nil || e.RetryAfter > limited.RetryAfter {
				limited = e
			}
		default:
			return nil, err
		}
	}
	if limited != nil {
		return states, &reservation.RateLimitedError{RetryAfter: limited.RetryAfter, States: states}
	}
	return states, nil
}

func (s *Store) takeCall(ctx context.Context, keys []reservation.RateKey) ([]reservation.RateState, error) {
	c := call{sc: rateLimitScript, keys: make([]string, len(keys)), args: make([]any, 0, 2*len(keys))}
	for i, k := range keys {
		c.keys[i] = s.rateKey(k)
		c.args = append(c.args, k.Limit.Interval().Microseconds(), k.Limit.Burst)
	}
	rep, err := reply(s.run(ctx, c).Result())
	if err != nil {
		return nil, err
	}
	return rep.rate(keys)
}

// rate decodes ratelimit.lua's reply for keys.
func (r scriptReply) rate(keys []reservation.RateKey) ([]reservation.RateState, error) {
	if len(r) != rateFirst+2*len(keys) {
		return nil, fmt.Errorf("ratelimit: reply of %d values for %d budgets", len(r), len(keys))
	}
	states := make([]reservation.RateState, len(keys))
	for i, k := range keys {
		states[i] = reservation.RateState{
			Policy:    k.Policy,
			Limit:     k.Limit,
			Remaining: int(r.int(rateFirst + 2*i)),
			Reset:     time.Duration(r.int(rateFirst+2*i+1)) * time.Microsecond,
		}
	}
	switch r.code() {
	case "allowed":
		return states, nil
	case "limited":
		return states, &reservation.RateLimitedError{RetryAfter: time.Duration(r.int(rateRetry)) * time.Microsecond, States: states}
	}
	return nil, fmt.Errorf("ratelimit: unexpected reply %v", []any(r))
}
