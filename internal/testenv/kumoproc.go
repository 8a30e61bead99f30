package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kumoServerMain is a program serving kumo on a free loopback port: it
// prints the URL and serves until its stdin closes.
const kumoServerMain = `package main

import (
	"fmt"
	"os"

	"github.com/sivchari/kumo"
)

func main() {
	srv := kumo.NewServer()
	fmt.Println(srv.URL)
	_, _ = os.Stdin.Read(make([]byte, 1))
	srv.Close()
}
`

// KumoProcessOptions configure KumoProcess.
type KumoProcessOptions struct {
	// DataDir, if set, makes kumo keep its state, object bodies included,
	// in files under this directory (KUMO_DATA_DIR) instead of its heap.
	// Large objects then stream to disk as they would to S3, rather than
	// growing the emulator's heap by their size.
	DataDir string
}

// KumoProcess builds kumo, without the race detector, starts it as a
// process of its own and returns its URL ("http://127.0.0.1:PORT"); it
// stops with the test. Use it instead of
// KumoURL when the emulator's work must not share the test's process: a
// -race build slows kumo's JSON handling many times over, a killed client
// must not leave half-sent requests in the test's own kumo state, or a
// benchmark must not count the emulator's garbage collection as its own.
// Its state is its own: nothing in it is seen by KumoURL's server.
func KumoProcess(tb testing.TB, o KumoProcessOptions) string {
	tb.Helper()
	// The program is compiled in the module of the test's working
	// directory (whose go.mod requires kumo), from a file outside it; the
	// build cache makes every build after the first a link.
	dir := tb.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(kumoServerMain), 0o644); err != nil {
		tb.Fatal(err)
	}
	bin := filepath.Join(dir, "kumo")
	if out, err := exec.Command("go", "build", "-o", bin, src).CombinedOutput(); err != nil {
		tb.Fatalf("build kumo server: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = os.Environ()
	if o.DataDir != "" {
		cmd.Env = append(cmd.Env, "KUMO_DATA_DIR="+o.DataDir)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close() // the server exits when its stdin closes
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("kumo server: %v", err)
	}
	return strings.TrimSpace(line)
}
