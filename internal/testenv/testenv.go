// Package testenv starts and stops the real servers that fault tests need:
// private redis-server and mariadbd processes, a toxiproxy proxy, and the
// flashsale binary.
//
// Fault tests kill and restart servers, so they must never share them: each
// server this package starts is a child process of the test, listening on a
// free 127.0.0.1 port with its files in a t.TempDir(), and is killed when the
// test ends. The shared Redis and MariaDB that the other integration tests
// use are never stopped or touched; the only thing done to the shared MariaDB
// is SharedMySQL creating and dropping a uniquely named database.
//
// A binary that is not installed, or a shared server that does not answer,
// skips the test, except under CI=true, where it fails: fault tests must never
// pass by skipping in CI. A server that is installed but does not come up
// always fails the test, with the tail of its log.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds on how long the package waits for a server. They are generous
// because CI machines run many test binaries at once; a healthy server on an
// idle machine needs well under a second.
const (
	startTimeout = 30 * time.Second
	exitTimeout  = 10 * time.Second // after SIGKILL
	stopGrace    = 15 * time.Second // after SIGTERM, before SIGKILL
	pollInterval = 20 * time.Millisecond
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before returning, so another process could take it
// before the caller binds it; servers that must keep their port across a
// restart have no better option, since they bind it themselves.
//
// The port is drawn below Linux's ephemeral range (32768 and up), where
// the kernel never puts the local end of an outgoing connection: a port
// from that range, released, was at times taken by one of the test's own
// client connections before the server bound it ("Failed listening on
// port"). Port+10000 is checked free too and stays below the range, since
// a Redis Cluster node listens there for its bus.
func FreePort(t testing.TB) int {
	t.Helper()
	const lo, hi = 10000, 22767 // port+10000 <= 32767
	for range 200 {
		port := lo + mathrand.IntN(hi-lo+1)
		if free(port) && free(port+10000) {
			return port
		}
	}
	t.Fatalf("testenv: no free port pair in %d..%d after 200 tries", lo, hi)
	return 0
}

// free reports whether port can be listened on now.
func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// inCI reports whether CI=true, where a missing prerequisite must fail the
// test rather than skip it.
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// unavailable ends the test because something it needs is not on this
// machine.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("testenv: %s (required under CI=true)", msg)
	}
	t.Skipf("testenv: %s", msg)
}

// lookBinary finds name on PATH or, because server binaries such as mariadbd
// live in sbin or libexec directories that a non-root PATH leaves out, in
// extraDirs.
func lookBinary(t testing.TB, name string, extraDirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range extraDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	unavailable(t, "%s is not installed (not on PATH nor in %v)", name, extraDirs)
	return ""
}

// logTail returns the end of a server's log, which is where the reason for a
// failed start usually is.
func logTail(path string) string {
	const maxBytes, maxLines = 8 << 10, 40
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > maxBytes {
		b = b[len(b)-maxBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return fmt.Sprintf("--- last lines of %s ---\n%s\n---", path, strings.Join(lines, "\n"))
}

// proc is one server process that can be killed and started again with the
// same command line, which is what lets a restarted server find its data and
// its clients find it on the same port.
type proc struct {
	name    string   // for messages
	path    string   // the binary
	args    []string // without the binary
	env     []string // nil inherits the test's environment
	dir     string   // working directory
	logPath string   // stdout and stderr are appended here, across restarts

	mu  sync.Mutex
	cur *run // the latest start; nil before the first
}

// run is one start of a proc. err is written before done is closed and read
// only after, so it needs no lock.
type run struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// start runs the process once more. It does not wait for it to be ready.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && !p.cur.exited() {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cur.cmd.Process.Pid)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log for %s: %w", p.name, err)
	}
	// The child gets its own copy of the descriptor, so ours can go now;
	// an *os.File as Stdout also means Wait does not wait on a copying
	// goroutine that a grandchild could keep alive.
	defer logFile.Close()

	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.cur = r
	return nil
}

