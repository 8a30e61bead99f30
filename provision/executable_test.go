package provision_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/provision"
)

// buildProgram builds src (a main package) for goos/goarch, with cgo on or
// off, into dir and returns the binary's path.
func buildProgram(t *testing.T, dir, name, src, goos, goarch string, cgo bool) string {
	t.Helper()
	pkg := filepath.Join(dir, name+"-src")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "go.mod"), []byte("module example.com/"+name+"\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = pkg
	cgoEnv := "CGO_ENABLED=0"
	if cgo {
		cgoEnv = "CGO_ENABLED=1"
	}
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, cgoEnv, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s (%s/%s, %s): %v\n%s", name, goos, goarch, cgoEnv, err, b)
	}
	return out
}

// TestCheckLambdaExecutable checks real executables, built here: the
// static Linux builds pass for their own architecture only; a cgo build, a
// macOS build and files that are no executable are refused with an error
// naming the file and the build command to run.
func TestCheckLambdaExecutable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds small programs for several platforms")
	}
	dir := t.TempDir()
	const plain = "package main\n\nfunc main() {}\n"
	// Importing "C" links the C library dynamically, as a laptop's go run
	// of a program using cgo (net, os/user) does.
	const withC = "package main\n\nimport \"C\"\n\nfunc main() {}\n"
	text := filepath.Join(dir, "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tiny := filepath.Join(dir, "tiny")
	if err := os.WriteFile(tiny, []byte("\x7fE"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		file    func() string
		arch    string
		wantErr string // "" for none; else a part of the message
	}{
		{"static linux/amd64 on x86_64", func() string { return buildProgram(t, dir, "amd64", plain, "linux", "amd64", false) }, "x86_64", ""},
		{"static linux/arm64 on arm64", func() string { return buildProgram(t, dir, "arm64", plain, "linux", "arm64", false) }, "arm64", ""},
		{"static linux/amd64 on arm64", func() string { return filepath.Join(dir, "amd64") }, "arm64", "built for EM_X86_64, and the stage functions run on arm64"},
		{"static linux/arm64 on x86_64", func() string { return filepath.Join(dir, "arm64") }, "x86_64", "built for EM_AARCH64"},
		{"cgo linux/amd64", func() string {
			if _, err := exec.LookPath("gcc"); err != nil {
				t.Skip("no C compiler for a cgo build")
			}
			return buildProgram(t, dir, "cgo", withC, "linux", "amd64", true)
		}, "x86_64", "dynamically linked"},
		{"darwin/amd64", func() string { return buildProgram(t, dir, "darwin", plain, "darwin", "amd64", false) }, "x86_64", "not an ELF file"},
		{"shell script", func() string { return text }, "x86_64", "not an ELF file"},
		{"two bytes of ELF magic", func() string { return tiny }, "x86_64", "not an ELF file"},
		{"freebsd/amd64", func() string { return buildProgram(t, dir, "freebsd", plain, "freebsd", "amd64", false) }, "x86_64", "executable for FREEBSD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.file()
			err := provision.CheckLambdaExecutable(path, tt.arch)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckLambdaExecutable(%s, %s) = %v, want nil", path, tt.arch, err)
				}
				return
			}
			if !errors.Is(err, provision.ErrNotLambdaExecutable) {
				t.Fatalf("CheckLambdaExecutable(%s, %s) = %v, want ErrNotLambdaExecutable", path, tt.arch, err)
			}
			for _, want := range []string{tt.wantErr, path, provision.StaticBuildCommand(tt.arch)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	if err := provision.CheckLambdaExecutable(filepath.Join(dir, "missing"), "x86_64"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if err := provision.CheckLambdaExecutable(text, "sparc"); err == nil || errors.Is(err, provision.ErrNotLambdaExecutable) {
		t.Errorf("unknown architecture: %v, want an error about the architecture", err)
	}
}

func TestStaticBuildCommand(t *testing.T) {
	for arch, goarch := range map[string]string{"x86_64": "amd64", "arm64": "arm64"} {
		if got := provision.StaticBuildCommand(arch); !strings.HasPrefix(got, "GOOS=linux GOARCH="+goarch+" CGO_ENABLED=0 go build ") {
			t.Errorf("StaticBuildCommand(%s) = %q, want a static linux/%s build", arch, got, goarch)
		}
	}
}
