package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the bench when the ceiling
// row re-executes itself with the hidden flag.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && strings.HasPrefix(os.Args[1], "-internal-") {
		os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestParseOnly(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{name: "empty runs everything", in: "", want: nil},
		{name: "blank runs everything", in: "  ", want: nil},
		{name: "one row", in: "http-ceiling", want: []string{"http-ceiling"}},
		{name: "spaces and repeats", in: "mysql-naive, http-ceiling,mysql-naive", want: []string{"mysql-naive", "http-ceiling"}},
		{name: "the idle rows", in: "idle,plain-endpoint", want: []string{"idle", "plain-endpoint"}},
		{name: "unknown row", in: "http-ceiling,ceiling", wantErr: true},
		{name: "empty item", in: "http-ceiling,", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOnly(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseOnly(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseOnly(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "unknown flag", args: []string{"-nope"}},
		{name: "unknown row", args: []string{"-only", "everything"}},
		{name: "no clients", args: []string{"-clients", "0"}},
		{name: "no duration", args: []string{"-duration", "0s"}},
		{name: "no rounds", args: []string{"-rounds", "0"}},
		{name: "too many rounds", args: []string{"-rounds", "21"}},
		{name: "stray argument", args: []string{"now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tt.args, func(string) string { return "" }, &out, &errOut); code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr: %s", code, exitUsage, errOut.String())
			}
		})
	}
}

func TestUsageHidesInternalFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, func(string) string { return "" }, &out, &errOut); code != exitOK {
		t.Fatalf("-h exit code %d", code)
	}
	if strings.Contains(errOut.String(), internalCeilingFlag) {
		t.Errorf("usage shows the internal flag:\n%s", errOut.String())
	}
	if !strings.Contains(errOut.String(), "-duration") {
		t.Errorf("usage lacks -duration:\n%s", errOut.String())
	}
}

func ptr(n int64) *int64 { return &n }

// passingRows meet every target: the plain endpoint's rate with its
// Redis CPU per hold, 20 us of service CPU per hold, 0.9 of the ceiling,
// p99s of 5 ms, 40 times the row lock's purchases.
func passingRows() []row {
	return []row{
		{Name: rowRedisSuccess, Throughput: 50_000, Purchases: 50_000},
		{Name: rowRedisSoldOut, Throughput: 60_000},
		{Name: rowCeiling, Throughput: 40_000},
		{Name: rowPlain, Requests: 400_000, Throughput: 40_000, Purchases: 40_000, Oversold: ptr(0),
			CPU: cpuUse{procService: 12 * time.Second, procRedis: 8 * time.Second, procLoadGen: 10 * time.Second}},
		{Name: rowSvcSuccess, Requests: 400_000, Throughput: 40_000, Purchases: 40_000, P99: 5 * time.Millisecond, Oversold: ptr(0),
			CPU: cpuUse{procService: 8 * time.Second, procRedis: 8 * time.Second, procMySQL: 4 * time.Second, procLoadGen: 10 * time.Second}},
		{Name: rowSvcSoldOut, Throughput: 36_000, P99: 5 * time.Millisecond, Oversold: ptr(0)},
		{Name: rowSvcFlashCrowd, Throughput: 30_000, Oversold: ptr(0)},
		{Name: rowSvcSuccessLimited, Throughput: 34_000, P99: 5 * time.Millisecond, Oversold: ptr(0)},
		{Name: rowSvcSoldOutLimited, Throughput: 32_000, P99: 5 * time.Millisecond, Oversold: ptr(0)},
		{Name: rowSvcSuccessAck, Throughput: 33_000, P99: 6 * time.Millisecond, Oversold: ptr(0)},    // no target
		{Name: rowSvcSuccessNoSync, Throughput: 48_000, P99: 4 * time.Millisecond, Oversold: ptr(0)}, // no target
		{Name: rowNaive, Throughput: 3_000, Purchases: 3_000, Oversold: ptr(0)},
		{Name: rowForUpdate, Throughput: 1_000, Purchases: 1_000, Oversold: ptr(0)},
		{Name: rowConditional, Throughput: 1_500, Purchases: 1_500, Oversold: ptr(0)},
		{Name: rowIncident, Throughput: 500, Oversold: ptr(45)}, // expected, not checked
	}
}

