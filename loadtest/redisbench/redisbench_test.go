package redisbench

import (
	"testing"
	"time"
)

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
