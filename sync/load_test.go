package sync_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// The mix TestDeploy100 and BenchmarkDeploy100 deploy: 100 workflows, one in
// ten a three-stage sequence_run, so 90 + 10×3 = 120 stages in one pass.
const (
	mixWorkflows = 100
	mixSequences = 10
)

// deployMix is a repository of many workflows and what deploying it must create.
type deployMix struct {
	files  map[string]string
	stages map[string]int // workflow -> number of stages
	in     map[string]string
	out    map[string]string
}

// mixedWorkflows returns n workflow files named with tag: n-seq single_run ones
// (manyWorkflows) and seq three-stage sequence_run ones.
func (e *env) mixedWorkflows(tag string, n, seq int) deployMix {
	s := deployMix{
		files:  e.manyWorkflows(n-seq, tag),
		stages: make(map[string]int, n),
		in:     make(map[string]string, n),
		out:    make(map[string]string, n),
	}
	for i := range n - seq {
		name := e.name(fmt.Sprintf("%s%d", tag, i))
		s.stages[name] = 1
		s.in[name], s.out[name] = e.name(fmt.Sprintf("%si%d", tag, i)), e.name(fmt.Sprintf("%so%d", tag, i))
	}
	for i := range seq {
		name := e.name(fmt.Sprintf("%sq%d", tag, i))
		s.in[name], s.out[name] = e.name(fmt.Sprintf("%sqi%d", tag, i)), e.name(fmt.Sprintf("%sqo%d", tag, i))
		s.files[name] = sequenceRun(s.in[name], s.out[name])
		s.stages[name] = 3
	}
	if len(s.files) != n {
		e.t.Fatalf("workflow mix %q: %d files, want %d (names collide)", tag, len(s.files), n)
	}
	return s
}

func (s deployMix) totalStages() int {
	n := 0
	for _, st := range s.stages {
		n += st
	}
	return n
}

// creatingOps are the calls that bring a resource into existence. The agent
// looks each resource up before creating it, so on a fresh account each is
// made exactly once per resource.
var creatingOps = []string{
	"S3.CreateBucket",
	"SQS.CreateQueue",
	"IAM.CreateRole",
	"Lambda.CreateFunction",
	"Lambda.AddPermission",
	"Lambda.PutFunctionEventInvokeConfig",
	"ECS.RegisterTaskDefinition",
	"CloudWatch Logs.CreateLogGroup",
	"S3.PutBucketNotificationConfiguration",
}

// wantCreated names, for each of creatingOps, the resources deploying s must
// create: buckets (input, output and the ones between stages), two queues,
// three roles, a function with one permission and its asynchronous
// invocation configuration, a task definition family, a
// log group and a notification per stage, and one log group per workflow.
func (s deployMix) wantCreated() map[string][]string {
	want := map[string][]string{}
	add := func(op string, names ...string) { want[op] = append(want[op], names...) }
	for wf, stages := range s.stages {
		add("S3.CreateBucket", s.in[wf], s.out[wf])
		add("CloudWatch Logs.CreateLogGroup", "/cloudpipe/"+wf)
		in := s.in[wf]
		for i := range stages {
			names := stageResourceNames(wf, i)
			add("SQS.CreateQueue", names["queue"]...)
			add("IAM.CreateRole", names["role"]...)
			add("Lambda.CreateFunction", names["function"]...)
			add("Lambda.AddPermission", names["function"]...)
			add("Lambda.PutFunctionEventInvokeConfig", names["function"]...)
			add("ECS.RegisterTaskDefinition", provision.ResourceName(wf, i))
			add("CloudWatch Logs.CreateLogGroup", names["loggroup"]...)
			add("S3.PutBucketNotificationConfiguration", in)
			if i < stages-1 {
				in = provision.IntermediateBucketName(wf, i, kumoAccount, testenv.Region)
				add("S3.CreateBucket", in)
			}
		}
	}
	for _, names := range want {
		sort.Strings(names)
	}
	return want
}

