package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// BenchmarkSyncOnceCPU runs `agent sync --once` as a process, the binary
// built as the Dockerfile builds it, against kumo as the agent's role: each
// op commits one new single_run workflow to a local repository and runs one
// pass that creates it. It reports the process's CPU time (user + system,
// from its ProcessState) and wall time per op. A first pass, before the
// timed ops, creates one workflow under a release the state bucket has not
// seen: its CPU time is first_cpu_s. Goal: cpu_s/op at most 0.5.
func BenchmarkSyncOnceCPU(b *testing.B) {
	kumoCfg := testenv.Kumo(b)
	asAgentRole(b)
	name := testenv.UniqueName(b)
	dir := b.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "algorithms"), os.DirFS(filepath.Join("..", "..", "algorithms"))); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "workflows"), 0o755); err != nil {
		b.Fatal(err)
	}
	testenv.Git(b, dir, "init", "-q", "-b", "main")
	bin := filepath.Join(b.TempDir(), "agent")
	if out, err := exec.Command(filepath.Join("..", "..", "scripts", "build-binary"), bin).CombinedOutput(); err != nil {
		b.Fatalf("build-binary: %v\n%s", err, out)
	}
	subnets, sgs := testenv.NewNetwork(b, kumoCfg)
	state := "cloudpipe-state-" + name // as the agent's policy scopes it
	if out, err := exec.Command(bin, "bootstrap", "--state-bucket", state, "--subnets", strings.Join(subnets, ","),
		"--security-groups", strings.Join(sgs, ",")).CombinedOutput(); err != nil {
		b.Fatalf("bootstrap: %v\n%s", err, out)
	}
	cache := b.TempDir()
	// addWorkflow commits the n-th workflow, a single_run of the examples'
	// sort-lines.
	addWorkflow := func(n int) {
		wf := fmt.Sprintf(`{"input_s3_name": "%s-i%d", "output_s3_name": "%s-o%d", "region": "us-east-1",
 "process": {"type": "single_run", "algorithms": [{"name": "sort-lines", "port": [], "variables": {}}]}}`, name, n, name, n)
		if err := os.WriteFile(filepath.Join(dir, "workflows", fmt.Sprintf("%s-w%d.json", name, n)), []byte(wf), 0o644); err != nil {
			b.Fatal(err)
		}
		testenv.Git(b, dir, "add", ".")
		testenv.Git(b, dir, "commit", "-q", "-m", fmt.Sprintf("workflow %d", n))
	}
	// syncOnce runs one pass and returns its CPU and wall time.
	syncOnce := func() (cpu, wall time.Duration) {
		cmd := exec.Command(bin, "sync", "--once", "--repo", dir, "--state-bucket", state, "--cache-dir", cache,
			"--log-format", "json", "--log-level", "warn")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		wall = time.Since(start)
		if err != nil {
			b.Fatalf("sync --once: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "+1 create ~0 update -0 delete, 0 failed") {
			b.Fatalf("sync --once created other than one workflow:\n%s", out.String())
		}
		return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), wall
	}

	addWorkflow(0)
	firstCPU, firstWall := syncOnce()
	var cpu, wall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		addWorkflow(i + 1)
		b.StartTimer()
		c, w := syncOnce()
		cpu += c
		wall += w
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu_s/op")
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall_s/op")
	b.ReportMetric(firstCPU.Seconds(), "first_cpu_s")
	b.ReportMetric(firstWall.Seconds(), "first_wall_s")
}
