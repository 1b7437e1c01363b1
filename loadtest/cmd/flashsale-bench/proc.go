package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// How long a child may take to come up, and to go after SIGTERM (the
// service's own shutdown timeout is 15 s) before it is killed.
const (
	startTimeout = 30 * time.Second
	stopGrace    = 20 * time.Second
	pollEvery    = 20 * time.Millisecond
)

// child is a server process the bench started and must stop.
type child struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when Wait returns
	waitErr error
	logPath string // "" when the output goes to the bench's stderr
}

// startChild runs path with args and env, its output to logPath (a file
// created here) or, when logPath is "", to stderr.
func startChild(name, path string, args, env []string, logPath string, stderr io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	setProcAttr(cmd)
	c := &child{name: name, cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	var logFile *os.File
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("%s: log file: %w", name, err)
		}
		logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = stderr, stderr
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			// Nothing was written: the log would only be litter.
			_ = logFile.Close()
			_ = os.Remove(logPath)
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		if logFile != nil {
			_ = logFile.Close()
		}
		close(c.exited)
	}()
	return c, nil
}

// waitReady polls ready until it succeeds, the child exits, or
// startTimeout passes.
func (c *child) waitReady(ctx context.Context, ready func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited before it was ready (%v)%s", c.name, c.waitErr, c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %v: %w%s", c.name, startTimeout, err, c.logTail())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits for a graceful exit, killing the process
// if it takes longer than stopGrace. A nil child is already stopped.
func (c *child) stop() error {
	if c == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", c.name, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(stopGrace):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("%s did not stop within %v of SIGTERM and was killed", c.name, stopGrace)
}

// logTail is the end of the child's log, for an error message.
func (c *child) logTail() string {
	if c.logPath == "" {
		return ""
	}
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	const keep = 4000
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "; its log ends:\n" + strings.TrimSpace(string(b))
}

// freeAddr returns a 127.0.0.1 address that was free a moment ago. The
// child binds it itself, so another process could take it first; the
// readiness check then fails rather than measure the wrong server.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("release %s: %w", addr, err)
	}
	return addr, nil
}

var probeClient = &http.Client{Timeout: time.Second}

// httpOK returns a readiness check that wants 200 from GET url.
func httpOK(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// childEnv is the bench's environment without any FLASHSALE_* variable, so
// a developer's shell cannot change what is measured, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLASHSALE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