// createdNames returns the resource named by each recorded call of op, sorted.
func createdNames(c *testenv.CallCounter, op string) []string {
	var names []string
	for _, in := range c.Inputs(op) {
		var name *string
		switch in := in.(type) {
		case *s3.CreateBucketInput:
			name = in.Bucket
		case *s3.PutBucketNotificationConfigurationInput:
			name = in.Bucket
		case *sqs.CreateQueueInput:
			name = in.QueueName
		case *iam.CreateRoleInput:
			name = in.RoleName
		case *lambda.CreateFunctionInput:
			name = in.FunctionName
		case *lambda.AddPermissionInput:
			name = in.FunctionName
		case *lambda.PutFunctionEventInvokeConfigInput:
			name = in.FunctionName
		case *ecs.RegisterTaskDefinitionInput:
			name = in.Family
		case *cloudwatchlogs.CreateLogGroupInput:
			name = in.LogGroupName
		default:
			name = aws.String(fmt.Sprintf("unexpected input %T", in))
		}
		names = append(names, aws.ToString(name))
	}
	sort.Strings(names)
	return names
}

// diffNames describes how got differs from want (both sorted), or "".
func diffNames(got, want []string) string {
	count := func(s []string) map[string]int {
		m := map[string]int{}
		for _, v := range s {
			m[v]++
		}
		return m
	}
	g, w := count(got), count(want)
	var extra, missing []string
	for v, n := range g {
		if n > w[v] {
			extra = append(extra, fmt.Sprintf("%s×%d", v, n-w[v]))
		}
	}
	for v, n := range w {
		if n > g[v] {
			missing = append(missing, fmt.Sprintf("%s×%d", v, n-g[v]))
		}
	}
	if len(extra)+len(missing) == 0 {
		return ""
	}
	sort.Strings(extra)
	sort.Strings(missing)
	return fmt.Sprintf("%d made, want %d; unexpected %v; not made %v", len(got), len(want), clipNames(extra), clipNames(missing))
}

func clipNames(s []string) []string {
	if len(s) > 5 {
		return append(s[:5:5], fmt.Sprintf("... %d more", len(s)-5))
	}
	return s
}

// checkAllCreated fails unless every result of rep is a successful create of
// a workflow of s, with the stages and buckets its file asks for.
func checkAllCreated(tb testing.TB, rep *pipesync.Report, s deployMix) {
	tb.Helper()
	if len(rep.Results) != len(s.files) {
		tb.Errorf("report has %d results, want %d", len(rep.Results), len(s.files))
	}
	seen := map[string]bool{}
	for _, res := range rep.Results {
		seen[res.Workflow] = true
		switch {
		case res.Err != nil:
			tb.Errorf("%s: %s failed: %v", res.Workflow, res.Action, res.Err)
		case res.Action != pipesync.Create:
			tb.Errorf("%s: action %s (%s), want create", res.Workflow, res.Action, res.Reason)
		case res.Stages != s.stages[res.Workflow] || res.InputBucket != s.in[res.Workflow] || res.OutputBucket != s.out[res.Workflow]:
			tb.Errorf("%s: created %d stages s3://%s -> s3://%s, want %d stages s3://%s -> s3://%s", res.Workflow,
				res.Stages, res.InputBucket, res.OutputBucket, s.stages[res.Workflow], s.in[res.Workflow], s.out[res.Workflow])
		}
	}
	for wf := range s.files {
		if !seen[wf] {
			tb.Errorf("%s: no result in the report", wf)
		}
	}
}

