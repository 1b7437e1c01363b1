//go:build integration

package hostile_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/luascripts"
)

// limitedServices starts n instances of the service on one Redis of their
// own (so its command counts are theirs alone) and one MySQL database, with
// vars added, and returns a client for each.
func limitedServices(t *testing.T, n int, vars map[string]string) ([]*env, *goredis.Client) {
	t.Helper()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	bin := testenv.BuildFlashsale(t)
	dsn := testenv.SharedMySQL(t)
	envs := make([]*env, n)
	for i := range envs {
		all := map[string]string{
			"FLASHSALE_REDIS_ADDR":     redis.Addr(),
			"FLASHSALE_MYSQL_DSN":      dsn,
			"FLASHSALE_ADMIN_TOKEN":    adminToken,
			"FLASHSALE_SERVICE_TOKENS": serviceToken,
			"FLASHSALE_LOG_LEVEL":      "warn",
		}
		for k, v := range vars {
			all[k] = v
		}
		svc := testenv.StartService(t, bin, all)
		envs[i] = &env{base: svc.URL(), hc: &http.Client{Timeout: 10 * time.Second}, pid: svc.Pid()}
	}
	return envs, redis.Client(t)
}

// randomKeysSoldOut is row 5: 300 reserves of a sold-out item, each with a
// fresh Idempotency-Key, ran 300 scripts in Redis: a key defeats the
// sold-out memory, since it may be a retry of a hold made. With the limits
// on, a client reaches Redis at most as its budget allows (a burst of 5
// here): the rest are 429 rate_limited, nothing changes, and the scripts
// Redis runs stay within the budget, where 300 ran before.
func randomKeysSoldOut(t *testing.T, _ *env) {
	envs, rdb := limitedServices(t, 1, map[string]string{
		"FLASHSALE_RATE_PER_USER": "1/m burst 5", "FLASHSALE_RATE_PER_IP": "1/m burst 5",
	})
	e := envs[0]
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	if st, _, body := e.do(t, "PUT", "/admin/v1/items/gone", `{"stock":0,"per_user_limit":1}`, admin); st != 201 {
		t.Fatalf("seed: %d %s", st, body)
	}
	codes := map[string]int{}
	// Only the reserve and limiter scripts count: the sweeper's and the
	// syncer's work runs beside them on its own cadence.
	scripts := scriptCalls(t, rdb, []luascripts.Source{luascripts.Reserve(), luascripts.RateLimit()}, func() {
		for i := range 300 {
			st, hdr, body := e.do(t, "POST", "/v1/items/gone/reservations", `{"user_id":"bot","quantity":1}`,
				map[string]string{"Idempotency-Key": fmt.Sprintf("bot-%d", i)})
			var code string
			if i := strings.Index(string(body), `"code":"`); i >= 0 {
				code, _, _ = strings.Cut(string(body[i+8:]), `"`)
			}
			codes[fmt.Sprint(st, " ", code)]++
			if st == 429 && (hdr.Get("Retry-After") == "" || hdr.Get("RateLimit-Policy") == "") {
				t.Fatalf("429 without Retry-After or RateLimit-Policy: %v", hdr)
			}
		}
	})
	t.Logf("300 reserves of a sold-out item with fresh keys: %v; %d scripts in Redis", codes, scripts)
	if codes["409 sold_out"] != 5 || codes["429 rate_limited"] != 295 {
		t.Errorf("answers %v, want 5 sold_out (the burst) and 295 rate_limited", codes)
	}
	// Per allowed request a limiter call and a reserve script; one more
	// limiter call refused, after which the instance refuses from memory
	// until the budget refills (a minute away).
	if scripts > 5*2+2 {
		t.Errorf("%d scripts ran for 300 reserves, want at most %d", scripts, 5*2+2)
	}
}

// scriptCalls is how many calls of the scripts Redis ran while f ran, read
// from Redis's slow log set to log every command (a script's own commands
// are not logged apart). The Redis is the test's own.
func scriptCalls(t *testing.T, rdb *goredis.Client, scripts []luascripts.Source, f func()) int {
	t.Helper()
	ctx := context.Background()
	shas := map[string]bool{}
	for _, src := range scripts {
		shas[goredis.NewScript(string(src)).Hash()] = true
	}
	for _, kv := range [][2]string{{"slowlog-max-len", "1000000"}, {"slowlog-log-slower-than", "0"}} {
		if err := rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	f()
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", "10000").Err(); err != nil {
		t.Fatal(err)
	}
	logs, err := rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range logs {
		switch {
		case len(l.Args) < 2:
		case strings.EqualFold(l.Args[0], "evalsha") && shas[l.Args[1]]:
			n++
		case strings.EqualFold(l.Args[0], "eval"):
			n++ // the log cuts a script's text short: every EVAL counts, whichever script
		}
	}
	return n
}

// TestRateLimitSharedByInstances: two instances on one Redis share every
// budget, so a client that spreads its requests over both gets one budget's
// worth, exact to within one request per instance (the bound: an
// instance admits a request of a budget it last knew full without asking,
// and charges it a few milliseconds later; one it leased ahead waits to be
// used). The budgets refill at one a minute: within the test, a budget is
// its burst.
func TestRateLimitSharedByInstances(t *testing.T) {
	const instances = 2
	envs, _ := limitedServices(t, instances, map[string]string{
		"FLASHSALE_RATE_PER_USER": "1/m burst 3", "FLASHSALE_RATE_PER_IP": "1/m burst 10",
	})
	admin := map[string]string{"Authorization": "Bearer " + adminToken}
	if st, _, body := envs[0].do(t, "PUT", "/admin/v1/items/shared", `{"stock":100,"per_user_limit":10}`, admin); st != 201 {
		t.Fatalf("seed: %d %s", st, body)
	}
	count := func(n int, send func(e *env) int) map[int]int {
		var mu sync.Mutex
		got := map[int]int{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				st := send(envs[i%instances])
				mu.Lock()
				got[st]++
				mu.Unlock()
			})
		}
		wg.Wait()
		return got
	}
	within := func(got, budget int) bool { return got >= budget-instances && got <= budget+instances }
	// One user over both instances: its budget of 3 (the address's spends
	// as many of its 10 too).
	got := count(20, func(e *env) int {
		st, _, _ := e.do(t, "POST", "/v1/items/shared/reservations", `{"user_id":"u1","quantity":1}`, nil)
		return st
	})
	created := got[201]
	t.Logf("one user, 20 reserves over two instances: %v", got)
	if created < 3 || created > 3+instances || got[429] != 20-created {
		t.Errorf("one user, 20 reserves over two instances: %v, want 3 to %d created, the rest rate_limited", got, 3+instances)
	}
	// The address over both: what is left of its 10. The instances' charges
	// and leases settle within milliseconds; past them, the count is exact.
	time.Sleep(100 * time.Millisecond)
	got = count(20, func(e *env) int {
		st, _, _ := e.do(t, "GET", "/v1/items/shared", "", nil)
		return st
	})
	t.Logf("one address, 20 reads over two instances: %v", got)
	if !within(created+got[200], 10) || got[429] != 20-got[200] {
		t.Errorf("one address: %d reserves and %v of 20 reads answered, want 10 in all to within one per instance", created, got)
	}
}
