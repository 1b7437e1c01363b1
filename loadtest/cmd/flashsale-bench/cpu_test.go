package main

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    time.Duration
		wantErr bool
	}{
		{name: "plain name", line: "2244 (redis-server) S 1 2244 2244 0 -1 4194560 1234 0 0 0 209 128 0 0 20 0 5 0 1539 0 0",
			want: 3370 * time.Millisecond},
		{name: "name with spaces and parentheses", line: "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0",
			want: 100 * time.Millisecond},
		{name: "too short", line: "77 (x) R 1 2 3", wantErr: true},
		{name: "no name", line: "77 x R 1 2 3 4 5 6 7 8 9 10 11 12 13", wantErr: true},
		{name: "not a number", line: "77 (x) R 1 77 77 0 -1 0 0 0 0 0 seven 3 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tt.line))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseProcStat = %v, %v; want %v, error %t", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseInfoCPU(t *testing.T) {
	tests := []struct {
		name    string
		info    string
		want    time.Duration
		wantErr bool
	}{
		{name: "redis 7", info: "# CPU\r\nused_cpu_sys:1.283967\r\nused_cpu_user:2.086734\r\nused_cpu_sys_children:9.000000\r\n" +
			"used_cpu_user_children:9.000000\r\nused_cpu_sys_main_thread:1.281490\r\n", want: 3370701 * time.Microsecond},
		{name: "user missing", info: "used_cpu_sys:1.0\r\n", wantErr: true},
		{name: "garbage value", info: "used_cpu_sys:x\r\nused_cpu_user:1\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInfoCPU(tt.info)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseInfoCPU = %v, %v; want %v, error %t", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestListenInodes(t *testing.T) {
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 7496 1 0 100 0 0 10 0\n" +
		"   1: 0100007F:18EB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000   106        0 9999 1 0 100 0 0 10 0\n" +
		"   2: 00000000:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 10236 1 0 100 0 0 10 0\n" +
		"   3: 0100007F:18EB0 00000000:0000 0A 00000000:00000000 00:00000000 00000000   107        0 1 1 0 100 0 0 10 0\n"
	tests := []struct {
		name string
		port int
		want []string
	}{
		{name: "listening socket, not the connection on the same port", port: 6379, want: []string{"7496"}},
		{name: "any address", port: 3306, want: []string{"10236"}},
		{name: "nobody listens", port: 80, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := listenInodes([]byte(table), tt.port); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("listenInodes(%d) = %q, want %q", tt.port, got, tt.want)
			}
		})
	}
}

// TestListenerPIDFindsThisProcess listens on a port and looks the port up
// as the bench looks up Redis and MariaDB.
func TestListenerPIDFindsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	pid, err := listenerPID(port)
	if err != nil || pid != os.Getpid() {
		t.Errorf("listenerPID(%d) = %d, %v; want %d", port, pid, err, os.Getpid())
	}
	got, err := localServerPID(l.Addr().String(), func() (int, error) { return 0, errors.New("not asked") }, "x")
	if err != nil || got != os.Getpid() {
		t.Errorf("localServerPID = %d, %v; want %d", got, err, os.Getpid())
	}
	if _, err := localServerPID("10.1.2.3:"+strconv.Itoa(port), nil, "x"); err == nil {
		t.Error("localServerPID looked up a non-loopback address on this machine")
	}
}

func TestProcSourceSelfAdvances(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	src := procSource(procLoadGen, os.Getpid())
	before, err := src.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel's own account (getrusage) says this process
	// used 100 ms more: on a busy machine 100 ms of wall time can be far
	// less CPU.
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := used()
	for deadline := time.Now().Add(10 * time.Second); used()-start < 100*time.Millisecond && time.Now().Before(deadline); {
	}
	after, err := src.read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 100 ms of CPU shows as at least 50 ms, in ticks of 10 ms.
	if after-before < 50*time.Millisecond {
		t.Errorf("CPU advanced %v over %v of spinning", after-before, used()-start)
	}
}

func TestMeter(t *testing.T) {
	ctx := context.Background()
	counter := func(proc string, step time.Duration) cpuSource {
		var n time.Duration
		return cpuSource{proc: proc, read: func(context.Context) (time.Duration, error) { n += step; return n, nil }}
	}
	failAfter := func(proc string, calls int) cpuSource {
		var n int
		return cpuSource{proc: proc, read: func(context.Context) (time.Duration, error) {
			n++
			if n > calls {
				return 0, errors.New("gone")
			}
			return time.Second, nil
		}}
	}
	done := meter(ctx, []cpuSource{
		counter(procRedis, 3*time.Second),
		// Two instances of the service add up.
		counter(procService, time.Second), counter(procService, 2*time.Second),
		failAfter(procMySQL, 1),   // gone at the end: not measured
		failAfter(procLoadGen, 0), // never readable: not measured
	})
	got := done()
	want := cpuUse{procRedis: 3 * time.Second, procService: 3 * time.Second}
	if len(got) != len(want) || got[procRedis] != want[procRedis] || got[procService] != want[procService] {
		t.Errorf("meter = %v, want %v", got, want)
	}
}

func TestPerRequest(t *testing.T) {
	r := row{Requests: 200_000, CPU: cpuUse{procRedis: 4 * time.Second, procService: 0}}
	tests := []struct {
		name   string
		r      row
		proc   string
		want   float64
		wantOK bool
	}{
		{name: "measured", r: r, proc: procRedis, want: 20, wantOK: true},
		{name: "measured as zero", r: r, proc: procService, want: 0, wantOK: true},
		{name: "not measured", r: r, proc: procMySQL},
		{name: "no requests", r: row{CPU: r.CPU}, proc: procRedis},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.r.perRequest(tt.proc)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("perRequest(%s) = %v, %t; want %v, %t", tt.proc, got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if cells := r.cpuCells(); cells != "0.0\t20.0\t-\t-" {
		t.Errorf("cpuCells = %q", cells)
	}
}

func TestRecordCost(t *testing.T) {
	const n = 100_000
	unsynced := row{Name: rowSvcSuccessNoSync, Requests: n, Throughput: 20_000,
		CPU: cpuUse{procService: 3 * time.Second, procRedis: 2500 * time.Millisecond, procMySQL: 10 * time.Millisecond}}
	plain := row{Name: rowPlain, Requests: n, Throughput: 25_000}
	synced := row{Name: rowSvcSuccess, Requests: n, Throughput: 15_000,
		CPU: cpuUse{procService: 4200 * time.Millisecond, procRedis: 2800 * time.Millisecond, procMySQL: 2 * time.Second}}
	tests := []struct {
		name                    string
		unsynced, plain, synced row
		want                    string
	}{
		{name: "all three", unsynced: unsynced, plain: plain, synced: synced,
			want: "; 0.80x the req/s of plain-endpoint; service-success (syncer on) 0.75x of this, " +
				"the record's us per hold: service +12.0, redis +3.0, mysql +19.9"},
		{name: "plain endpoint not run", unsynced: unsynced, synced: synced,
			want: "; service-success (syncer on) 0.75x of this, the record's us per hold: service +12.0, redis +3.0, mysql +19.9"},
		{name: "success path failed", unsynced: unsynced, plain: plain, synced: row{Failure: "down"},
			want: "; 0.80x the req/s of plain-endpoint"},
		{name: "a process measured on one side only", unsynced: row{Requests: n, Throughput: 20_000, CPU: cpuUse{procRedis: time.Second}},
			synced: synced, want: "; service-success (syncer on) 0.75x of this, the record's us per hold: redis +18.0"},
		{name: "no CPU measured", unsynced: row{Requests: n, Throughput: 20_000}, synced: row{Requests: n, Throughput: 10_000},
			want: "; service-success (syncer on) 0.50x of this"},
		{name: "itself failed", unsynced: row{Failure: "verification"}, plain: plain, synced: synced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recordCost(tt.unsynced, tt.plain, tt.synced); got != tt.want {
				t.Errorf("recordCost = %q\nwant         %q", got, tt.want)
			}
		})
	}
}
