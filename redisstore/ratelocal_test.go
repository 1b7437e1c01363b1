package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/flashsale/flashsale/luascripts"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/reservation"
)

// scriptCounter is a go-redis hook counting the calls of some scripts,
// alone or in pipelines.
type scriptCounter struct {
	shas map[any]bool
	n    atomic.Int64
}

func countScript(rdb *goredis.Client, srcs ...luascripts.Source) *scriptCounter {
	c := &scriptCounter{shas: map[any]bool{}}
	for _, src := range srcs {
		c.shas[goredis.NewScript(string(src)).Hash()] = true
	}
	rdb.AddHook(c)
	return c
}

func (c *scriptCounter) count(cmd goredis.Cmder) {
	args := cmd.Args()
	if len(args) > 1 && (strings.EqualFold(cmd.Name(), "evalsha") && c.shas[args[1]] || strings.EqualFold(cmd.Name(), "eval")) {
		c.n.Add(1)
	}
}

func (c *scriptCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (c *scriptCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *scriptCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// limiterClock is a clock for LocalLimiters that moves with miniredis's.
type limiterClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *limiterClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *limiterClock) advance(t testing.TB, s *testStore, d time.Duration) {
	t.Helper()
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	s.advance(t, d)
}

func newLimiter(s *testStore, clock *limiterClock) *redisstore.LocalLimiter {
	l := s.LocalLimiter()
	l.SetClock(clock.Now)
	return l
}

// owed is what Redis's budget of key says was spent: its TAT ahead of
// Redis's clock, in requests.
func owed(t testing.TB, s *testStore, key reservation.RateKey) float64 {
	t.Helper()
	ctx := context.Background()
	raw, err := s.rdb.Get(ctx, s.prefix+":rl:{"+key.Policy+":"+key.Subject+"}").Result()
	if errors.Is(err, goredis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	tat, _ := strconv.ParseInt(raw, 10, 64)
	now, err := s.rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	return float64(tat-now.UnixMicro()) / float64(key.Limit.Interval().Microseconds())
}

// instances are 1 to 4 LocalLimiters, as many instances would run, on one
// miniredis and one clock.
func instances(t *testing.T, rt *rapid.T) (*testStore, *limiterClock, []*redisstore.LocalLimiter) {
	s := newMiniStore(t)
	clock := &limiterClock{now: time.Unix(1_000_000, 0)}
	ls := make([]*redisstore.LocalLimiter, rapid.IntRange(1, 4).Draw(rt, "instances"))
	for i := range ls {
		ls[i] = newLimiter(s, clock)
	}
	return s, clock, ls
}

func userKey(subject string, rate, burst int) reservation.RateKey {
	return reservation.RateKey{Policy: "user", Subject: subject, Limit: reservation.Limit{Rate: rate, Per: time.Second, Burst: burst}}
}

// TestLocalLimiter: an instance answers yes on its own only when it may,
// charges what it admitted so, and leaves every refusal to Redis.
func TestLocalLimiter(t *testing.T) {
	ctx := context.Background()
	key := userKey("u1", 1, 3)
	type step struct {
		do      string // "take", "settle" (the settler's round), "flush", "advance"
		limited bool
		scripts int64   // limiter scripts run by the step
		owed    float64 // requests Redis's budget counts after it
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "a budget known full admits without asking; the settler's next round charges it", steps: []step{
			{do: "take", scripts: 0, owed: 0},
			{do: "settle", scripts: 0, owed: 0}, // not yet: it waits for others to share the call
			{do: "advance"},
			{do: "settle", scripts: 1, owed: 0}, // as of when it came: full again by now
			{do: "settle", scripts: 0, owed: 0},
		}},
		{name: "a flush charges at once", steps: []step{
			{do: "take", scripts: 0, owed: 0},
			{do: "flush", scripts: 1, owed: 1},
			{do: "advance"},
			{do: "settle", scripts: 0, owed: 0},
		}},
		{name: "what is owed travels with the next request", steps: []step{
			{do: "take", scripts: 0, owed: 0},
			{do: "take", scripts: 1, owed: 2},
			{do: "flush", scripts: 0, owed: 2},
		}},
		{name: "refused by Redis only, with the owed request charged", steps: []step{
			{do: "take"}, {do: "take", scripts: 1, owed: 2}, {do: "take", scripts: 1, owed: 3},
			{do: "take", limited: true, scripts: 1, owed: 3},
			{do: "take", limited: true, scripts: 1, owed: 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMiniStore(t)
			calls := countScript(s.rdb, luascripts.RateLimit(), luascripts.Charge())
			clock := &limiterClock{now: time.Unix(1_000_000, 0)}
			l := newLimiter(s, clock)
			for i, st := range tt.steps {
				before := calls.n.Load()
				switch st.do {
				case "take":
					_, err := l.Take(ctx, []reservation.RateKey{key})
					if limited := errors.Is(err, reservation.ErrRateLimited); limited != st.limited || (err != nil && !limited) {
						t.Fatalf("step %d: %v, want limited %v", i, err, st.limited)
					}
				case "settle":
					l.Settle(ctx)
				case "flush":
					l.Flush(ctx)
				case "advance":
					clock.advance(t, s, key.Limit.Interval())
					continue
				}
				if n := calls.n.Load() - before; n != st.scripts {
					t.Errorf("step %d (%s): %d limiter scripts, want %d", i, st.do, n, st.scripts)
				}
				if got := owed(t, s, key); got != st.owed {
					t.Errorf("step %d (%s): Redis counts %v requests, want %v", i, st.do, got, st.owed)
				}
			}
		})
	}
}

// TestLocalLimiterLeasesABusyBudget: an address many buyers share costs
// Redis a call per lease, not per request, and leased requests that are not
// used go back once their life is over.
func TestLocalLimiterLeasesABusyBudget(t *testing.T) {
	ctx := context.Background()
	s := newMiniStore(t)
	calls := countScript(s.rdb, luascripts.RateLimit(), luascripts.Charge())
	clock := &limiterClock{now: time.Unix(1_000_000, 0)}
	l := newLimiter(s, clock)
	ip := reservation.RateKey{Policy: "ip", Subject: "192.0.2.9", Limit: reservation.Limit{Rate: 1000, Per: time.Second, Burst: 1000}}
	const n = 500
	for i := range n {
		if _, err := l.Take(ctx, []reservation.RateKey{userKey(fmt.Sprint("u", i), 5, 10), ip}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	t.Logf("%d requests, %d limiter scripts", n, calls.n.Load())
	if got := calls.n.Load(); got > n/10 {
		t.Errorf("%d requests of one address cost %d limiter scripts, want at most %d", n, got, n/10)
	}
	// Leases outlive nothing: what was not used goes back after leaseLife.
	// (Charges first, so none is made while the two clocks move one after
	// the other.)
	l.Settle(ctx)
	clock.advance(t, s, 51*time.Millisecond)
	l.Settle(ctx)
	if got := owed(t, s, ip); got != n-51 { // 51 ms of the clock is 51 requests' worth
		t.Errorf("after the leases went back Redis counts %v requests of the address, want %d", got, n-51)
	}
	// The settler's round above charged the buyers, each as of when its
	// request came; a flush finds nothing more.
	l.Flush(ctx)
	for i := range 3 {
		if got := owed(t, s, userKey(fmt.Sprint("u", i), 5, 10)); got != 1-0.051*5 {
			t.Errorf("user u%d: Redis counts %v requests, want %v", i, got, 1-0.051*5)
		}
	}
}

// TestLocalLimiterKeepsLeasingASteadyBudget: an address served steadily,
// at a rate where one lease outlives leaseLife, keeps asking for leases of
// the size it reached. Its leases used to start again from one after each
// went back (the last ask was a lease life ago), so every 50 ms it took a
// dozen asks, each a round trip before a request, to grow back: at 12k
// requests a second, one request in eight asked Redis.
func TestLocalLimiterKeepsLeasingASteadyBudget(t *testing.T) {
	ctx := context.Background()
	s := newMiniStore(t)
	asks := countScript(s.rdb, luascripts.RateLimit())
	clock := &limiterClock{now: time.Unix(1_000_000, 0)}
	l := newLimiter(s, clock)
	ip := reservation.RateKey{Policy: "ip", Subject: "192.0.2.9", Limit: reservation.Limit{Rate: 1_000_000, Per: time.Second, Burst: 1_000_000}}
	const (
		n     = 10_000                 // a second's worth
		every = 100 * time.Microsecond // 10k requests a second: a lease of 1,024 lasts 102 ms
	)
	for i := range n {
		if _, err := l.Take(ctx, []reservation.RateKey{ip}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		clock.advance(t, s, every)
		if i%50 == 0 { // the settler's round, every 5 ms
			l.Settle(ctx)
		}
	}
	// Growing to the largest lease takes 11 asks; after that, about two
	// per lease life (the lease that went back, and the first request
	// after it, admitted on its own, then charged by the next ask).
	want := int64(11 + 2*(n*every/leaseLifeForTest) + 10)
	t.Logf("%d requests, %d asks", n, asks.n.Load())
	if got := asks.n.Load(); got > want {
		t.Errorf("%d steady requests of one address asked Redis %d times, want at most %d", n, got, want)
	}
}

// leaseLifeForTest is redisstore's leaseLife.
const leaseLifeForTest = 50 * time.Millisecond

// TestLocalLimiterExactAcrossInstances: instances sharing one Redis admit
// at most one request per instance beyond a budget, and once they have
// settled, Redis's budget has counted every request they admitted. The
// clock stands still, so the budget never refills.
func TestLocalLimiterExactAcrossInstances(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		s, _, ls := instances(t, rt)
		n := len(ls)
		burst := rapid.IntRange(1, 40).Draw(rt, "burst")
		user := userKey("u", 1, burst)
		ip := reservation.RateKey{Policy: "ip", Subject: "198.51.100.1", Limit: reservation.Limit{Rate: 1, Per: time.Second, Burst: 2 * burst}}
		admitted := map[string]int{}
		steps := rapid.IntRange(1, 120).Draw(rt, "steps")
		for range steps {
			i := rapid.IntRange(0, n-1).Draw(rt, "instance")
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0:
				ls[i].Settle(ctx)
			case 1:
				ls[i].Flush(ctx)
			default:
				keys := []reservation.RateKey{user, ip}
				if rapid.Bool().Draw(rt, "ip only") {
					keys = keys[1:]
				}
				_, err := ls[i].Take(ctx, keys)
				switch {
				case err == nil:
					for _, k := range keys {
						admitted[k.Policy]++
					}
				case !errors.Is(err, reservation.ErrRateLimited):
					rt.Fatal(err)
				}
			}
			for _, k := range []reservation.RateKey{user, ip} {
				if admitted[k.Policy] > k.Limit.Burst+n {
					rt.Fatalf("%s: %d admitted by %d instances, budget %d", k.Policy, admitted[k.Policy], n, k.Limit.Burst)
				}
			}
		}
		for _, l := range ls {
			l.Flush(ctx)
		}
		for _, k := range []reservation.RateKey{user, ip} {
			if got := owed(t, s, k); got != float64(admitted[k.Policy]) {
				rt.Fatalf("%s: Redis counts %v requests, %d were admitted", k.Policy, got, admitted[k.Policy])
			}
		}
	})
}

// TestLocalLimiterBoundOverTime: with the clock moving, instances sharing a
// budget admit, in any window of time, at most what the budget allows in it
// (its burst, plus one per interval) and one request per instance more,
// though each instance charges what it admitted on its own only later (its
// settler's round comes after each step of the clock, up to 250ms late,
// where one running every few milliseconds is less).
func TestLocalLimiterBoundOverTime(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		s, clock, ls := instances(t, rt)
		n := len(ls)
		burst := rapid.IntRange(1, 8).Draw(rt, "burst")
		key := reservation.RateKey{Policy: "user", Subject: "u", Limit: reservation.Limit{Rate: 10, Per: time.Second, Burst: burst}}
		iv := key.Limit.Interval()
		var admitted []time.Time
		var log []string
		start := clock.Now()
		for range rapid.IntRange(1, 150).Draw(rt, "steps") {
			i := rapid.IntRange(0, n-1).Draw(rt, "instance")
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0:
				ls[i].Settle(ctx)
				log = append(log, fmt.Sprintf("%v: instance %d settles", clock.Now().Sub(start), i))
			case 1:
				// Each instance's settler runs every few milliseconds: after
				// a step of the clock, each has had its round.
				clock.advance(t, s, time.Duration(rapid.IntRange(1, 250).Draw(rt, "ms"))*time.Millisecond)
				for _, l := range ls {
					l.Settle(ctx)
				}
			default:
				_, err := ls[i].Take(ctx, []reservation.RateKey{key})
				switch {
				case err == nil:
					admitted = append(admitted, clock.Now())
					log = append(log, fmt.Sprintf("%v: instance %d admitted", clock.Now().Sub(start), i))
				case errors.Is(err, reservation.ErrRateLimited):
					log = append(log, fmt.Sprintf("%v: instance %d refused", clock.Now().Sub(start), i))
				default:
					rt.Fatal(err)
				}
			}
		}
		for j := range admitted {
			for k := j; k < len(admitted); k++ {
				allowed := burst + int(admitted[k].Sub(admitted[j])/iv) + n
				if k-j+1 > allowed {
					rt.Fatalf("%d admitted between %v and %v by %d instances, want at most %d (burst %d):\n%s",
						k-j+1, admitted[j].Sub(start), admitted[k].Sub(start), n, allowed, burst, strings.Join(log, "\n"))
				}
			}
		}
	})
}
