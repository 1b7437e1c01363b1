package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr asks the kernel to kill the child if the bench dies without
// cleaning up (a panic, a SIGKILL), so no server outlives the run holding
// its port. Pdeathsig fires when the starting thread exits; nothing here
// locks a goroutine to its thread, so that is the process's exit.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
