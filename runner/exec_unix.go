//go:build unix

package runner

import (
	"os/exec"
	"syscall"
)

// setProcessGroup runs cmd in a process group of its own and makes
// cancellation signal the whole group with SIGTERM: a command that is a
// shell script would otherwise leave its children running, holding the
// output pipes open.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
}
