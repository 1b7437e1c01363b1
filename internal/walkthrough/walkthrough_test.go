//go:build integration

package walkthrough

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestREADMEWalkthrough starts `make run` as a newcomer would (only the port
// and the SQLite file moved, so it runs beside a developer's own), runs the
// README's walkthrough blocks as written in one bash, and checks every
// step's output against the answer the README shows below it.
func TestREADMEWalkthrough(t *testing.T) {
	for _, tool := range []string{"make", "bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if ci() {
				t.Fatalf("%s is required under CI to run the README's walkthrough", tool)
			}
			t.Skipf("%s not found: the README's walkthrough needs it", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Parse(bytes.NewReader(readme))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	if len(steps) < 5 {
		t.Fatalf("README.md: %d walkthrough steps; the blocks are opened with ```sh walkthrough", len(steps))
	}

	dir := t.TempDir()
	addr := startMakeRun(t, root, dir)

	// One shell for every block, as a newcomer pastes them into one
	// terminal: variables set by a step are there for the next. A marker
	// before each step splits the output.
	var script strings.Builder
	script.WriteString("set -eo pipefail\n")
	for i, s := range steps {
		fmt.Fprintf(&script, "printf '\\n@@step %d\\n'\n", i)
		script.WriteString(strings.ReplaceAll(s.Command, "localhost:3004", addr) + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir // where make run keeps bin/admin-token and bin/service-token, as in the repository
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()

	outputs := map[int]string{}
	cur := -1
	for line := range strings.SplitSeq(string(out), "\n") {
		var n int
		if _, err := fmt.Sscanf(line, "@@step %d", &n); err == nil && strings.HasPrefix(line, "@@step ") {
			cur = n
			continue
		}
		if cur >= 0 {
			outputs[cur] += line + "\n"
		}
	}
	for i, s := range steps {
		got, ran := outputs[i]
		if !ran {
			t.Errorf("README.md:%d: the walkthrough stopped before this step (%v; stderr: %s)\n%s",
				s.Line, runErr, stderr.String(), s.Command)
			break
		}
		if err := Check(s.Answer, got); err != nil {
			t.Errorf("README.md:%d: %v\ncommand:\n%s", s.Line, err, s.Command)
		}
	}
	if runErr != nil && !t.Failed() {
		t.Errorf("the walkthrough failed: %v; stderr: %s", runErr, stderr.String())
	}
}

// startMakeRun runs `make run` from root with the environment of the test
// minus every FLASHSALE_* setting (a newcomer has none), serving on a free
// port with its SQLite file and token files in dir. It returns the
// address and stops the service when the test ends.
func startMakeRun(t *testing.T, root, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	logPath := filepath.Join(dir, "make-run.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "-C", root, "run",
		"ADMIN_TOKEN_FILE="+filepath.Join(dir, "bin", "admin-token"),
		"SERVICE_TOKEN_FILE="+filepath.Join(dir, "bin", "service-token"))
	cmd.Env = append(cleanEnv(),
		"FLASHSALE_HTTP_ADDR="+addr,
		"FLASHSALE_SQLITE_PATH="+filepath.Join(dir, "flashsale.db"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // make and the service, stopped together
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("make run's output:\n%s", log)
		}
	})

	// make run builds the binary first: allow for a cold build.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("make run exited (%v):\n%s", err, log)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run did not become ready on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cleanEnv is the test's environment without FLASHSALE_* settings, and
// without make's own variables, which a newcomer's shell does not have.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "FLASHSALE_"), name == "MAKEFLAGS", name == "MFLAGS", name == "MAKELEVEL":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func ci() bool {
	switch os.Getenv("CI") {
	case "1", "t", "T", "true", "TRUE", "True":
		return true
	}
	return false
}
