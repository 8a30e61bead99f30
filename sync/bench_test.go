package sync_test

import (
	"fmt"
	"net/http"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// manyWorkflows returns n single_run workflow files with their own buckets.
func (e *env) manyWorkflows(n int, tag string) map[string]string {
	files := make(map[string]string, n)
	for i := range n {
		files[e.name(fmt.Sprintf("%s%d", tag, i))] = singleRun(e.name(fmt.Sprintf("%si%d", tag, i)), e.name(fmt.Sprintf("%so%d", tag, i)), "x")
	}
	return files
}

// deploy applies files and fails the benchmark if any workflow failed.
func (e *env) deploy(r *pipesync.Reconciler, files map[string]string, commit string) {
	e.t.Helper()
	rep := e.sync(r, repo(files), commit)
	if rep.Failed() != 0 {
		e.t.Fatalf("deploy: %d of %d workflows failed: %v", rep.Failed(), len(files), firstErr(rep))
	}
}

func firstErr(rep *pipesync.Report) error {
	for _, r := range rep.Results {
		if r.Err != nil {
			return fmt.Errorf("%s: %w", r.Workflow, r.Err)
		}
	}
	return nil
}

// BenchmarkSyncNoChange1000: 1000 deployed workflows, each op a new commit
// that changes none of them. The pass reads the index and records the commit.
func BenchmarkSyncNoChange1000(b *testing.B) {
	e := newEnv(b)
	r := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "bench"})
	files := e.manyWorkflows(1000, "n")
	e.deploy(r, files, "c0")
	fsys := repo(files)

	e.calls.Reset()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := r.Reconcile(b.Context(), pipesync.LoadDesired(fsys, fmt.Sprintf("c%d", i+1)))
		if err != nil || rep.Plan.HasWrites() {
			b.Fatalf("pass %d: err %v, plan %s", i, err, rep.Plan.Summary())
		}
	}
	b.ReportMetric(float64(e.calls.Total())/float64(b.N), "aws_calls/op")
	b.ReportMetric(float64(e.calls.Writes())/float64(b.N), "aws_writes/op")
}

// BenchmarkSyncOneChanged1000: 1000 deployed workflows, each op a commit that
// changes one. It also measures the same change in a repository holding only
// that workflow: the difference is what the other 999 cost.
func BenchmarkSyncOneChanged1000(b *testing.B) {
	e := newEnv(b)
	r := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "bench"})
	files := e.manyWorkflows(1000, "m")
	e.deploy(r, files, "c0")
	target := e.name("m0")

	toggle := func(files map[string]string, i int) fstest.MapFS {
		files[target] = singleRun(e.name("mi0"), e.name("mo0"), fmt.Sprintf("mode-%d", i))
		return repo(files)
	}
	e.calls.Reset()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := r.Reconcile(b.Context(), pipesync.LoadDesired(toggle(files, i), fmt.Sprintf("c%d", i+1)))
		if err != nil || rep.Failed() != 0 {
			b.Fatalf("pass %d: err %v, %v", i, err, firstErr(rep))
		}
		if c, u, d := rep.Plan.Counts(); c+u+d != 1 {
			b.Fatalf("pass %d: plan %s, want one update", i, rep.Plan.Summary())
		}
	}
	b.ReportMetric(float64(e.calls.Total())/float64(b.N), "aws_calls/op")

	// The same change alone, in its own state bucket.
	b.StopTimer()
	solo := newEnv(&namedTB{TB: b, name: b.Name() + "/solo"})
	sr := mustReconciler(pipesync.Options{Provisioner: solo.prov, Inventory: solo.inv, AgentID: "bench"})
	one := map[string]string{target: files[target]}
	solo.deploy(sr, one, "c0")
	const rounds = 5
	solo.calls.Reset()
	for i := range rounds {
		if rep, err := sr.Reconcile(b.Context(), pipesync.LoadDesired(toggle(one, 1000+i), fmt.Sprintf("s%d", i))); err != nil || rep.Failed() != 0 {
			b.Fatalf("solo pass %d: %v %v", i, err, firstErr(rep))
		}
	}
	b.ReportMetric(float64(solo.calls.Total())/rounds, "solo_aws_calls/op")
}

// namedTB gives a second environment in one benchmark its own names.
type namedTB struct {
	testing.TB
	name string
}

func (n *namedTB) Name() string { return n.name }

// BenchmarkProvision50 creates 50 workflows through a transport that adds
// 20 ms to every AWS call, as a real region does, once one at a time and
// once eight at a time, and reports the speed-up.
func BenchmarkProvision50(b *testing.B) {
	e := newEnv(b)
	slow := e.cfg.Copy()
	slow.HTTPClient = &http.Client{Transport: testenv.LatencyTransport(http.DefaultTransport, 20*time.Millisecond)}
	prov := e.newProvisioner(slow)

	var seq, par time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, conc := range []int{1, 8} {
			r := mustReconciler(pipesync.Options{Provisioner: prov, Inventory: e.inv, AgentID: "bench", Concurrency: conc})
			files := e.manyWorkflows(50, fmt.Sprintf("p%dc%d-", i, conc))
			start := time.Now()
			e.deploy(r, files, "c1")
			took := time.Since(start)
			if conc == 1 {
				seq += took
			} else {
				par += took
			}
			b.StopTimer()
			fast := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "bench", Concurrency: 16})
			e.deploy(fast, nil, "c2")
			b.StartTimer()
		}
	}
	b.ReportMetric(seq.Seconds()/float64(b.N), "seq_s/op")
	b.ReportMetric(par.Seconds()/float64(b.N), "par8_s/op")
	b.ReportMetric(seq.Seconds()/par.Seconds(), "speedup")
}