// TestDeploy100 deploys 100 new workflows (90 single_run, 10 three-stage
// sequence_run) in one pass at the agent's default concurrency and checks
// that every one is created, recorded ready and complete, that each resource
// was created exactly once, and that a second pass writes nothing.
func TestDeploy100(t *testing.T) {
	// The package's longest tests run side by side, up to twice
	// GOMAXPROCS at a time (TestMain): under the race detector each one
	// runs for minutes, mostly waiting on AWS round trips, and CI has two
	// cores.
	t.Parallel()
	if testing.Short() {
		t.Skip("deploys 100 workflows against kumo; skipped with -short")
	}
	// A name unique in the process, so -count=N starts from an empty
	// inventory each time (kumo's state outlives a test).
	e := newEnv(&namedTB{TB: t, name: testenv.UniqueName(t)})
	r := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "load"})
	set := e.mixedWorkflows("w", mixWorkflows, mixSequences)
	fsys := repo(set.files)
	stages := set.totalStages()

	// One pass creates everything.
	e.calls.Reset()
	start := time.Now()
	rep := e.sync(r, fsys, "c1")
	took := time.Since(start)
	checkAllCreated(t, rep, set)
	if c, u, d := rep.Plan.Counts(); c != mixWorkflows || u != 0 || d != 0 {
		t.Errorf("plan %s, want +%d create", rep.Plan.Summary(), mixWorkflows)
	}
	total, writes := e.calls.Total(), e.calls.Writes()

	// Each resource was created once, under its deterministic name.
	want := set.wantCreated()
	created, byKind := 0, make([]string, len(creatingOps))
	for i, op := range creatingOps {
		got := createdNames(e.calls, op)
		created += len(got)
		byKind[i] = fmt.Sprintf("%s %d", op, len(got))
		if d := diffNames(got, want[op]); d != "" {
			t.Errorf("%s: %s", op, d)
		}
	}
	// The stage functions' code is stored once for the 120 functions,
	// which are all made from it.
	if got, want := lambdaCodeBytesSent(e.calls), int64(len(tinyZip(t))); got != want {
		t.Errorf("first deploy sent %d bytes of stage-function code, want one package of %d", got, want)
	}
	// A first deploy on an empty account replaces and removes nothing.
	for op, n := range e.calls.WriteOps() {
		name := op[strings.LastIndexByte(op, '.')+1:]
		if strings.HasPrefix(name, "Delete") || strings.HasPrefix(name, "Deregister") || strings.HasPrefix(name, "Update") || strings.HasPrefix(name, "Remove") {
			t.Errorf("first deploy called %s %d times", op, n)
		}
	}
	ops := e.calls.Ops()

	// The index lists every workflow, ready at this commit.
	idx, err := e.inv.ReadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for wf, en := range idx.Workflows {
		if _, ok := set.files[wf]; !ok {
			t.Errorf("index holds %s, which is not in the repository", wf)
			continue
		}
		if en.State != inventory.StateReady || en.Commit != "c1" || en.SpecHash == "" || en.Stages != set.stages[wf] ||
			en.Holder != "" || en.PendingHash != "" {
			t.Errorf("index entry %s: %+v, want ready at c1 with %d stages and no lease", wf, en, set.stages[wf])
			continue
		}
		ready++
	}
	if ready != mixWorkflows || idx.Commit != "c1" {
		t.Errorf("index at %q: %d of %d workflows ready, want %d at c1", idx.Commit, ready, len(idx.Workflows), mixWorkflows)
	}

	// A second pass at the same commit: everything unchanged, no write.
	e.calls.Reset()
	start2 := time.Now()
	rep2 := e.sync(r, fsys, "c1")
	took2 := time.Since(start2)
	if len(rep2.Results) != mixWorkflows {
		t.Errorf("second pass reports %d workflows, want %d", len(rep2.Results), mixWorkflows)
	}
	for _, res := range rep2.Results {
		if res.Action != pipesync.Unchanged || res.Err != nil {
			t.Errorf("second pass: %s %s (%v), want unchanged", res.Workflow, res.Action, res.Err)
		}
	}
	total2, writes2 := e.calls.Total(), e.calls.Writes()
	if writes2 != 0 {
		t.Errorf("second pass made %d AWS write calls, want 0: %v", writes2, e.calls.WriteOps())
	}

	// Every stage's record is complete and every resource it names exists.
	for wf, n := range set.stages {
		rec, err := e.inv.ReadRecord(t.Context(), wf)
		if err != nil {
			t.Errorf("record %s: %v", wf, err)
			continue
		}
		if rec.State != inventory.StateReady || rec.Commit != "c1" || len(rec.Stages) != n || len(rec.Retired) != 0 {
			t.Errorf("record %s: state %s commit %q %d stages %d retired, want ready at c1 with %d stages",
				wf, rec.State, rec.Commit, len(rec.Stages), len(rec.Retired), n)
			continue
		}
		for i, st := range rec.Stages {
			if got := len(st.Resources.TaskDefinitionARNs); got != 1 || st.Resources.TaskDefinitionARN == "" {
				t.Errorf("%s stage %d: %d task definition revisions recorded (current %q), want 1", wf, i, got, st.Resources.TaskDefinitionARN)
			}
			missing, err := e.prov.MissingResources(t.Context(), st.Spec, st.Resources)
			if err != nil || len(missing) != 0 {
				t.Errorf("%s stage %d: MissingResources = %v, %v; want none", wf, i, missing, err)
			}
		}
	}

	t.Logf("deployed %d workflows (%d single_run, %d sequence_run), %d stages, in one pass: %s (report: %s)",
		mixWorkflows, mixWorkflows-mixSequences, mixSequences, stages, took.Round(time.Millisecond), rep.Duration.Round(time.Millisecond))
	t.Logf("AWS calls: %d total, %d writes; %.1f calls and %.1f writes per workflow, %.1f calls per stage",
		total, writes, float64(total)/mixWorkflows, float64(writes)/mixWorkflows, float64(total)/float64(stages))
	t.Logf("resources created: %d (%s)", created, strings.Join(byKind, ", "))
	t.Logf("inventory writes (S3.PutObject): %d", ops["S3.PutObject"])
	t.Logf("second pass, same commit: %s, %d AWS calls, %d writes", took2.Round(time.Millisecond), total2, writes2)
	t.Logf("calls by operation: %s", callsByOp(ops))
}

