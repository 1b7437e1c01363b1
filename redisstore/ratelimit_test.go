package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flashsale/flashsale/reservation"
)

// TestRateLimit: ratelimit.lua's GCRA on the store's clock. A budget of
// rate r and burst b allows b requests at once, then one per 1/r; a refusal
// says when to come back and spends nothing, in any budget of the request;
// a budget's key vanishes once it is full again.
func TestRateLimit(t *testing.T) {
	perSec := func(rate, burst int) reservation.Limit {
		return reservation.Limit{Rate: rate, Per: time.Second, Burst: burst}
	}
	user := func(l reservation.Limit) reservation.RateKey {
		return reservation.RateKey{Policy: "user", Subject: "u1", Limit: l}
	}
	ip := func(l reservation.Limit) reservation.RateKey {
		return reservation.RateKey{Policy: "ip", Subject: "192.0.2.1", Limit: l}
	}
	type step struct {
		after      time.Duration // clock moves this much first
		keys       []reservation.RateKey
		limited    bool
		retry      time.Duration // when limited
		remaining  []int         // per key
		wantResets []time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "burst then refused, then one per interval", steps: []step{
			{keys: []reservation.RateKey{user(perSec(2, 3))}, remaining: []int{2}, wantResets: []time.Duration{500 * time.Millisecond}},
			{keys: []reservation.RateKey{user(perSec(2, 3))}, remaining: []int{1}, wantResets: []time.Duration{time.Second}},
			{keys: []reservation.RateKey{user(perSec(2, 3))}, remaining: []int{0}, wantResets: []time.Duration{1500 * time.Millisecond}},
			{keys: []reservation.RateKey{user(perSec(2, 3))}, limited: true, retry: 500 * time.Millisecond, remaining: []int{0},
				wantResets: []time.Duration{1500 * time.Millisecond}},
			{after: 499 * time.Millisecond, keys: []reservation.RateKey{user(perSec(2, 3))}, limited: true, retry: time.Millisecond,
				remaining: []int{0}, wantResets: []time.Duration{1001 * time.Millisecond}},
			{after: time.Millisecond, keys: []reservation.RateKey{user(perSec(2, 3))}, remaining: []int{0},
				wantResets: []time.Duration{1500 * time.Millisecond}},
		}},
		{name: "a full budget comes back after its window", steps: []step{
			{keys: []reservation.RateKey{user(perSec(10, 1))}, remaining: []int{0}, wantResets: []time.Duration{100 * time.Millisecond}},
			{keys: []reservation.RateKey{user(perSec(10, 1))}, limited: true, retry: 100 * time.Millisecond, remaining: []int{0},
				wantResets: []time.Duration{100 * time.Millisecond}},
			{after: time.Hour, keys: []reservation.RateKey{user(perSec(10, 1))}, remaining: []int{0},
				wantResets: []time.Duration{100 * time.Millisecond}},
		}},
		{name: "all or nothing: a spent budget spends none of the others", steps: []step{
			{keys: []reservation.RateKey{user(perSec(1, 5)), ip(perSec(1, 1))}, remaining: []int{4, 0},
				wantResets: []time.Duration{time.Second, time.Second}},
			{keys: []reservation.RateKey{user(perSec(1, 5)), ip(perSec(1, 1))}, limited: true, retry: time.Second,
				remaining: []int{4, 0}, wantResets: []time.Duration{time.Second, time.Second}},
			{keys: []reservation.RateKey{user(perSec(1, 5))}, remaining: []int{3},
				wantResets: []time.Duration{2 * time.Second}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMiniStore(t)
			for i, st := range tt.steps {
				if st.after > 0 {
					s.advance(t, st.after)
				}
				states, err := s.Take(context.Background(), st.keys)
				var limited *reservation.RateLimitedError
				switch {
				case st.limited && !errors.As(err, &limited):
					t.Fatalf("step %d: %v, want limited", i, err)
				case st.limited && limited.RetryAfter != st.retry:
					t.Errorf("step %d: retry after %v, want %v", i, limited.RetryAfter, st.retry)
				case !st.limited && err != nil:
					t.Fatalf("step %d: %v, want allowed", i, err)
				}
				if st.limited && !errors.Is(err, reservation.ErrRateLimited) {
					t.Errorf("step %d: %v is not ErrRateLimited", i, err)
				}
				for j, want := range st.remaining {
					if states[j].Remaining != want || states[j].Reset != st.wantResets[j] || states[j].Policy != st.keys[j].Policy {
						t.Errorf("step %d budget %d: %+v, want remaining %d, reset %v", i, j, states[j], want, st.wantResets[j])
					}
				}
			}
		})
	}
}

// TestRateLimitKeysExpire: a budget costs memory only while it is not
// full: its key expires a grace (1s) after the budget would be full again.
func TestRateLimitKeysExpire(t *testing.T) {
	s := newMiniStore(t)
	key := reservation.RateKey{Policy: "ip", Subject: "198.51.100.7", Limit: reservation.Limit{Rate: 1, Per: time.Second, Burst: 2}}
	for range 2 {
		if _, err := s.Take(context.Background(), []reservation.RateKey{key}); err != nil {
			t.Fatal(err)
		}
	}
	name := s.prefix + ":rl:{ip:198.51.100.7}"
	if ttl := s.mr.TTL(name); ttl != 3*time.Second {
		t.Errorf("TTL of %s = %v, want 3s (two intervals and the grace)", name, ttl)
	}
	s.advance(t, 3*time.Second)
	if s.mr.Exists(name) {
		t.Errorf("%s still exists once its budget is full", name)
	}
}