// The checks in the order evaluate makes them.
const (
	chkVsPlain = iota
	chkRedisCPU
	chkSvcCPU
	chkP99Success
	chkP99SoldOut
	chkVsCeiling
	chkVsForUpdate
	chkLimitedSoldOut
	chkLimitedSuccess
	chkIdle
	chkOversold
)

func TestEvaluate(t *testing.T) {
	with := func(name string, change func(*row)) []row {
		rows := passingRows()
		for i := range rows {
			if rows[i].Name == name {
				change(&rows[i])
			}
		}
		return rows
	}
	without := func(name string) []row {
		return slices.DeleteFunc(passingRows(), func(r row) bool { return r.Name == name })
	}
	tests := []struct {
		name     string
		rows     []row
		wantPass bool
		// verdicts by check index, for the checks the case is about
		want map[int]string
	}{
		{name: "every target met", rows: passingRows(), wantPass: true,
			want: map[int]string{chkVsPlain: pass, chkRedisCPU: pass, chkSvcCPU: pass, chkP99Success: pass,
				chkP99SoldOut: pass, chkVsCeiling: pass, chkVsForUpdate: pass, chkLimitedSoldOut: pass, chkLimitedSuccess: pass,
				chkIdle: notRun, chkOversold: pass}},
		{name: "limits cost the sold-out path over 0.8 of the ceiling", rows: with(rowSvcSoldOutLimited, func(r *row) { r.Throughput = 31_999 }),
			want: map[int]string{chkLimitedSoldOut: fail, chkLimitedSuccess: pass}},
		{name: "limits cost the success path over 15 %", rows: with(rowSvcSuccessLimited, func(r *row) { r.Throughput = 33_999 }),
			want: map[int]string{chkLimitedSuccess: fail, chkLimitedSoldOut: pass}},
		{name: "success path below the plain endpoint", rows: with(rowSvcSuccess, func(r *row) { r.Throughput = 39_999 }),
			want: map[int]string{chkVsPlain: fail}},
		{name: "Redis CPU per hold above the plain endpoint's", rows: with(rowSvcSuccess, func(r *row) { r.CPU[procRedis] += time.Millisecond }),
			want: map[int]string{chkRedisCPU: fail, chkSvcCPU: pass}},
		{name: "service CPU per hold over 25us", rows: with(rowSvcSuccess, func(r *row) { r.CPU[procService] = 10*time.Second + time.Millisecond }),
			want: map[int]string{chkSvcCPU: fail, chkRedisCPU: pass}},
		{name: "service CPU of exactly 25us passes", rows: with(rowSvcSuccess, func(r *row) { r.CPU[procService] = 10 * time.Second }),
			wantPass: true, want: map[int]string{chkSvcCPU: pass}},
		{name: "service CPU not measured is n/a", rows: with(rowSvcSuccess, func(r *row) { delete(r.CPU, procService) }),
			wantPass: true, want: map[int]string{chkSvcCPU: notRun, chkRedisCPU: pass}},
		{name: "plain endpoint not run: its checks are n/a", rows: without(rowPlain), wantPass: true,
			want: map[int]string{chkVsPlain: notRun, chkRedisCPU: notRun, chkSvcCPU: pass}},
		{name: "success p99 over 5ms", rows: with(rowSvcSuccess, func(r *row) { r.P99 = 5*time.Millisecond + 1 }),
			want: map[int]string{chkP99Success: fail, chkP99SoldOut: pass}},
		{name: "sold-out p99 over 5ms", rows: with(rowSvcSoldOut, func(r *row) { r.P99 = 6 * time.Millisecond }),
			want: map[int]string{chkP99SoldOut: fail}},
		{name: "sold-out path below 0.9 of the ceiling", rows: with(rowSvcSoldOut, func(r *row) { r.Throughput = 35_999 }),
			want: map[int]string{chkVsCeiling: fail}},
		{name: "under 20 times the row lock", rows: with(rowForUpdate, func(r *row) { r.Purchases = 2_001 }),
			want: map[int]string{chkVsForUpdate: fail}},
		{name: "service oversold", rows: with(rowSvcFlashCrowd, func(r *row) { r.Oversold = ptr(1) }),
			want: map[int]string{chkOversold: fail}},
		{name: "ceiling not run: its ratio is n/a, not a failure", rows: without(rowCeiling), wantPass: true,
			want: map[int]string{chkVsCeiling: notRun, chkVsPlain: pass}},
		{name: "a failed row is n/a in the checks and fails the run", rows: with(rowPlain, func(r *row) { r.Failure = "boom" }),
			want: map[int]string{chkVsPlain: notRun, chkRedisCPU: notRun}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := report{Rows: tt.rows}
			rep.evaluate()
			if rep.Pass != tt.wantPass {
				t.Errorf("Pass = %t, want %t; checks %+v", rep.Pass, tt.wantPass, rep.Checks)
			}
			for i, want := range tt.want {
				if got := rep.Checks[i].Verdict; got != want {
					t.Errorf("check %q = %s, want %s (%+v)", rep.Checks[i].Name, got, want, rep.Checks[i])
				}
			}
		})
	}
}

