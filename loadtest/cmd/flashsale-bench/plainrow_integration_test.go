//go:build integration

package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestPlainRow starts the plain endpoint as a process of its own (this test
// binary, through TestMain) on a Redis of the test's own, loads it briefly
// as make bench does, and checks the row: every request a hold, Redis's
// CPU read from its process (found by its port), the endpoint's and this
// process's CPU measured, and no key left behind.
func TestPlainRow(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.Client(t)
	var log bytes.Buffer
	b := &bench{s: settings{clients: 8, duration: 500 * time.Millisecond, redisAddr: redis.Addr()},
		runID: randomHex(6), redis: rdb, log: &log}
	ctx := context.Background()
	srcs, notes := serverSources(ctx, rdb, redis.Addr(), nil, "")
	if len(srcs) != 1 || srcs[0].proc != procRedis || len(notes) != 1 {
		t.Fatalf("server sources %+v, notes %q: want Redis found by its process and MySQL not measured", srcs, notes)
	}
	b.cpuBase = srcs

	var rows []row
	if err := b.plainRow(ctx, func(r row) { rows = append(rows, r) }); err != nil {
		t.Fatalf("plainRow: %v", err)
	}
	if err := b.cleanup.run(ctx); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if len(rows) != 1 {
		t.Fatalf("rows %+v, want one", rows)
	}
	r := rows[0]
	t.Logf("%s: %.0f req/s, %s us per request (svc, redis, mysql, gen)", r.Name, r.Throughput, r.cpuCells())
	if r.Failure != "" || r.Errors != 0 || r.Requests == 0 || r.Purchases != r.Throughput || r.Oversold == nil || *r.Oversold != 0 {
		t.Errorf("plain row %+v; log:\n%s", r, log.String())
	}
	for _, p := range []string{procService, procRedis, procLoadGen} {
		if us, ok := r.perRequest(p); !ok || us <= 0 {
			t.Errorf("%s CPU per request %v (measured %t), want above zero", p, us, ok)
		}
	}
	if keys, err := rdb.Keys(ctx, "fsbench-"+b.runID+"*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left: %v (%v)", keys, err)
	}
}
