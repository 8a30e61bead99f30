package testenv

import (
	"bufio"
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FakeS3Process builds gofakes3 (github.com/johannesboyne/gofakes3, a
// tool of this module), starts it as a process of its own on a free
// loopback port with its in-memory backend and returns its URL
// ("http://127.0.0.1:PORT"); it stops with the test.
//
// It is for measuring S3 clients, not cloudpipe's behaviour: it checks no
// signature or policy and serves S3's object calls only. What sets it
// apart from kumo is that it reads each UploadPart body before taking its
// lock, where kumo reads every body under its one storage lock, so a
// client's parallel parts are received in parallel, as S3 receives them.
func FakeS3Process(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "gofakes3")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/johannesboyne/gofakes3/cmd/gofakes3").CombinedOutput(); err != nil {
		tb.Fatalf("build gofakes3: %v\n%s", err, out)
	}
	// gofakes3 takes an address rather than choosing one: take a free
	// port and hand it over. Another process could take it in between;
	// the wait below then fails rather than measuring the wrong server.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-host", addr, "-backend", "memory", "-quiet")
	// Its log (ports, "no buckets available") is kept for a failure
	// rather than printed into the benchmark's output.
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start gofakes3: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-exited:
			tb.Fatalf("gofakes3 exited before serving %s: %v\n%s", addr, err, logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("gofakes3 did not serve %s within 30 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NullS3Process builds and starts internal/testenv/nulls3, an S3 endpoint
// that keeps no data, as a process of its own on a free loopback port,
// and returns its URL; it stops with the test. Against it a client's
// transfer measures the client alone, as against S3, whose servers do not
// share the client's cores: it reads each body into a reused buffer and
// serves objects from one repeated block.
func NullS3Process(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "nulls3")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cloudpipe/cloudpipe/internal/testenv/nulls3").CombinedOutput(); err != nil {
		tb.Fatalf("build nulls3: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "127.0.0.1:0")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nulls3: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Its first line is the address it listens on: it chose the port
	// itself, so no other process can take it in between.
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("nulls3 printed no address: %v\n%s", err, logs.String())
	}
	return "http://" + strings.TrimSpace(addr)
}
