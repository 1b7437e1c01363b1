//go:build integration

package redisbench

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/redistest"
	"github.com/flashsale/flashsale/internal/testenv"
)

// TestRun and TestRunRefuses drive redis-benchmark against the real Redis
// (see internal/redistest), so they are built only with the integration tag
// (make test-integration, make test).

func TestRun(t *testing.T) {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("redis-benchmark is required under CI=true: %v", err)
		}
		t.Skipf("redis-benchmark not installed: %v", err)
	}
	const requests = 2000
	tests := []struct {
		path       Path
		minGranted int64
		maxGranted int64
	}{
		// An id repeated by chance (odds of 0.2% per run for any repeat)
		// is replayed, not granted; five would take odds of about 1e-15.
		{path: Success, minGranted: requests - 4, maxGranted: requests},
		{path: SoldOut, minGranted: 0, maxGranted: 0},
	}
	for _, tt := range tests {
		t.Run(tt.path.String(), func(t *testing.T) {
			// A Redis of its own: another package's test flushing the shared
			// Redis's scripts between the load and redis-benchmark's
			// EVALSHA made this fail with NOSCRIPT.
			client, prefix := testenv.StartRedis(t, testenv.RedisOptions{}).Client(t), "redisbench"
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			var arounds, dones int
			res, err := Run(ctx, client, tt.path, Config{Prefix: prefix, Requests: requests,
				Around: func() func() { arounds++; return func() { dones++ } }})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if arounds != 1 || dones != 1 || res.ClientCPU <= 0 {
				t.Errorf("Around called %d times, its end %d times, redis-benchmark's CPU %v: want once, once, above zero",
					arounds, dones, res.ClientCPU)
			}
			t.Logf("%s: %.0f calls/s, p50 %v, p99 %v", tt.path, res.Throughput, res.P50, res.P99)
			if res.Granted < tt.minGranted || res.Granted > tt.maxGranted {
				t.Errorf("granted %d, want %d..%d", res.Granted, tt.minGranted, tt.maxGranted)
			}
			if res.Throughput <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
				t.Errorf("implausible figures: %+v", res)
			}
			if res.Clients != 64 || res.Requests != requests {
				t.Errorf("clients %d requests %d, want 64 and %d", res.Clients, res.Requests, requests)
			}
			if n, err := client.Keys(ctx, prefix+"*").Result(); err != nil || len(n) != 0 {
				t.Errorf("keys left under %s: %v (%v)", prefix, n, err)
			}
		})
	}
}

func TestRunRefuses(t *testing.T) {
	client, prefix := redistest.Client(t)
	tests := []struct {
		name string
		path Path
		cfg  Config
	}{
		{name: "unknown path", path: Path(0), cfg: Config{Prefix: prefix, Requests: 1}},
		{name: "no prefix", path: Success, cfg: Config{Requests: 1}},
		{name: "glob in prefix", path: Success, cfg: Config{Prefix: prefix + "*", Requests: 1}},
		{name: "no requests", path: Success, cfg: Config{Prefix: prefix}},
		{name: "negative clients", path: Success, cfg: Config{Prefix: prefix, Requests: 1, Clients: -1}},
		{name: "missing binary", path: SoldOut, cfg: Config{Prefix: prefix, Requests: 1, Binary: "/nonexistent/redis-benchmark"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res, err := Run(context.Background(), client, tt.path, tt.cfg); err == nil {
				t.Fatalf("Run succeeded with %+v, want an error", res)
			}
		})
	}
}