func (p *proc) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// running reports whether the latest start has not exited yet.
func (p *proc) running() bool {
	r := p.current()
	return r != nil && !r.exited()
}

// kill sends SIGKILL to the process (and anything it forked) and waits for
// it to exit, so that a restart that follows never races the dying process
// for its port or its files.
func (p *proc) kill() error {
	r := p.current()
	if r == nil || r.exited() {
		return nil
	}
	if err := killTree(r.cmd); err != nil && !r.exited() {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGKILL", p.name, r.cmd.Process.Pid, exitTimeout)
	}
}

// stop asks the process to shut down with SIGTERM and kills it if it has not
// exited after grace. killed reports that it had to be killed, which for a
// server that shuts down cleanly is a bug the caller should report.
func (p *proc) stop(grace time.Duration) (killed bool, err error) {
	r := p.current()
	if r == nil || r.exited() {
		return false, nil
	}
	if err := terminate(r.cmd); err != nil && !r.exited() {
		return false, fmt.Errorf("terminate %s: %w", p.name, err)
	}
	select {
	case <-r.done:
		return false, nil
	case <-time.After(grace):
	}
	return true, p.kill()
}

// exitStatus describes how the latest start ended, for messages.
func (p *proc) exitStatus() string {
	r := p.current()
	switch {
	case r == nil:
		return "never started"
	case !r.exited():
		return "running"
	case r.err == nil:
		return "exit status 0"
	default:
		return r.err.Error()
	}
}

// waitReady polls ready until it succeeds, the process exits or timeout
// passes. Each poll gets a short deadline of its own, so one hung attempt
// cannot use up the whole budget.
func (p *proc) waitReady(timeout time.Duration, ready func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	r := p.current()
	var last error
	for {
		if r.exited() {
			return fmt.Errorf("%s exited while starting (%s)", p.name, p.exitStatus())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", p.name, timeout, last)
		}
		select {
		case <-r.done:
		case <-time.After(pollInterval):
		}
	}
}

// startAndWait starts p and waits until ready succeeds, failing the test
// with the log's tail if it does not.
func (p *proc) startAndWait(t testing.TB, ready func(ctx context.Context) error) {
	t.Helper()
	begin := time.Now()
	if err := p.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := p.waitReady(startTimeout, ready); err != nil {
		_ = p.kill()
		t.Fatalf("testenv: %v\n%s", err, logTail(p.logPath))
	}
	t.Logf("testenv: %s ready in %v", p.name, time.Since(begin).Round(time.Millisecond))
}

// Kill, Stop and cleanup share these so that every server type reports the
// same way.
func (p *proc) killT(t testing.TB) {
	t.Helper()
	if err := p.kill(); err != nil {
		t.Fatalf("testenv: %v\n%s", err, logTail(p.logPath))
	}
}

func (p *proc) stopT(t testing.TB) {
	t.Helper()
	killed, err := p.stop(stopGrace)
	if err != nil {
		t.Fatalf("testenv: %v\n%s", err, logTail(p.logPath))
	}
	if killed {
		t.Errorf("testenv: %s did not exit within %v of SIGTERM and was killed\n%s", p.name, stopGrace, logTail(p.logPath))
	}
}

// restartT stops a server that is still running (gracefully: a test that
// wants a crash calls Kill first) and starts it again.
func (p *proc) restartT(t testing.TB, ready func(ctx context.Context) error) {
	t.Helper()
	if p.running() {
		p.stopT(t)
	}
	p.startAndWait(t, ready)
}

// cleanupKill is registered before the first start, so that a test that
// fails half-way through starting a server still leaves no process behind.
func (p *proc) cleanupKill(t testing.TB) {
	t.Cleanup(func() {
		if err := p.kill(); err != nil {
			t.Errorf("testenv: cleanup: %v", err)
		}
	})
}