func TestWriteReport(t *testing.T) {
	rep := report{RunID: "abc", Clients: 64, Duration: 10 * time.Second, Rows: passingRows()}
	rep.Rows[2].Failure = "the ceiling did not start"
	rep.evaluate()

	var table bytes.Buffer
	if err := rep.write(&table, false); err != nil {
		t.Fatalf("write table: %v", err)
	}
	for _, want := range append(slices.Clone(rowNames), "FAILED: the ceiling did not start", "n/a (http-ceiling failed)", "overall: FAIL",
		"svc us/req", "<= 25.0us", "<= 20.0us") {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}

	var js bytes.Buffer
	if err := rep.write(&js, true); err != nil {
		t.Fatalf("write JSON: %v", err)
	}
	var got struct {
		Clients int `json:"clients"`
		Rows    []struct {
			Name     string             `json:"name"`
			P99MS    float64            `json:"p99_ms"`
			Oversold *int64             `json:"oversold"`
			CPU      map[string]float64 `json:"cpu_us_per_request"`
		} `json:"rows"`
		Checks []check `json:"checks"`
		Pass   bool    `json:"pass"`
	}
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("JSON: %v\n%s", err, js.String())
	}
	if got.Clients != 64 || got.Pass || len(got.Rows) != len(rowNames) || len(got.Checks) != len(rep.Checks) {
		t.Errorf("JSON = %+v", got)
	}
	if r := got.Rows[4]; r.Name != rowSvcSuccess || r.P99MS != 5 || r.Oversold == nil || *r.Oversold != 0 {
		t.Errorf("service-success in JSON = %+v", r)
	}
	if cpu := got.Rows[4].CPU; cpu[procService] != 20 || cpu[procRedis] != 20 || cpu[procMySQL] != 10 || cpu[procLoadGen] != 25 {
		t.Errorf("service-success CPU in JSON = %v", cpu)
	}
	if got.Rows[0].Oversold != nil {
		t.Errorf("redis row oversold = %v, want null", *got.Rows[0].Oversold)
	}
}

func TestCleanupsRunOnceLastFirst(t *testing.T) {
	var c cleanups
	var order []string
	c.add(func(context.Context) error { order = append(order, "first"); return nil })
	early := c.add(func(context.Context) error { order = append(order, "early"); return errors.New("early failed") })
	c.add(func(context.Context) error { order = append(order, "last"); return nil })

	early()
	err := c.run(context.Background())
	if want := []string{"early", "last", "first"}; !slices.Equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
	if err == nil || !strings.Contains(err.Error(), "early failed") {
		t.Errorf("run error = %v, want the early cleanup's error", err)
	}
}

