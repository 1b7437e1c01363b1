package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// flashsalePkg is the command BuildFlashsale builds.
const flashsalePkg = "github.com/flashsale/flashsale/app"

type build struct {
	once sync.Once
	path string
	err  error
}

// The binary with the race detector, and without.
var flashsaleBuild, flashsaleFastBuild build

// BuildFlashsale builds the flashsale binary with the race detector and
// returns its path. The build runs once per test binary, however many tests
// ask; its outcome, failure included, is reused.
//
// The binary goes in a directory of its own under os.TempDir() that is left
// behind when the test binary exits: a package has no hook that runs after
// its last test except TestMain, and one directory per `go test` run is left
// for the OS's temp cleanup. A failed build fails the test with the
// compiler's output; no go command on PATH skips it (fails under CI=true).
func BuildFlashsale(t testing.TB) string {
	t.Helper()
	return flashsaleBuild.get(t, "-race")
}

// BuildFlashsaleFast is BuildFlashsale without the race detector, for the
// tests that measure cost or time with a large catalogue, where its 5-10x
// slowdown would measure the detector (every other test runs the race
// binary).
func BuildFlashsaleFast(t testing.TB) string {
	t.Helper()
	return flashsaleFastBuild.get(t)
}

func (b *build) get(t testing.TB, flags ...string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		unavailable(t, "no go command on PATH to build %s: %v", flashsalePkg, err)
	}
	b.once.Do(func() {
		begin := time.Now()
		b.path, b.err = buildFlashsale(goCmd, flags...)
		if b.err == nil {
			t.Logf("testenv: built %s %v in %v", flashsalePkg, flags, time.Since(begin).Round(time.Millisecond))
		}
	})
	if b.err != nil {
		t.Fatalf("testenv: %v", b.err)
	}
	return b.path
}

func buildFlashsale(goCmd string, flags ...string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "flashsale-testenv-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "flashsale")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append([]string{"build"}, flags...), "-o", bin, flashsalePkg)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("go %s in %s: %v\n%s", strings.Join(args, " "), root, err, tailString(string(out)))
	}
	return bin, nil
}

// moduleRoot walks up from the working directory, which go test sets to
// the package under test, to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// Service is a flashsale process that a test may kill and restart.
type Service struct {
	url     string // "" for a process without an HTTP server
	logPath string
	p       *proc
	ready   func(ctx context.Context) error
}

// StartService runs bin (from BuildFlashsale) with args, "serve" when none
// are given, and waits up to 30s until GET /healthz answers 200. It is
// killed when the test ends, and the test fails if the process's output
// reports a data race.
//
// The process gets the test's environment minus every FLASHSALE_* variable,
// so a developer's shell settings cannot change what a test exercises, then
// env, then FLASHSALE_HTTP_ADDR, which StartService sets to a free port of
// its own and env must not contain.
func StartService(t testing.TB, bin string, env map[string]string, args ...string) *Service {
	t.Helper()
	if _, ok := env["FLASHSALE_HTTP_ADDR"]; ok {
		t.Fatalf("testenv: StartService sets FLASHSALE_HTTP_ADDR itself; leave it out of env")
	}
	if len(args) == 0 {
		args = []string{"serve"}
	}
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
	s := newService(t, bin, env, args, "flashsale on "+addr, "FLASHSALE_HTTP_ADDR="+addr)
	s.url = "http://" + addr
	s.ready = s.healthy
	s.p.startAndWait(t, s.ready)
	return s
}

// StartSyncer runs `bin sync`, which has no HTTP server, with the
// environment StartService would give it, and waits up to 30s until it logs
// that it is syncing (it has opened Redis and the record). env must leave
// FLASHSALE_LOG_LEVEL at info or below, or that line never comes.
func StartSyncer(t testing.TB, bin string, env map[string]string) *Service {
	t.Helper()
	s := newService(t, bin, env, []string{"sync"}, "flashsale sync")
	s.ready = func(context.Context) error {
		if !strings.Contains(s.Log(), "flashsale syncing") {
			return errors.New(`no "flashsale syncing" in the log yet`)
		}
		return nil
	}
	s.p.startAndWait(t, s.ready)
	return s
}

// newService prepares the process (not started): its environment, log, and
// the cleanups that kill it and check its log for data races.
func newService(t testing.TB, bin string, env map[string]string, args []string, name string, extraEnv ...string) *Service {
	t.Helper()
	var childEnv []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLASHSALE_") {
			childEnv = append(childEnv, kv)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		childEnv = append(childEnv, k+"="+env[k]) // exec.Cmd keeps the last of duplicate keys
	}
	childEnv = append(childEnv, extraEnv...)

	dir := t.TempDir()
	s := &Service{logPath: filepath.Join(dir, "service.log")}
	s.p = &proc{name: name, path: bin, args: args, env: childEnv, dir: dir, logPath: s.logPath}
	// Registered before the kill, so it runs after it: the log is complete.
	t.Cleanup(func() {
		if log := s.Log(); strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("testenv: the flashsale process reported a data race:\n%s", log)
		}
	})
	s.p.cleanupKill(t)
	return s
}

var healthClient = &http.Client{Timeout: time.Second}

func (s *Service) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return nil
}

// URL returns http://127.0.0.1:port, which stays the same across restarts.
func (s *Service) URL() string { return s.url }

// Log returns everything the process has written to stdout and stderr,
// across restarts, so a test can assert on it or print it when it fails.
func (s *Service) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no
// graceful shutdown.
func (s *Service) Kill(t testing.TB) {
	t.Helper()
	s.p.killT(t)
}

// Stop sends SIGTERM and waits up to 15s for a graceful shutdown; a process
// that needs longer is killed and the test fails.
func (s *Service) Stop(t testing.TB) {
	t.Helper()
	s.p.stopT(t)
	t.Logf("testenv: %s stopped: %s", s.p.name, s.p.exitStatus())
}

// Pid returns the process id of the latest start, 0 before the first: for
// a test that matches what the process reports about itself (the name its
// syncer gives itself in the outbox consumer group holds it).
func (s *Service) Pid() int {
	r := s.p.current()
	if r == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Running reports whether the process is running.
func (s *Service) Running() bool { return s.p.running() }

// WaitLog waits up to timeout until the log contains substr; the test fails
// if it does not, or if the process exits first.
func (s *Service) WaitLog(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(s.Log(), substr); time.Sleep(20 * time.Millisecond) {
		if !s.Running() {
			t.Fatalf("testenv: %s exited (%s) before logging %q:\n%s", s.p.name, s.p.exitStatus(), substr, tailString(s.Log()))
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s did not log %q within %v:\n%s", s.p.name, substr, timeout, tailString(s.Log()))
		}
	}
}

// Restart starts the process again with the same port, environment and
// arguments. A process still running is stopped first.
func (s *Service) Restart(t testing.TB) {
	t.Helper()
	s.p.restartT(t, s.ready)
}
