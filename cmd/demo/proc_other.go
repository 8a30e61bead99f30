//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing where the kernel has no parent-death signal:
// there the demo's shutdown stops its children, but a demo killed with
// SIGKILL leaves them to end on their own (runners after their idle time).
func dieWithParent(*exec.Cmd) {}
