package reservation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrRateLimited: the client sent more requests than its rate limit allows;
// nothing was changed. The error is a *RateLimitedError.
var ErrRateLimited = errors.New("rate limited")

// Limit is a rate budget: Rate requests per Per on average, up to Burst at
// once. The zero Limit is no limit.
type Limit struct {
	Rate  int
	Per   time.Duration
	Burst int
}

// On reports whether l limits anything.
func (l Limit) On() bool { return l.Rate > 0 }

// Interval is the time one request's share of the budget takes to come back.
func (l Limit) Interval() time.Duration { return l.Per / time.Duration(l.Rate) }

// Window is the time an empty budget takes to fill up again: Burst requests.
func (l Limit) Window() time.Duration { return l.Interval() * time.Duration(l.Burst) }

func (l Limit) String() string {
	if !l.On() {
		return ""
	}
	return fmt.Sprintf("%d/%s burst %d", l.Rate, perUnits[l.Per], l.Burst)
}

var perUnits = map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}

// ParseLimit reads a limit as `N/s`, `N/m` or `N/h`, optionally followed by
// `burst B` (B requests at once; without it, N, one period's worth). "" is
// no limit.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Limit{}, nil
	}
	fields := strings.Fields(s)
	if len(fields) != 1 && (len(fields) != 3 || fields[1] != "burst") {
		return Limit{}, fmt.Errorf("%q: want N/s, N/m or N/h, optionally followed by \"burst B\", such as \"10/s burst 20\"", s)
	}
	rate, unit, ok := strings.Cut(fields[0], "/")
	var per time.Duration
	for d, u := range perUnits {
		if u == unit {
			per = d
		}
	}
	if !ok || per == 0 {
		return Limit{}, fmt.Errorf("%q: the period must be /s, /m or /h", s)
	}
	n, err := strconv.Atoi(rate)
	if err != nil || n < 1 || n > 1_000_000 {
		return Limit{}, fmt.Errorf("%q: the rate must be a whole number from 1 to 1000000", s)
	}
	l := Limit{Rate: n, Per: per, Burst: n}
	if len(fields) == 3 {
		if l.Burst, err = strconv.Atoi(fields[2]); err != nil || l.Burst < 1 || l.Burst > 1_000_000 {
			return Limit{}, fmt.Errorf("%q: the burst must be a whole number from 1 to 1000000", s)
		}
	}
	if l.Interval() < time.Microsecond {
		return Limit{}, fmt.Errorf("%q: faster than one request a microsecond", s)
	}
	return l, nil
}

// RateKey is one budget a request spends from: a policy's limit for one
// subject (a user id, a client address).
type RateKey struct {
	Policy  string // "user", "ip": the name the rate-limit headers carry
	Subject string
	Limit   Limit
}

// RateState is a budget after a request.
type RateState struct {
	Policy    string
	Limit     Limit
	Remaining int           // requests it allows at once now
	Reset     time.Duration // until it is full again
}

// RateLimiter spends one request from every budget of keys, all or nothing,
// shared by every instance. When any is spent it returns a
// *RateLimitedError and spends nothing; states are the budgets either way.
type RateLimiter interface {
	Take(ctx context.Context, keys []RateKey) (states []RateState, err error)
}

// RateLimitedError is ErrRateLimited with when to come back.
type RateLimitedError struct {
	RetryAfter time.Duration
	States     []RateState
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%s: retry in %s", ErrRateLimited, e.RetryAfter.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrRateLimited) hold.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }
