package sync_test

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/faultproxy"
	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// The reliability tests (faults, crash, race) run a short default variant;
// -faults.long runs them at the length docs/reliability.md reports, and
// -faults.seed replays another sequence of faults and kill points.
var (
	faultsLong = flag.Bool("faults.long", false, "run the fault, crash and race tests at full length (minutes)")
	faultsSeed = flag.Int64("faults.seed", 1, "seed of the injected faults and kill points")
)

// kumoAccount is the account every kumo ARN and bucket hash uses.
const kumoAccount = "000000000000"

// testWorkflow is a workflow of a reliability test, as the auditor needs it.
type testWorkflow struct {
	name    string
	in, out string
	stages  int
	retain  bool // retain_buckets: in and out survive a delete
}

// file returns the workflow's JSON with every stage's MODE variable set to
// mode.
func (w testWorkflow) file(mode string) string {
	extra := []string{}
	if !w.retain {
		extra = append(extra, `"retain_buckets": false`)
	}
	if w.stages == 1 {
		return singleRun(w.in, w.out, mode, extra...)
	}
	return sequenceRunMode(w.in, w.out, mode, extra...)
}

// sequenceRunMode is sequenceRun with a MODE variable in each stage, so a
// change of mode updates every stage.
func sequenceRunMode(in, out, mode string, extra ...string) string {
	more := ""
	if len(extra) > 0 {
		more = "," + strings.Join(extra, ",")
	}
	return fmt.Sprintf(`{
  "input_s3_name": %q,
  "output_s3_name": %q,
  "region": "us-east-1",
  "process": {"type": "sequence_run", "algorithms": [
    {"name": "sorter", "port": [], "variables": {"MODE": %[3]q}},
    {"name": "dedup", "port": [], "variables": {"MODE": %[3]q}},
    {"name": "copier", "port": [], "variables": {"MODE": %[3]q}}]}%[4]s
}`, in, out, mode, more)
}

// intermediateBuckets returns the names of the buckets between the stages
// of a workflow of that many stages. The audit asks for 3 whatever the
// spec, so leftovers of a longer one show too.
func intermediateBuckets(wf string, stages int) []string {
	var out []string
	for i := range stages - 1 {
		out = append(out, provision.IntermediateBucketName(wf, i, kumoAccount, testenv.Region))
	}
	return out
}

// audit compares what exists in AWS with the inventory. A deployed workflow
// (in want) must have every resource of its stages, an index entry that is
// ready with the wanted spec hash and no lease, and a ready record of as
// many stages; any other workflow must have no resource, entry or record
// left, except in and out buckets it retains. It returns what is missing
// and what is left over, as "<workflow>: <what>" lines.
func (e *env) audit(wfs []testWorkflow, want map[string]string) (missing, orphans []string) {
	e.t.Helper()
	ctx := e.t.Context()
	idx, err := e.inv.ReadIndex(ctx)
	if err != nil {
		e.t.Fatalf("audit: %v", err)
	}
	for _, w := range wfs {
		hash, deployed := want[w.name]
		stages := 0
		if deployed {
			stages = w.stages
		}
		// What must exist: every stage resource of the deployed spec.
		expect := map[string]bool{}
		if deployed {
			for i := range stages {
				for kind, names := range stageResourceNames(w.name, i) {
					for _, n := range names {
						expect[kind+" "+n] = true
					}
				}
			}
			expect["loggroup /cloudpipe/"+w.name] = true
			for _, b := range append(intermediateBuckets(w.name, stages), w.in, w.out) {
				expect["bucket "+b] = true
			}
		}
		got := map[string]bool{}
		for _, r := range e.existing(w.name, 3) {
			got[r] = true
		}
		for _, b := range intermediateBuckets(w.name, 3) {
			if e.bucketExists(b) {
				got["bucket "+b] = true
			}
		}
		for _, b := range []string{w.in, w.out} {
			if e.bucketExists(b) && (deployed || !w.retain) {
				got["bucket "+b] = true // a retained bucket may outlive its workflow
			}
		}
		for _, r := range slices.Sorted(maps.Keys(expect)) {
			if !got[r] {
				missing = append(missing, w.name+": "+r)
			}
		}
		for _, r := range slices.Sorted(maps.Keys(got)) {
			if !expect[r] {
				orphans = append(orphans, w.name+": "+r)
			}
		}

		entry, inIndex := idx.Workflows[w.name]
		rec, recErr := e.inv.ReadRecord(ctx, w.name)
		switch {
		case deployed && !inIndex:
			missing = append(missing, w.name+": index entry")
		case deployed && (entry.State != inventory.StateReady || entry.SpecHash != hash || entry.Holder != "" || entry.Stages != stages):
			missing = append(missing, fmt.Sprintf("%s: index entry ready at %.8s (have %s at %.8s, holder %q, %d stages)",
				w.name, hash, entry.State, entry.SpecHash, entry.Holder, entry.Stages))
		case !deployed && inIndex:
			orphans = append(orphans, fmt.Sprintf("%s: index entry (%s)", w.name, entry.State))
		}
		switch {
		case deployed && recErr != nil:
			missing = append(missing, fmt.Sprintf("%s: record (%v)", w.name, recErr))
		case deployed && (rec.State != inventory.StateReady || rec.SpecHash != hash || len(rec.Stages) != stages || len(rec.Retired) != 0 || rec.Commit != entry.Commit):
			missing = append(missing, fmt.Sprintf("%s: record ready at %.8s (have %s at %.8s, %d stages, %d retired, commit %s vs index %s)",
				w.name, hash, rec.State, rec.SpecHash, len(rec.Stages), len(rec.Retired), rec.Commit, entry.Commit))
		case !deployed && !errors.Is(recErr, inventory.ErrNotFound):
			orphans = append(orphans, fmt.Sprintf("%s: record (%v)", w.name, recErr))
		}
	}
	return missing, orphans
}

