package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	goredis "github.com/redis/go-redis/v9"
)

// The processes whose CPU every row reports per request, in the order of
// the table's columns.
const (
	procService = "service" // the HTTP server under test: flashsale, the plain endpoint or the ceiling
	procRedis   = "redis"
	procMySQL   = "mysql"
	procLoadGen = "loadgen" // the load generator: this process, or redis-benchmark
)

var procNames = []string{procService, procRedis, procMySQL, procLoadGen}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go builds for (the kernel fixes it for
// user space whatever CONFIG_HZ is).
const clockTicks = 100

// cpuSource reads the CPU time (user + system) one process has used so far.
type cpuSource struct {
	proc string // one of procNames
	read func(ctx context.Context) (time.Duration, error)
}

// procSource reads pid's utime + stime from /proc/<pid>/stat.
func procSource(proc string, pid int) cpuSource {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	return cpuSource{proc: proc, read: func(context.Context) (time.Duration, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		return parseProcStat(b)
	}}
}

// parseProcStat returns utime + stime of a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may itself hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %.80q: no command name", b)
	}
	// After ')': field 3 (state) is index 0, so utime (14) is 11, stime (15) 12.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat %.80q: %d fields after the name, want at least 13", b, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: field %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// redisInfoSource reads used_cpu_user + used_cpu_sys from INFO cpu: the
// same rusage /proc gives, for a Redis this machine cannot see the process of.
func redisInfoSource(rdb *goredis.Client) cpuSource {
	return cpuSource{proc: procRedis, read: func(ctx context.Context) (time.Duration, error) {
		s, err := rdb.Info(ctx, "cpu").Result()
		if err != nil {
			return 0, err
		}
		return parseInfoCPU(s)
	}}
}

// parseInfoCPU adds used_cpu_user and used_cpu_sys (seconds, microsecond
// precision) of an INFO cpu reply.
func parseInfoCPU(info string) (time.Duration, error) {
	var total time.Duration
	found := 0
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || (name != "used_cpu_user" && name != "used_cpu_sys") {
			continue
		}
		secs, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu %s: %w", name, err)
		}
		total += time.Duration(math.Round(secs*1e6)) * time.Microsecond
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("INFO cpu: used_cpu_user and used_cpu_sys not both found")
	}
	return total, nil
}

// serverSources finds Redis and MySQL. A server on a loopback address is
// found by its listening port (/proc/net/tcp and every process's open
// sockets), or else by the pid it reports (INFO server process_id, MySQL's
// @@pid_file) when that process's name matches; Redis elsewhere is read
// through INFO cpu. A server not found is left out and shows as "-", with
// the reason in notes.
func serverSources(ctx context.Context, rdb *goredis.Client, redisAddr string, db *sql.DB, mysqlAddr string) (srcs []cpuSource, notes []string) {
	if pid, err := localServerPID(redisAddr, func() (int, error) { return redisReportedPID(ctx, rdb) }, "redis"); err == nil {
		srcs = append(srcs, procSource(procRedis, pid))
	} else {
		srcs = append(srcs, redisInfoSource(rdb))
		notes = append(notes, "redis CPU from INFO cpu ("+err.Error()+")")
	}
	if pid, err := localServerPID(mysqlAddr, func() (int, error) { return mysqlReportedPID(ctx, db) }, "mysqld", "mariadbd"); err == nil {
		srcs = append(srcs, procSource(procMySQL, pid))
	} else {
		notes = append(notes, "mysql CPU not measured ("+err.Error()+")")
	}
	return srcs, notes
}

