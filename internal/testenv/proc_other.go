//go:build !linux

package testenv

import (
	"os"
	"os/exec"
)

// Off Linux the servers run without process groups or a parent-death
// signal: the package is only exercised on Linux, and this keeps it
// compiling elsewhere.
func setProcAttr(cmd *exec.Cmd) {}

func killTree(cmd *exec.Cmd) error { return cmd.Process.Kill() }

func terminate(cmd *exec.Cmd) error {
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		return cmd.Process.Kill()
	}
	return nil
}