// duplicates looks for what a repeated create could double: our entry in a
// stage's input-bucket notification and the function's S3 permission.
func (e *env) duplicates(wfs []testWorkflow, want map[string]string) []string {
	e.t.Helper()
	ctx := e.t.Context()
	var dups []string
	for _, w := range wfs {
		if _, ok := want[w.name]; !ok {
			continue
		}
		in := w.in
		for i := range w.stages {
			fn := provision.ResourceName(w.name, i)
			n, err := e.s3.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(in)})
			if err != nil {
				e.t.Fatalf("notification of %s: %v", in, err)
			}
			ours := 0
			for _, c := range n.LambdaFunctionConfigurations {
				if aws.ToString(c.Id) == "cloudpipe-"+fn || strings.HasSuffix(aws.ToString(c.LambdaFunctionArn), ":"+fn) {
					ours++
				}
			}
			if ours != 1 || len(n.LambdaFunctionConfigurations) != 1 {
				dups = append(dups, fmt.Sprintf("%s: bucket %s has %d notifications for %s (%d in all), want 1",
					w.name, in, ours, fn, len(n.LambdaFunctionConfigurations)))
			}
			pol, err := e.lambda.GetPolicy(ctx, &lambda.GetPolicyInput{FunctionName: aws.String(fn)})
			if err != nil {
				e.t.Fatalf("policy of %s: %v", fn, err)
			}
			if c := strings.Count(aws.ToString(pol.Policy), "s3.amazonaws.com"); c != 1 {
				dups = append(dups, fmt.Sprintf("%s: function %s has %d s3 permissions, want 1", w.name, fn, c))
			}
			if i+1 < w.stages {
				in = provision.IntermediateBucketName(w.name, i, kumoAccount, testenv.Region)
			}
		}
	}
	return dups
}

// inventoryConsistent checks that the index and the records name the same
// workflows (among those with prefix): a record without an entry would
// never be planned, an entry without a record could not be torn down.
//
// kumo lists the delete marker of a deleted key in a versioned bucket (the
// state bucket is versioned) as if the object were there, which real S3
// does not: a listed record that reads as not found is such a marker, and
// is counted in markers rather than reported.
func (e *env) inventoryConsistent(prefix string) (problems []string, markers int) {
	e.t.Helper()
	ctx := e.t.Context()
	idx, err := e.inv.ReadIndex(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	names, err := e.inv.ListRecords(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	recs := map[string]bool{}
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) {
			continue
		}
		if _, err := e.inv.ReadRecord(ctx, n); errors.Is(err, inventory.ErrNotFound) {
			markers++
			continue
		}
		recs[n] = true
		if _, ok := idx.Workflows[n]; !ok {
			problems = append(problems, n+": record without index entry")
		}
	}
	for n := range idx.Workflows {
		if strings.HasPrefix(n, prefix) && !recs[n] {
			problems = append(problems, n+": index entry without record")
		}
	}
	sort.Strings(problems)
	return problems, markers
}

// opClass groups an operation for the fault matrix.
func opClass(op string) string {
	switch op {
	case "S3.PutObject", "S3.DeleteObject":
		return "inventory write" // the only object writes of a pass are the inventory's
	case "S3.GetObject", "S3.HeadObject", "S3.ListObjectsV2":
		return "inventory read"
	}
	_, name, _ := strings.Cut(op, ".")
	for _, p := range []string{"Get", "List", "Describe", "Head"} {
		if strings.HasPrefix(name, p) {
			return "aws read"
		}
	}
	for _, p := range []string{"Delete", "Deregister", "Remove"} {
		if strings.HasPrefix(name, p) {
			return "aws delete"
		}
	}
	return "aws create/update"
}

var opClasses = []string{"aws create/update", "aws delete", "aws read", "inventory write", "inventory read"}

// faultMatrix returns the faults injected between two snapshots, by
// operation class and kind.
func faultMatrix(before, after faultproxy.Stats) map[string]map[faultproxy.Kind]int {
	m := map[string]map[faultproxy.Kind]int{}
	for op, kinds := range after.ByOp {
		c := opClass(op)
		if m[c] == nil {
			m[c] = map[faultproxy.Kind]int{}
		}
		for k, n := range kinds {
			m[c][k] += n - before.ByOp[op][k]
		}
	}
	return m
}

func formatMatrix(m map[string]map[faultproxy.Kind]int) string {
	var b strings.Builder
	for _, c := range opClasses {
		fmt.Fprintf(&b, "\n    %-18s", c)
		for _, k := range faultproxy.Kinds {
			fmt.Fprintf(&b, " %s=%d", k, m[c][k])
		}
	}
	return b.String()
}

// errorClass names the kind of a workflow's failure, for the figures. A
// joined error (the failure, then the failed write recording it) is named
// by its first.
func errorClass(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		err = j.Unwrap()[0]
	}
	s := err.Error()
	switch {
	case errors.Is(err, inventory.ErrConflict):
		return "inventory conflict"
	case strings.Contains(s, "EntityAlreadyExists"):
		return "EntityAlreadyExists"
	case strings.Contains(s, "ResourceConflictException"):
		return "ResourceConflictException"
	case strings.Contains(s, "retry quota"):
		return "retry quota exceeded"
	case strings.Contains(s, "exceeded maximum number of attempts"):
		return "attempts exhausted"
	case strings.Contains(s, "Client.Timeout") || strings.Contains(s, "deadline exceeded"):
		return "timeout"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	}
	return "other"
}

// TestReconcileThroughFaults runs create, update (a variable of every
// stage) and delete of 20 workflows with the agent's AWS traffic going
// through a fault proxy: throttling, 500s, resets before and after the
// request took effect, timeouts and latency. Each phase repeats passes until
// the inventory says every workflow converged, then a clean pass must find
// nothing to do, and the audit must find every resource on record and
// nothing else: no orphan, no duplicate.
func TestReconcileThroughFaults(t *testing.T) {
	t.Parallel() // one of the long tests run side by side (see TestDeploy100)
	if testing.Short() {
		t.Skip("hundreds of AWS calls with injected faults")
	}
	e := newEnv(t)
	n, maxPasses := 20, 15
	if *faultsLong {
		n = 60
	}
	// A per-attempt timeout well above kumo's answer time, so only the
	// proxy's held requests time out.
	const attemptTimeout = time.Second
	proxy, err := faultproxy.New(testenv.AWSRules(t).URL(), faultproxy.Options{
		Seed: *faultsSeed, Throttle: 0.05, ServerError: 0.03, ResetBefore: 0.02, ResetAfter: 0.02,
		Timeout: 0.01, TimeoutHold: 2 * attemptTimeout, Latency: 0.5, MaxLatency: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	cfg := e.cfg.Copy() // still counted by e.calls
	cfg.BaseEndpoint = aws.String(proxy.URL())
	cfg.HTTPClient = awshttp.NewBuildableClient().WithTimeout(attemptTimeout)
	faulty := mustReconciler(pipesync.Options{
		Provisioner: e.newProvisioner(cfg),
		Inventory:   inventory.NewStore(cfg, e.state, true),
		AgentID:     "faults", Concurrency: 8,
	})

	wfs := make([]testWorkflow, n)
	for i := range wfs {
		wfs[i] = testWorkflow{name: e.name(fmt.Sprintf("f%02d", i)), in: e.name(fmt.Sprintf("f%02d-in", i)),
			out: e.name(fmt.Sprintf("f%02d-out", i)), stages: 1, retain: i%2 == 0}
		if i%3 == 2 {
			wfs[i].stages = 3
		}
	}
	files := func(mode string) map[string]string {
		if mode == "" {
			return nil
		}
		m := map[string]string{}
		for _, w := range wfs {
			m[w.name] = w.file(mode)
		}
		return m
	}

	var totalPasses, totalFailures int
	for _, phase := range []struct{ name, mode string }{{"create", "a"}, {"update", "b"}, {"delete", ""}} {
		fsys := repo(files(phase.mode))
		desired := pipesync.LoadDesired(fsys, phase.name)
		if len(desired.Problems) > 0 {
			t.Fatalf("test files invalid: %v", desired.Problems)
		}
		want := map[string]string{}
		for _, w := range desired.Workflows {
			want[w.Name] = w.SpecHash
		}
		before := proxy.Stats()
		start := time.Now()
		failures := map[string]int{}
		passes, passErrs, converged := 0, 0, false
		for passes < maxPasses && !converged {
			passes++
			rep, err := faulty.Reconcile(t.Context(), desired)
			if err != nil {
				passErrs++ // the index could not be read or written: the pass is retried whole
				failures[errorClass(err)]++
			}
			if rep != nil {
				for _, res := range rep.Results {
					if res.Err != nil {
						failures[errorClass(res.Err)]++
						t.Logf("%s pass %d: %s %s failed (retried next pass): %v", phase.name, passes, res.Workflow, res.Action, res.Err)
					}
				}
			}
			missing, orphans := e.audit(wfs, want)
			converged = len(missing) == 0 && len(orphans) == 0
		}
		took := time.Since(start)
		matrix := faultMatrix(before, proxy.Stats())
		nf := 0
		for _, v := range failures {
			nf += v
		}
		totalPasses += passes
		totalFailures += nf
		if !converged {
			t.Errorf("%s: not converged after %d passes under faults", phase.name, passes)
		}

		// A clean pass must find nothing to do: what the faulty passes
		// recorded is what exists.
		proxy.SetEnabled(false)
		e.calls.Reset()
		rep := e.sync(faulty, fsys, phase.name)
		for _, res := range rep.Results {
			if res.Action != pipesync.Unchanged || res.Err != nil {
				t.Errorf("%s: clean pass after convergence: %s %s (%v)", phase.name, res.Workflow, res.Action, res.Err)
			}
		}
		if w := e.calls.Writes(); w != 0 {
			t.Errorf("%s: clean pass wrote %d times: %v", phase.name, w, e.calls.WriteOps())
		}
		missing, orphans := e.audit(wfs, want)
		dups := e.duplicates(wfs, want)
		incons, _ := e.inventoryConsistent(e.prefix)
		for _, m := range missing {
			t.Errorf("%s: missing %s", phase.name, m)
		}
		for _, o := range orphans {
			t.Errorf("%s: orphan %s", phase.name, o)
		}
		for _, d := range dups {
			t.Errorf("%s: duplicate %s", phase.name, d)
		}
		for _, p := range incons {
			t.Errorf("%s: inventory %s", phase.name, p)
		}
		proxy.SetEnabled(true)

		t.Logf("%s of %d workflows: converged=%v in %d passes (%v), %d pass errors, workflow failures on the way %v; "+
			"orphans %d, missing %d, duplicates %d, inventory mismatches %d; faults by class:%s",
			phase.name, n, converged, passes, took.Round(time.Millisecond), passErrs, failures,
			len(orphans), len(missing), len(dups), len(incons), formatMatrix(matrix))
	}
	st := proxy.Stats()
	t.Logf("total: %d passes, %d workflow failures retried; proxy: %v; task-definition revisions registered but "+
		"never acknowledged (reset after RegisterTaskDefinition; left ACTIVE, see docs/reliability.md): %d",
		totalPasses, totalFailures, st, st.ByOp["ECS.RegisterTaskDefinition"][faultproxy.ResetAfter])
}

// TestGitFetchThroughFaults reads the config repository from a real Git
// server (Gitea) through the fault proxy, as the agent's poll does, for a
// series of commits. A failed read is retried, as the next poll would; a
// read that succeeds must name the branch head and hold every workflow of
// that commit, so a fault never leaves the cache half-updated or a pass
// working from an older commit it takes for the new one.
func TestGitFetchThroughFaults(t *testing.T) {
	t.Parallel() // one of the long tests run side by side (see TestDeploy100)
	if testing.Short() {
		t.Skip("needs Gitea")
	}
	commits, maxAttempts := 10, 25
	if *faultsLong {
		commits = 40
	}
	g := testenv.Gitea(t)
	name := testenv.UniqueName(t) + "-config"
	cloneURL := g.CreateRepo(t, name)
	root := strings.TrimSuffix(g.URL, "/")
	// Higher rates than for AWS: a pass makes only two or three Git requests.
	proxy, err := faultproxy.New(root, faultproxy.Options{
		Seed: *faultsSeed, Throttle: 0.1, ServerError: 0.1, ResetBefore: 0.05, ResetAfter: 0.05,
		Timeout: 0.03, TimeoutHold: 2 * time.Second, Latency: 0.5, MaxLatency: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	src, err := pipesync.OpenRepo(t.Context(), gitsource.Options{
		URL: proxy.URL() + strings.TrimPrefix(cloneURL, root), CacheDir: t.TempDir(),
		Token: secret.New(g.Token), Username: g.User,
		HTTPClient: &http.Client{Timeout: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	write := map[string]string{}
	for path, f := range repo(nil) {
		write[path] = string(f.Data)
	}
	failures := map[string]int{}
	attempts := 0
	for i := range commits {
		wf := fmt.Sprintf("g%02d", i)
		write["workflows/"+wf+".json"] = singleRun(wf+"-in", wf+"-out", "x")
		head := g.CommitFiles(t, name, testenv.ChangeFiles{Message: "add " + wf, Write: write})
		delete(write, "workflows/"+wf+".json") // committed; later commits keep it
		for n := 1; ; n++ {
			attempts++
			d, err := src.Load(t.Context(), "")
			if err == nil {
				if d.Commit != head || len(d.Workflows) != i+1 {
					t.Fatalf("commit %d: read %s with %d workflows, want %s with %d", i, d.Commit, len(d.Workflows), head, i+1)
				}
				break
			}
			failures[gitErrorClass(err)]++
			if n == maxAttempts {
				t.Fatalf("commit %d: %d reads failed, the last: %v", i, n, err)
			}
		}
	}
	st := proxy.Stats()
	t.Logf("%d commits read in %d attempts; failed reads by cause %v; proxy: %v; Git faults by request: info-refs %v, upload-pack %v",
		commits, attempts, failures, st, st.ByOp["Git.info-refs"], st.ByOp["Git.upload-pack"])
}

// gitErrorClass names the cause of a failed repository read.
func gitErrorClass(err error) string {
	s := err.Error()
	if m := statusCode.FindStringSubmatch(s); m != nil {
		return "http " + m[1]
	}
	switch {
	case strings.Contains(s, "connection reset"):
		return "reset"
	case strings.Contains(s, "Client.Timeout") || strings.Contains(s, "deadline exceeded"):
		return "timeout"
	case strings.Contains(s, "EOF"):
		return "eof"
	}
	return "other: " + s
}

// statusCode finds the HTTP status in go-git's "unexpected requesting ...
// status code: 429".
var statusCode = regexp.MustCompile(`status code: (\d{3})`)