// localServerPID is the pid of the process listening on addr, if addr is on
// this machine: first by port, then by the pid the server reports, checked
// against the process's name (a server in a container reports a pid of
// another namespace).
func localServerPID(addr string, reported func() (int, error), names ...string) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0, fmt.Errorf("%s is not a loopback address", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return 0, fmt.Errorf("port of %s: %w", addr, err)
	}
	if pid, err := listenerPID(port); err == nil {
		return pid, nil
	}
	pid, err := reported()
	if err != nil {
		return 0, err
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	for _, n := range names {
		if strings.TrimSpace(string(comm)) == n {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("pid %d is %q, not %s", pid, strings.TrimSpace(string(comm)), strings.Join(names, " or "))
}

func redisReportedPID(ctx context.Context, rdb *goredis.Client) (int, error) {
	s, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

func mysqlReportedPID(ctx context.Context, db *sql.DB) (int, error) {
	var path string
	if err := db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&path); err != nil {
		return 0, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// listenerPID finds the process holding a listening TCP socket on port.
func listenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, ino := range listenInodes(b, port) {
			inodes["socket:["+ino+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no socket listening on port %d in /proc/net/tcp", port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && inodes[link] {
			pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
			if err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process of ours holds the socket listening on port %d", port)
}

// listenInodes returns the inodes of the sockets in a /proc/net/tcp table
// listening (state 0A) on port.
func listenInodes(table []byte, port int) []string {
	var out []string
	want := fmt.Sprintf(":%04X", port)
	for i, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 {
			continue // the header, or a blank line
		}
		if strings.HasSuffix(f[1], want) && f[3] == "0A" {
			out = append(out, f[9])
		}
	}
	return out
}

// cpuUse is what each process spent over one row.
type cpuUse map[string]time.Duration

// meter starts measuring srcs; the func it returns reads them again and
// gives each one's use since. A source that cannot be read at either end is
// left out rather than guessed.
func meter(ctx context.Context, srcs []cpuSource) func() cpuUse {
	before := readAll(ctx, srcs)
	return func() cpuUse {
		after := readAll(ctx, srcs)
		use := cpuUse{}
		for proc, a := range after {
			if b, ok := before[proc]; ok && a >= b {
				use[proc] += a - b
			}
		}
		return use
	}
}

func readAll(ctx context.Context, srcs []cpuSource) map[string]time.Duration {
	got := make(map[string]time.Duration, len(srcs))
	for _, s := range srcs {
		if d, err := s.read(ctx); err == nil {
			got[s.proc] += d
		}
	}
	return got
}

// perRequest is proc's CPU per request of the row in microseconds; false
// where it was not measured.
func (r row) perRequest(proc string) (float64, bool) {
	d, ok := r.CPU[proc]
	if !ok || r.Requests <= 0 {
		return 0, false
	}
	return float64(d) / float64(time.Microsecond) / float64(r.Requests), true
}

// selfSource is this process: the load generator of the HTTP rows.
func selfSource() cpuSource { return procSource(procLoadGen, os.Getpid()) }

// The table's CPU columns: microseconds per request of each process.
var (
	cpuHeader = "svc us/req\tredis us/req\tmysql us/req\tgen us/req"
	cpuDashes = "-\t-\t-\t-"
)

// cpuCells are the row's CPU columns, "-" where a process was not measured.
func (r row) cpuCells() string {
	cells := make([]string, len(procNames))
	for i, p := range procNames {
		cells[i] = "-"
		if us, ok := r.perRequest(p); ok {
			cells[i] = strconv.FormatFloat(us, 'f', 1, 64)
		}
	}
	return strings.Join(cells, "\t")
}

// cpuPerRequest is the row's CPU in microseconds per request by process,
// nil when nothing was measured.
func (r row) cpuPerRequest() map[string]float64 {
	var m map[string]float64
	for _, p := range procNames {
		if us, ok := r.perRequest(p); ok {
			if m == nil {
				m = map[string]float64{}
			}
			m[p] = us
		}
	}
	return m
}

// measure starts measuring Redis, MySQL and extra (the row's own
// processes); the func it returns gives what each spent since.
func (b *bench) measure(ctx context.Context, extra ...cpuSource) func() cpuUse {
	return meter(ctx, append(slices.Clone(b.cpuBase), extra...))
}

// mysqlAddr is the TCP address of the DSN's server, "" when it is not one.
func mysqlAddr(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil || cfg.Net != "tcp" {
		return ""
	}
	return cfg.Addr
}
