package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flashsale/flashsale/redisstore"
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

// TestCharge: charge.lua, the settler's call. A charge is taken as of when
// its requests came, whatever the budget holds, and written even once the
// budget is full again, so a later charge for an earlier moment adds to it;
// a refund gives back leased requests, never past full, and creates no key.
func TestCharge(t *testing.T) {
	buyer := func(subject string) reservation.RateKey { // 5/s burst 10: an interval of 200ms
		return reservation.RateKey{Policy: "user", Subject: subject, Limit: reservation.Limit{Rate: 5, Per: time.Second, Burst: 10}}
	}
	addr := reservation.RateKey{Policy: "ip", Subject: "192.0.2.9", Limit: reservation.Limit{Rate: 1, Per: time.Second, Burst: 4}}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	type want struct {
		remaining int
		reset     time.Duration
	}
	tests := []struct {
		name    string
		takes   []reservation.RateKey // taken through ratelimit.lua first, one request each
		ops     []redisstore.ChargeOp
		want    []want
		absent  []reservation.RateKey // keys that must not exist after
		present []reservation.RateKey
	}{
		{name: "a one-off buyer is charged as of when the request came",
			ops:  []redisstore.ChargeOp{{Key: buyer("a"), Charge: 1, Age: ms(50)}},
			want: []want{{9, ms(150)}}, present: []reservation.RateKey{buyer("a")}},
		{name: "a charge already full again is written, and a charge for an earlier moment adds to it",
			ops: []redisstore.ChargeOp{{Key: buyer("a"), Charge: 1, Age: ms(300)}, {Key: buyer("a"), Charge: 1, Age: ms(400)}},
			// The first leaves the budget full (a TAT is never kept in the
			// past); the second adds to it, so a client spread over the
			// instances pays for every request.
			want: []want{{10, 0}, {9, ms(200)}}, present: []reservation.RateKey{buyer("a")}},
		{name: "charges add to what the budget holds",
			takes: []reservation.RateKey{buyer("a"), buyer("a"), buyer("a")},
			ops:   []redisstore.ChargeOp{{Key: buyer("a"), Charge: 2}},
			want:  []want{{5, ms(1000)}}},
		{name: "a refund gives back leased requests, never past full",
			takes: []reservation.RateKey{addr, addr, addr},
			ops:   []redisstore.ChargeOp{{Key: addr, Refund: 2}},
			want:  []want{{3, ms(1000)}}},
		{name: "a refund larger than what was taken leaves the budget full",
			takes: []reservation.RateKey{addr},
			ops:   []redisstore.ChargeOp{{Key: addr, Refund: 3}},
			want:  []want{{4, 0}}},
		{name: "a refund to an absent budget writes nothing",
			ops:  []redisstore.ChargeOp{{Key: addr, Refund: 3}},
			want: []want{{4, 0}}, absent: []reservation.RateKey{addr}},
		{name: "a charge and a refund of one budget in one call",
			takes: []reservation.RateKey{addr, addr, addr},
			ops:   []redisstore.ChargeOp{{Key: addr, Charge: 1, Refund: 2}},
			want:  []want{{2, ms(2000)}}},
		{name: "budgets of two limits settle together",
			ops:  []redisstore.ChargeOp{{Key: buyer("a"), Charge: 1}, {Key: addr, Charge: 2}, {Key: buyer("b"), Charge: 3, Age: ms(100)}},
			want: []want{{9, ms(200)}, {2, ms(2000)}, {7, ms(500)}}},
	}
	// miniredis, whose clock stands still; TestCluster's rate limits run
	// the same calls on real Redis.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMiniStore(t)
			ctx := context.Background()
			for _, k := range tt.takes {
				if _, err := s.Take(ctx, []reservation.RateKey{k}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Charge(ctx, tt.ops)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range tt.want {
				if got[i].Remaining != w.remaining || got[i].Reset != w.reset {
					t.Errorf("op %d: remaining %d, reset %v; want %d, %v", i, got[i].Remaining, got[i].Reset, w.remaining, w.reset)
				}
			}
			for _, k := range tt.absent {
				if s.mr.Exists(s.prefix + ":rl:{" + k.Policy + ":" + k.Subject + "}") {
					t.Errorf("budget %s:%s exists", k.Policy, k.Subject)
				}
			}
			for _, k := range tt.present {
				name := s.prefix + ":rl:{" + k.Policy + ":" + k.Subject + "}"
				if ttl := s.mr.TTL(name); ttl < time.Second {
					t.Errorf("budget %s: TTL %v, want at least the grace", name, ttl)
				}
			}
		})
	}
}
