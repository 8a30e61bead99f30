package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd's process when the demo dies, even
// by SIGKILL, so no handler or runner outlives it. (Strictly, when the thread
// that started it dies; the Go runtime only ends threads that a goroutine
// locked and never unlocked, which the demo does not do.)
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
