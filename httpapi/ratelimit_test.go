package httpapi_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// limitedEnv is a server with rate limits on, its limiter the store on a
// miniredis whose clock stands still, and a sold-out memory of 100ms.
func limitedEnv(t *testing.T, limits httpapi.RateLimits) (*env, *miniredis.Miniredis) {
	t.Helper()
	m, store := miniStore(t, "ratetest", redisstore.WithPipelines(0, 0))
	local := store.LocalLimiter()
	if limits.Limiter == nil {
		limits.Limiter = local
	}
	srv := httpapi.New(reservation.NewService(store, nil, reservation.WithSoldOutMemory(100*time.Millisecond)), httpapi.Config{
		AdminTokens: []string{adminToken}, ServiceTokens: serviceTokens, Log: quietLog(), Limits: limits,
	})
	return &env{m: m, srv: srv, app: srv.App(), store: store, limiter: local}, m
}

func perSec(rate, burst int) reservation.Limit {
	return reservation.Limit{Rate: rate, Per: time.Second, Burst: burst}
}

// TestRateLimited: over a budget, 429 rate_limited with Retry-After and the
// draft's fields, and nothing changed; the budgets are per user and per
// address; a peer's X-Forwarded-For counts only from a trusted proxy.
func TestRateLimited(t *testing.T) {
	type req struct {
		user, xff string
		status    int
	}
	tests := []struct {
		name   string
		limits httpapi.RateLimits
		reqs   []req
		policy string // RateLimit-Policy of the last answer
	}{
		{name: "per user: each user its own budget",
			limits: httpapi.RateLimits{PerUser: perSec(1, 2)},
			reqs:   []req{{"u1", "", 201}, {"u1", "", 201}, {"u1", "", 429}, {"u2", "", 201}, {"u1", "", 429}},
			policy: `"user";q=2;w=2`},
		{name: "per address: one budget however many users",
			limits: httpapi.RateLimits{PerIP: perSec(1, 2)},
			reqs:   []req{{"u1", "", 201}, {"u2", "", 201}, {"u3", "", 429}},
			policy: `"ip";q=2;w=2`},
		{name: "both: the address's budget refuses a fresh user",
			limits: httpapi.RateLimits{PerUser: perSec(10, 10), PerIP: perSec(1, 1)},
			reqs:   []req{{"u1", "", 201}, {"u2", "", 429}},
			policy: `"user";q=10;w=1, "ip";q=1;w=1`},
		{name: "X-Forwarded-For from an untrusted peer is ignored",
			limits: httpapi.RateLimits{PerIP: perSec(1, 1)},
			reqs:   []req{{"u1", "198.51.100.1", 201}, {"u2", "198.51.100.2", 429}},
			policy: `"ip";q=1;w=1`},
		{name: "X-Forwarded-For from a trusted proxy names the client",
			limits: httpapi.RateLimits{PerIP: perSec(1, 1), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}},
			reqs:   []req{{"u1", "198.51.100.1", 201}, {"u2", "198.51.100.2", 201}, {"u3", "203.0.113.9, 198.51.100.1", 429}},
			policy: `"ip";q=1;w=1`},
		{name: "a forged hop left of an untrusted one is not believed",
			limits: httpapi.RateLimits{PerIP: perSec(1, 1), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}},
			reqs:   []req{{"u1", "10.9.9.9, 198.51.100.1", 201}, {"u2", "10.9.9.8, 198.51.100.1", 429}},
			policy: `"ip";q=1;w=1`},
		{name: "IPv6 counts by /64",
			limits: httpapi.RateLimits{PerIP: perSec(1, 1), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8")}},
			reqs:   []req{{"u1", "2001:db8:1:2::1", 201}, {"u2", "2001:db8:1:2::ffff", 429}, {"u3", "2001:db8:1:3::1", 201}},
			policy: `"ip";q=1;w=1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := limitedEnv(t, tt.limits)
			wantOK(t, do(t, e.app, "PUT", "/admin/v1/items/mug", `{"stock":100,"per_user_limit":5}`, admin), 201)
			var last response
			for i, r := range tt.reqs {
				hd := h{}
				if r.xff != "" {
					hd["X-Forwarded-For"] = r.xff
				}
				before := do(t, e.app, "GET", "/admin/v1/items/mug", "", admin)
				last = do(t, e.app, "POST", "/v1/items/mug/reservations", fmt.Sprintf(`{"user_id":%q,"quantity":1}`, r.user), hd)
				if last.status != r.status {
					t.Fatalf("request %d (%s): %d %s, want %d", i, r.user, last.status, last.raw, r.status)
				}
				if r.status == 429 {
					wantProblem(t, last, 429, "rate_limited")
					if ra := last.header.Get("Retry-After"); ra != "1" {
						t.Errorf("request %d: Retry-After %q, want 1", i, ra)
					}
					if after := do(t, e.app, "GET", "/admin/v1/items/mug", "", admin); after.body["available"] != before.body["available"] {
						t.Errorf("request %d: a refused request changed the item: %v -> %v", i, before.body, after.body)
					}
				}
			}
			if got := last.header.Get("RateLimit-Policy"); got != tt.policy {
				t.Errorf("RateLimit-Policy %q, want %q", got, tt.policy)
			}
			if got := last.header.Get("RateLimit"); !strings.Contains(got, ";r=") || !strings.Contains(got, ";t=") {
				t.Errorf("RateLimit %q, want r and t for each policy", got)
			}
		})
	}
}

// TestRateLimitSoldOutKeys: row 5 of the hostile table. Reserves of a sold
// out item, each with a fresh Idempotency-Key, reached Redis every time:
// the sold-out memory does not answer them (theirs may be a retry of a hold
// made). Now they pass the limit first, so a client reaches Redis at most
// as its budget allows, while reserves without a key are still answered
// from the sold-out memory at no cost at all, and not counted.
func TestRateLimitSoldOutKeys(t *testing.T) {
	e, m := limitedEnv(t, httpapi.RateLimits{PerUser: perSec(1, 5), PerIP: perSec(1, 5)})
	wantOK(t, do(t, e.app, "PUT", "/admin/v1/items/gone", `{"stock":1,"per_user_limit":1}`, admin), 201)
	wantOK(t, do(t, e.app, "POST", "/v1/items/gone/reservations", `{"user_id":"first","quantity":1}`, h{"X-Forwarded-For": "x"}), 201)
	// The sold-out answer the memory keeps (this uses the address's budget
	// too: the item is not yet known sold out here).
	wantProblem(t, do(t, e.app, "POST", "/v1/items/gone/reservations", `{"user_id":"u1","quantity":1}`, nil), 409, "sold_out")
	e.store.FlushHints(context.Background()) // the hold's index hints land before the count
	e.limiter.Flush(context.Background())    // and the requests admitted without asking are charged

	start := m.CommandCount()
	for range 50 {
		r := do(t, e.app, "POST", "/v1/items/gone/reservations", `{"user_id":"u1","quantity":1}`, nil)
		wantProblem(t, r, 409, "sold_out")
	}
	if n := m.CommandCount() - start; n != 0 {
		t.Errorf("50 reserves answered from the sold-out memory cost Redis %d commands, want 0", n)
	}

	e.limiter.Flush(context.Background())
	start = m.CommandCount()
	var limited, soldOut int
	for i := range 300 {
		r := do(t, e.app, "POST", "/v1/items/gone/reservations", `{"user_id":"u1","quantity":1}`, h{"Idempotency-Key": fmt.Sprintf("k%d", i)})
		switch {
		case r.status == 429:
			limited++
		case r.status == 409 && r.body["code"] == "sold_out":
			soldOut++
		default:
			t.Fatalf("reserve with a fresh key: %d %s", r.status, r.raw)
		}
	}
	cmds := m.CommandCount() - start
	t.Logf("300 reserves with fresh keys: %d sold_out, %d rate_limited, %d Redis commands", soldOut, limited, cmds)
	// The clock stands still: the budget's burst of 5 less the one the
	// first sold_out spent, then one limiter call (the deny cache answers
	// the rest: the budget only refills with time).
	if soldOut != 3 || limited != 297 {
		t.Errorf("%d sold_out and %d rate_limited, want 3 and 297", soldOut, limited)
	}
	// Redis counts the commands inside scripts too: three reserve scripts
	// and four limiter calls are a few dozen; 300 reserve scripts would be
	// thousands.
	if cmds > 100 {
		t.Errorf("300 reserves cost Redis %d commands, want at most 100: three scripts and four limiter calls", cmds)
	}
}

// failingLimiter is a limiter whose Redis is down.
type failingLimiter struct{}

func (failingLimiter) Take(context.Context, []reservation.RateKey) ([]reservation.RateState, error) {
	return nil, fmt.Errorf("limiter: %w", reservation.ErrUnavailable)
}

// TestRateLimiterDown: a limiter that cannot answer closes the buyer
// routes (503 unavailable), as a Redis down does everywhere else. The
// instance's own limiter admits a budget's first request without asking,
// but every route it guards needs Redis itself: closed all the same.
func TestRateLimiterDown(t *testing.T) {
	tests := []struct {
		name    string
		limiter reservation.RateLimiter // nil: the instance's LocalLimiter, its Redis stopped
	}{
		{name: "limiter down", limiter: failingLimiter{}},
		{name: "Redis down", limiter: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, m := limitedEnv(t, httpapi.RateLimits{Limiter: tt.limiter, PerUser: perSec(100, 100), PerIP: perSec(100, 100)})
			wantOK(t, do(t, e.app, "PUT", "/admin/v1/items/mug", `{"stock":1}`, admin), 201)
			if tt.limiter == nil {
				m.Close()
			}
			for range 3 { // past any request admitted without asking
				for _, path := range []string{"/v1/items/mug", "/v1/reservations/mug.AAAAAAAAAAAAAAAAAAAAAA"} {
					wantProblem(t, do(t, e.app, "GET", path, "", nil), 503, "unavailable")
				}
				r := do(t, e.app, "POST", "/v1/items/mug/reservations", `{"user_id":"u1","quantity":1}`, nil)
				wantProblem(t, r, 503, "unavailable")
			}
		})
	}
}
