package redisbench

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/redistest"
)

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
			client, prefix := redistest.Client(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			res, err := Run(ctx, client, tt.path, Config{Prefix: prefix, Requests: requests})
			if err != nil {
				t.Fatalf("Run: %v", err)
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

func TestParseCSV(t *testing.T) {
	const header = `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"` + "\n"
	tests := []struct {
		name    string
		out     string
		wantRPS float64
		wantP50 time.Duration
		wantP99 time.Duration
		wantErr bool
	}{
		{name: "redis-benchmark 7.0 row",
			out:     header + `"EVALSHA abc 6 k","52631.58","1.150","0.200","1.063","1.855","2.551","5.103"` + "\n",
			wantRPS: 52631.58, wantP50: 1063 * time.Microsecond, wantP99: 2551 * time.Microsecond},
		{name: "header only, as after an error reply", out: header, wantErr: true},
		{name: "empty", out: "", wantErr: true},
		{name: "not a number", out: header + `"X","fast","1","1","1","1","1","1"` + "\n", wantErr: true},
		{name: "missing column", out: `"test","rps"` + "\n" + `"X","10"` + "\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rps, p50, p99, err := parseCSV([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if rps != tt.wantRPS || p50 != tt.wantP50 || p99 != tt.wantP99 {
				t.Errorf("got %v %v %v, want %v %v %v", rps, p50, p99, tt.wantRPS, tt.wantP50, tt.wantP99)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name     string
		path     Path
		requests int
		granted  int64
		wantErr  bool
	}{
		{name: "success granted all", path: Success, requests: 1000, granted: 1000},
		{name: "success lost a few to repeated ids", path: Success, requests: 1000, granted: 995},
		{name: "success granted nothing", path: Success, requests: 1000, granted: 0, wantErr: true},
		{name: "success granted more than called", path: Success, requests: 1000, granted: 1001, wantErr: true},
		{name: "sold out granted nothing", path: SoldOut, requests: 1000, granted: 0},
		{name: "sold out granted one", path: SoldOut, requests: 1000, granted: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := verify(tt.path, tt.requests, tt.granted); (err != nil) != tt.wantErr {
				t.Errorf("verify = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
