//go:build integration

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestRounds runs two cheap rows twice through benchmark, as make bench
// runs every row three times: each row is reported once, as its median
// round with every round's rate beside it, carrying its rounds for the
// paired ratios, and every round's keys are its own.
func TestRounds(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	var log bytes.Buffer
	s := settings{clients: 8, duration: 300 * time.Millisecond, only: []string{rowCeiling, rowPlain}, rounds: 2,
		redisAddr: redis.Addr(), mysqlDSN: testenv.SharedMySQL(t)}
	rep, err := benchmark(context.Background(), s, &log)
	if err != nil {
		t.Fatalf("benchmark: %v; log:\n%s", err, log.String())
	}
	if got := strings.Count(log.String(), "flashsale-bench: round "); got != 2 {
		t.Errorf("%d rounds logged, want 2; log:\n%s", got, log.String())
	}
	var names []string
	for _, r := range rep.Rows {
		names = append(names, r.Name)
		if r.Failure != "" || len(r.rounds) != 2 || !strings.Contains(r.Detail, "median of 2 rounds, req/s ") {
			t.Errorf("row %s: failure %q, %d rounds, detail %q", r.Name, r.Failure, len(r.rounds), r.Detail)
		}
		for i, rr := range r.rounds {
			if rr.Throughput <= 0 {
				t.Errorf("row %s round %d: %v req/s", r.Name, i+1, rr.Throughput)
			}
		}
	}
	if strings.Join(names, ",") != rowCeiling+","+rowPlain {
		t.Errorf("rows %v, want %s and %s once each", names, rowCeiling, rowPlain)
	}
	if keys, err := redis.Client(t).Keys(context.Background(), "fsbench-*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left: %v (%v)", keys, err)
	}
}
