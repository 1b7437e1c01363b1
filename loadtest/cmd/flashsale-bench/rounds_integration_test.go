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

// benchOnItsOwnRedis runs benchmark with s on a Redis of the test's own
// and the shared MySQL, fails the test on an error, and, once the run's
// cleanup is done, checks that no key of it is left. It returns the report
// and the run's log.
func benchOnItsOwnRedis(t *testing.T, s settings) (report, string) {
	t.Helper()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	s.redisAddr, s.mysqlDSN = redis.Addr(), testenv.SharedMySQL(t)
	var log bytes.Buffer
	rep, err := benchmark(context.Background(), s, &log)
	if err != nil {
		t.Fatalf("benchmark: %v; log:\n%s", err, log.String())
	}
	if keys, err := redis.Client(t).Keys(context.Background(), "fsbench-*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left: %v (%v)", keys, err)
	}
	return rep, log.String()
}

// TestRounds runs two cheap rows twice through benchmark, as make bench
// runs every row three times: each row is reported once, as its median
// round with every round's rate beside it, carrying its rounds for the
// paired ratios, and every round's keys are its own.
func TestRounds(t *testing.T) {
	rep, log := benchOnItsOwnRedis(t, settings{clients: 8, duration: 300 * time.Millisecond, only: []string{rowCeiling, rowPlain}, rounds: 2})
	if got := strings.Count(log, "flashsale-bench: round "); got != 2 {
		t.Errorf("%d rounds logged, want 2; log:\n%s", got, log)
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
}
