//go:build fault

package faulttest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/flashsale/flashsale/client"
	"github.com/flashsale/flashsale/internal/testenv"
)

// getItemCode asks GET /v1/items/{sku} and returns the HTTP status and the
// problem code of a refusal ("transport" when no answer came).
func getItemCode(api *client.Client, sku string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := api.Item(ctx, sku)
	var p *client.Problem
	switch {
	case err == nil:
		return 200, ""
	case !errors.As(err, &p):
		return 0, "transport"
	case p.Code == "":
		return p.Status, fmt.Sprintf("http_%d", p.Status)
	default:
		return p.Status, p.Code
	}
}

// waitItemOK polls GET /v1/items/{sku} until it answers 200 and returns
// the problem codes seen before, in order without repeats, and how long
// it took.
func waitItemOK(t testing.TB, baseURL, sku string, timeout time.Duration) ([]string, time.Duration) {
	t.Helper()
	begin := time.Now()
	api := apiClient(t, baseURL)
	var seen []string
	for {
		status, code := getItemCode(api, sku)
		if status == http.StatusOK {
			return seen, time.Since(begin)
		}
		if len(seen) == 0 || seen[len(seen)-1] != code {
			seen = append(seen, code)
		}
		if time.Since(begin) > timeout {
			t.Fatalf("GET /v1/items/%s not 200 after %v; answers seen: %v", sku, timeout, seen)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestRedisAOFKilled SIGKILLs a Redis that runs with appendonly and
// appendfsync always, mid-load, and restarts it a second later. The service
// must reconnect by itself, and no acknowledged reservation may be lost:
// Redis fsyncs every write before it answers, so whatever a buyer was told
// is in the AOF, its outbox entry too, and the syncer copies it to MySQL.
func TestRedisAOFKilled(t *testing.T) {
	begin := time.Now()
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	rdb := redis.Client(t)
	dsn := testenv.SharedMySQL(t)
	inst := startFlashsale(t, redis.Addr(), dsn, nil)
	const sku = "aof-kill"
	seed(t, inst.URL(), sku, 1_000_000, 1)

	ld := startLoad(t, inst.URL(), sku, 8)
	time.Sleep(1500 * time.Millisecond)
	before := ld.AckedCount()
	if before == 0 {
		t.Fatalf("no reservation acknowledged before the kill: %v, e.g. %v", ld.ErrorCounts(), ld.ErrorExamples())
	}
	redis.Kill(t)
	killedAt := time.Now()
	time.Sleep(time.Second)
	redis.Restart(t)
	down := time.Since(killedAt)
	seen, took := waitItemOK(t, inst.URL(), sku, 20*time.Second)
	t.Logf("redis killed with %d reservations acknowledged, back after %v; the service answered 200 again %v later (answers before: %v)",
		before, down.Round(time.Millisecond), took.Round(time.Millisecond), seen)
	atRestart := ld.AckedCount()

	time.Sleep(2 * time.Second)
	res := ld.Stop()
	t.Logf("load: %v", res)
	if len(res.Acked) <= atRestart {
		t.Errorf("no reservation acknowledged after Redis came back (%d before, %d in all)", atRestart, len(res.Acked))
	}
	// While Redis is down, requests are refused as unavailable (503) or,
	// if the client gives up first, fail in transport. Nothing else: a
	// reserve whose script ran just before the kill and is re-sent by
	// go-redis once Redis is back must still answer 201, not 200.
	if odd := errorsExcept(res.Errors, "unavailable", "transport"); len(odd) > 0 {
		t.Errorf("unexpected errors around the Redis crash: %v, e.g. %v", odd, ld.ErrorExamples())
	}

	drained := waitDrained(t, rdb, inst.Prefix, 30*time.Second)
	t.Logf("drained %v after the load stopped", drained.Round(time.Millisecond))
	checkConsistent(t, rdb, inst.Prefix, sku, dsn, res.Acked)
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}
