package httpapi

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/flashsale/flashsale/reservation"
)

// RateLimits limits buyers, shared by every instance through Limiter. A
// zero Limit is off; with both off nothing is asked of the Limiter.
type RateLimits struct {
	Limiter reservation.RateLimiter
	// PerUser is each buyer's budget: the token's user under buyer
	// authentication, otherwise the body's user_id (which a client chooses:
	// then PerIP is the limit that holds).
	PerUser reservation.Limit
	// PerIP is each client address's budget (an IPv6 address counts by its
	// /64, which one client usually holds whole).
	PerIP reservation.Limit
	// TrustedProxies are the peers whose X-Forwarded-For is believed: the
	// client is the first address, from the right, not in them.
	TrustedProxies []netip.Prefix
}

func (l RateLimits) on() bool { return l.Limiter != nil && (l.PerUser.On() || l.PerIP.On()) }

// limitHeaders are the rate-limit fields of the IETF httpapi draft
// (draft-ietf-httpapi-ratelimit-headers): RateLimit-Policy names each
// budget with its quota q (the burst) over w seconds (the time an empty
// budget takes to fill), RateLimit its remaining r and the seconds t until
// it is full.
const (
	headerRateLimitPolicy = "RateLimit-Policy"
	headerRateLimit       = "RateLimit"
)

// limitBuyer spends one request of c's budgets: its user's (user may be
// "": none) and its address's. Over either budget it answers
// ErrRateLimited with Retry-After, having spent nothing; with Redis down,
// ErrUnavailable (closed, like every other route that needs Redis).
func (s *Server) limitBuyer(c *fiber.Ctx, user string) error {
	if !s.limits.on() {
		return nil
	}
	keys := make([]reservation.RateKey, 0, 2)
	if s.limits.PerUser.On() && user != "" {
		keys = append(keys, reservation.RateKey{Policy: "user", Subject: user, Limit: s.limits.PerUser})
	}
	if s.limits.PerIP.On() {
		keys = append(keys, reservation.RateKey{Policy: "ip", Subject: clientSubject(s.clientAddr(c)), Limit: s.limits.PerIP})
	}
	if len(keys) == 0 {
		return nil
	}
	// A budget Redis refused a moment ago is refused here until it may
	// allow again: exact, since a refusal spends nothing and a budget only
	// fills with time, and a client hammering its limit then costs Redis
	// about one call per interval per instance.
	if wait, i := s.denied.refuses(keys); wait > 0 {
		states := make([]reservation.RateState, len(keys))
		for j, k := range keys {
			states[j] = reservation.RateState{Policy: k.Policy, Limit: k.Limit, Reset: k.Limit.Window()}
		}
		states[i].Reset = wait + keys[i].Limit.Interval()*time.Duration(keys[i].Limit.Burst-1)
		return s.refuseRate(c, &reservation.RateLimitedError{RetryAfter: wait, States: states})
	}
	states, err := s.limits.Limiter.Take(c.UserContext(), keys)
	var limited *reservation.RateLimitedError
	if errors.As(err, &limited) {
		for i, st := range limited.States {
			// Spent: allowed again once Reset has come down to what
			// Burst-1 requests take.
			if wait := st.Reset - st.Limit.Interval()*time.Duration(st.Limit.Burst-1); wait > 0 {
				s.denied.remember(keys[i], wait)
			}
		}
		return s.refuseRate(c, limited)
	}
	if err != nil {
		return err
	}
	setRateHeaders(c, states)
	return nil
}

func (s *Server) refuseRate(c *fiber.Ctx, e *reservation.RateLimitedError) error {
	setRateHeaders(c, e.States)
	c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(ceilSeconds(e.RetryAfter), 10))
	return e
}

func setRateHeaders(c *fiber.Ctx, states []reservation.RateState) {
	// On the stack: fasthttp copies the values, and these two headers go
	// out with every buyer's answer while a limit is on.
	var policyBuf, stateBuf [128]byte
	policy, state := policyBuf[:0], stateBuf[:0]
	for i, st := range states {
		if i > 0 {
			policy, state = append(policy, ", "...), append(state, ", "...)
		}
		policy = append(policy, '"')
		policy = append(policy, st.Policy...)
		policy = append(policy, `";q=`...)
		policy = strconv.AppendInt(policy, int64(st.Limit.Burst), 10)
		policy = append(policy, ";w="...)
		policy = strconv.AppendInt(policy, ceilSeconds(st.Limit.Window()), 10)
		state = append(state, '"')
		state = append(state, st.Policy...)
		state = append(state, `";r=`...)
		state = strconv.AppendInt(state, int64(st.Remaining), 10)
		state = append(state, ";t="...)
		state = strconv.AppendInt(state, ceilSeconds(st.Reset), 10)
	}
	c.Response().Header.SetBytesV(headerRateLimitPolicy, policy)
	c.Response().Header.SetBytesV(headerRateLimit, state)
}

// ceilSeconds is d in whole seconds, rounded up, at least 1: a client told
// 0 would come back at once.
func ceilSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// clientAddr is the client's address: the peer's, or, when the peer is a
// trusted proxy, the first address of X-Forwarded-For, read from the
// right, that is not one (each proxy appends the address it saw). An entry
// that is not an address ends the walk: everything left of it may be forged.
func (s *Server) clientAddr(c *fiber.Ctx) netip.Addr {
	addr, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	addr = addr.Unmap()
	if len(s.limits.TrustedProxies) == 0 || !s.trusted(addr) {
		return addr
	}
	var hops []string
	c.Request().Header.VisitAll(func(k, v []byte) {
		if strings.EqualFold(string(k), fiber.HeaderXForwardedFor) {
			hops = append(hops, strings.Split(string(v), ",")...)
		}
	})
	for i := len(hops) - 1; i >= 0 && s.trusted(addr); i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = hop.Unmap()
	}
	return addr
}

func (s *Server) trusted(addr netip.Addr) bool {
	for _, p := range s.limits.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientSubject is the budget an address spends from: IPv4 by address,
// IPv6 by its /64.
func clientSubject(addr netip.Addr) string {
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// maxDenied bounds the deny cache: a flood of distinct clients can fill it,
// after which the overflow simply asks Redis.
const maxDenied = 100_000

// denyCache remembers, per budget, until when Redis refuses it.
type denyCache struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func denyKey(k reservation.RateKey) string { return k.Policy + "\x00" + k.Subject }

// refuses returns how long the first of keys still refused waits, and its
// index; 0 when none is.
func (d *denyCache) refuses(keys []reservation.RateKey) (time.Duration, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.until) == 0 {
		return 0, 0
	}
	now := time.Now()
	for i, k := range keys {
		if until, ok := d.until[denyKey(k)]; ok {
			if wait := until.Sub(now); wait > 0 {
				return wait, i
			}
			delete(d.until, denyKey(k))
		}
	}
	return 0, 0
}

func (d *denyCache) remember(k reservation.RateKey, wait time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.until == nil {
		d.until = make(map[string]time.Time)
	}
	now := time.Now()
	if len(d.until) >= maxDenied {
		for key, until := range d.until {
			if !until.After(now) {
				delete(d.until, key)
			}
		}
		if len(d.until) >= maxDenied {
			return
		}
	}
	d.until[denyKey(k)] = now.Add(wait)
}
