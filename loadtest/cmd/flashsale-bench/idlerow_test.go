package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestIdleTarget(t *testing.T) {
	tests := []struct {
		name     string
		idle     []idleRow
		want     string
		wantPass bool
	}{
		{name: "under 5% with 4 instances", wantPass: true, want: pass, idle: []idleRow{
			{Items: 10_000, Instances: 1, RedisCPU: 0.33}, {Items: 10_000, Instances: 4, RedisCPU: 0.049}}},
		{name: "5% or more with 4 instances", want: fail, idle: []idleRow{
			{Items: 10_000, Instances: 1, RedisCPU: 0.01}, {Items: 10_000, Instances: 4, RedisCPU: 0.05}}},
		{name: "4 instances not measured", want: notRun, wantPass: true, idle: []idleRow{{Items: 10_000, Instances: 2, RedisCPU: 0.6}}},
		{name: "not run", want: notRun, wantPass: true},
		{name: "failed", want: notRun, idle: []idleRow{{Items: 10_000, Failure: "no redis-server"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := report{Idle: tt.idle}
			rep.evaluate()
			var got *check
			for i := range rep.Checks {
				if strings.HasPrefix(rep.Checks[i].Name, "idle:") {
					got = &rep.Checks[i]
				}
			}
			if got == nil || got.Verdict != tt.want {
				t.Fatalf("idle check %+v, want %s", got, tt.want)
			}
			if rep.Pass != tt.wantPass {
				t.Errorf("Pass = %t, want %t", rep.Pass, tt.wantPass)
			}
		})
	}
}

func TestWriteIdle(t *testing.T) {
	rep := report{Idle: []idleRow{
		{Items: 10_000, Instances: 1, Window: 10 * time.Second, RedisCPU: 0.329, Commands: 185_406.4, InstanceCPU: 0.233, MySQLCPU: 0.046},
		{Items: 100_000, Instances: 4, Window: 10 * time.Second, RedisCPU: 0.021, Commands: 1_764, InstanceCPU: 0.05, MySQLCPU: -1},
		{Items: 10_000, Failure: "redis-server exited"},
	}}
	var out bytes.Buffer
	if err := rep.writeIdle(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"32.9%", "185406", "23.3%", "4.6%", "FAILED: redis-server exited"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("idle table lacks %q:\n%s", want, out.String())
		}
	}
	// MySQL not measured reads "-", in its own column.
	for line := range strings.SplitSeq(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 6 && f[1] == "100000" && (f[5] != "5.0%" || f[6] != "-") {
			t.Errorf("row without MySQL's CPU: %q, want 5.0%% then -", line)
		}
	}
}

func TestInfoInt(t *testing.T) {
	info := "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1849\r\n"
	if n, err := infoInt(info, "total_commands_processed"); err != nil || n != 1849 {
		t.Errorf("infoInt = %d, %v; want 1849", n, err)
	}
	if _, err := infoInt(info, "instantaneous_ops_per_sec"); err == nil {
		t.Error("infoInt found a field that is not there")
	}
}

func TestShare(t *testing.T) {
	if got := share(2500*time.Millisecond, 10*time.Second); got != 0.25 {
		t.Errorf("share = %v, want 0.25", got)
	}
	if got := share(time.Second, 0); got != 0 {
		t.Errorf("share over nothing = %v, want 0", got)
	}
}

func TestTopCommands(t *testing.T) {
	before := parseCommandStats("# Commandstats\r\ncmdstat_evalsha:calls=100,usec=9,usec_per_call=0.09,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_xreadgroup:calls=10,usec=1,usec_per_call=0.1\r\ncmdstat_ping:calls=5,usec=1,usec_per_call=0.2\r\n")
	after := parseCommandStats("# Commandstats\r\ncmdstat_evalsha:calls=20100,usec=9,usec_per_call=0.09\r\n" +
		"cmdstat_xreadgroup:calls=10010,usec=1,usec_per_call=0.1\r\ncmdstat_ping:calls=5,usec=1\r\n" +
		"cmdstat_zrangebyscore:calls=20000,usec=1\r\ncmdstat_hlen:calls=20000,usec=1\r\n")
	got := formatCommands(topCommands(before, after, 10*time.Second, 3))
	// Ties go by name; a command not called in the window is left out.
	if want := "evalsha 2.0k/s, hlen 2.0k/s, zrangebyscore 2.0k/s"; got != want {
		t.Errorf("top commands %q, want %q", got, want)
	}
	if got := formatCommands(topCommands(before, after, 10*time.Second, 9)); !strings.HasSuffix(got, "xreadgroup 1.0k/s") {
		t.Errorf("all commands %q, want xreadgroup last and no ping", got)
	}
}
