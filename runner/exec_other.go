//go:build !unix

package runner

import "os/exec"

// setProcessGroup leaves cmd as it is: process groups are a Unix notion,
// and the runner runs in Linux containers.
func setProcessGroup(*exec.Cmd) {}