// TestCeilingRow starts the ceiling as a process of its own (this test
// binary, through TestMain) and loads it briefly, as make bench does.
func TestCeilingRow(t *testing.T) {
	var log bytes.Buffer
	b := &bench{s: settings{clients: 8, duration: 300 * time.Millisecond}, log: &log}
	var rows []row
	if err := b.ceilingRow(context.Background(), func(r row) { rows = append(rows, r) }); err != nil {
		t.Fatalf("ceilingRow: %v", err)
	}
	if err := b.cleanup.run(context.Background()); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if len(rows) != 1 {
		t.Fatalf("rows %+v, want one", rows)
	}
	r := rows[0]
	if r.Failure != "" || r.Errors != 0 || r.Requests == 0 || r.Throughput <= 0 {
		t.Errorf("ceiling row %+v; log:\n%s", r, log.String())
	}
}

// TestMedianRow: a row of several rounds reports its median round whole,
// and a failed or overselling round in place of any median.
func TestMedianRow(t *testing.T) {
	oversold := int64(3)
	none := int64(0)
	tests := []struct {
		name       string
		rounds     []row
		wantRate   float64
		wantDetail string
	}{
		{name: "one round is itself",
			rounds:   []row{{Throughput: 10, Detail: "d"}},
			wantRate: 10, wantDetail: "d"},
		{name: "three rounds: the median, with every rate",
			rounds:   []row{{Throughput: 30, Detail: "a"}, {Throughput: 10, Detail: "b"}, {Throughput: 20, Detail: "c", Oversold: &none}},
			wantRate: 20, wantDetail: "c; median of 3 rounds, req/s 30, 10, 20"},
		{name: "two rounds: the lower",
			rounds:   []row{{Throughput: 30, Detail: "a"}, {Throughput: 10, Detail: "b"}},
			wantRate: 10, wantDetail: "b; median of 2 rounds, req/s 30, 10"},
		{name: "a failed round is reported",
			rounds:   []row{{Throughput: 30}, {Throughput: 20}, {Throughput: 0, Failure: "boom", Detail: "f"}},
			wantRate: 0, wantDetail: "f; median of 3 rounds, req/s 30, 20, 0"},
		{name: "an overselling round is reported",
			rounds:   []row{{Throughput: 30}, {Throughput: 25, Oversold: &oversold, Detail: "o"}, {Throughput: 20}},
			wantRate: 25, wantDetail: "o; median of 3 rounds, req/s 30, 25, 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := medianRow(tt.rounds)
			if got.Throughput != tt.wantRate || got.Detail != tt.wantDetail {
				t.Errorf("medianRow = %v req/s, %q; want %v, %q", got.Throughput, got.Detail, tt.wantRate, tt.wantDetail)
			}
		})
	}
}

// TestPairedRatio: rows of several rounds are compared round by round, so a
// round on a slow machine is set against the same round's other row.
func TestPairedRatio(t *testing.T) {
	rate := func(r *row) float64 { return r.Throughput }
	rounds := func(rates ...float64) *row {
		r := &row{Throughput: rates[0]}
		for _, v := range rates {
			r.rounds = append(r.rounds, row{Throughput: v})
		}
		return r
	}
	tests := []struct {
		name     string
		num, den *row
		want     float64
	}{
		{"one round each", &row{Throughput: 8}, &row{Throughput: 10}, 0.8},
		// Medians 40 and 50 would say 0.8; the rounds say 1.0, 1.0, 0.5.
		{"three rounds: the median of the rounds' ratios", rounds(40, 50, 10), rounds(40, 50, 20), 1.0},
		{"two rounds: the lower", rounds(9, 5), rounds(10, 10), 0.5},
		{"rounds that differ in number: the rows themselves", rounds(9, 5), rounds(10, 10, 10), 0.9},
		{"a zero denominator", &row{Throughput: 8}, &row{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pairedRatio(tt.num, tt.den, rate); got != tt.want {
				t.Errorf("pairedRatio = %v, want %v", got, tt.want)
			}
		})
	}
}
