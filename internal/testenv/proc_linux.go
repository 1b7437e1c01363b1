package testenv

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the server in a process group of its own, so that a kill
// also reaches anything it forked (redis-server forks for AOF rewrites, and
// a leftover child could write into the directory of the restarted server),
// and asks the kernel to kill it if the test binary dies without running its
// cleanups (a panic, or go test's -timeout). Pdeathsig fires when the thread
// that started the child exits; Go only ends threads that a goroutine locked
// and never unlocked, which nothing in a test that uses this package does.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killTree(cmd *exec.Cmd) error {
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

func terminate(cmd *exec.Cmd) error {
	return cmd.Process.Signal(syscall.SIGTERM)
}