func callsByOp(ops map[string]int) string {
	keys := make([]string, 0, len(ops))
	for op := range ops {
		keys = append(keys, op)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, op := range keys {
		parts[i] = fmt.Sprintf("%s %d", op, ops[op])
	}
	return strings.Join(parts, ", ")
}

// BenchmarkDeploy100: each op deploys the TestDeploy100 mix of 100 new
// workflows in one pass, into an inventory of its own (a fresh state bucket
// and names, since kumo's state is shared by the process and never reset).
//
// The stage functions' code is a package of the agent's size (benchCode):
// lambda_code_bytes_uploaded/op counts what the pass sends of it, in S3
// uploads and in requests that carry the package itself (ZipFile).
func BenchmarkDeploy100(b *testing.B) {
	var (
		took         time.Duration
		calls, write int
		codeBytes    int64
	)
	code := benchCode(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(&namedTB{TB: b, name: testenv.UniqueName(b)})
		e.prov = e.newProvisionerWith(e.cfg, provision.NewLambdaCode(code))
		r := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "bench"})
		set := e.mixedWorkflows("w", mixWorkflows, mixSequences)
		fsys := repo(set.files)
		e.calls.Reset()
		b.StartTimer()

		start := time.Now()
		rep := e.sync(r, fsys, "c1")
		took += time.Since(start)

		b.StopTimer()
		if rep.Failed() != 0 {
			b.Fatalf("op %d: %d of %d workflows failed: %v", i, rep.Failed(), mixWorkflows, firstErr(rep))
		}
		if c, _, _ := rep.Plan.Counts(); c != mixWorkflows {
			b.Fatalf("op %d: plan %s, want %d creates", i, rep.Plan.Summary(), mixWorkflows)
		}
		calls += e.calls.Total()
		write += e.calls.Writes()
		codeBytes += lambdaCodeBytesSent(e.calls)
		b.StartTimer()
	}
	b.ReportMetric(float64(calls)/float64(b.N), "aws_calls/op")
	b.ReportMetric(float64(write)/float64(b.N), "aws_writes/op")
	b.ReportMetric(float64(codeBytes)/float64(b.N), "lambda_code_bytes_uploaded/op")
	b.ReportMetric(float64(len(code)), "lambda_code_package_bytes")
	b.ReportMetric(float64(mixWorkflows*b.N)/took.Seconds(), "workflows/s")
}

// benchCode is a stage-function package the size of the agent's own (about
// 7.5 MiB zipped): incompressible bytes, so the zip is as large as its
// content, the same in every run.
func benchCode(tb testing.TB) []byte {
	tb.Helper()
	data := make([]byte, 15<<19) // 7.5 MiB
	// ChaCha8's Read never fails.
	_, _ = rand.NewChaCha8([32]byte{}).Read(data)
	path := filepath.Join(tb.TempDir(), "agent")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		tb.Fatal(err)
	}
	zip, err := provision.LambdaZipFromFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return zip
}

// lambdaCodeBytesSent is how many bytes of stage-function code the recorded
// calls sent: S3 uploads under the code prefix, and packages sent inline
// (ZipFile) to CreateFunction and UpdateFunctionCode.
func lambdaCodeBytesSent(c *testenv.CallCounter) int64 {
	var n int64
	for _, in := range c.Inputs("S3.PutObject") {
		put := in.(*s3.PutObjectInput)
		if !strings.HasPrefix(aws.ToString(put.Key), "lambda/") {
			continue
		}
		if put.ContentLength != nil {
			n += *put.ContentLength
		} else if sized, ok := put.Body.(interface{ Size() int64 }); ok {
			n += sized.Size()
		}
	}
	for _, in := range c.Inputs("Lambda.CreateFunction") {
		if code := in.(*lambda.CreateFunctionInput).Code; code != nil {
			n += int64(len(code.ZipFile))
		}
	}
	for _, in := range c.Inputs("Lambda.UpdateFunctionCode") {
		n += int64(len(in.(*lambda.UpdateFunctionCodeInput).ZipFile))
	}
	return n
}
