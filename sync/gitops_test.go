package sync_test

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/secret"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	cplambda "github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/runner"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

func TestMain(m *testing.M) {
	defer testenv.StopServers()
	// The long tests (t.Parallel) wait on round trips through the AWS
	// rules and on agent processes more than they compute: two at a time,
	// go test's default -parallel on two cores, left about half of the CPU
	// idle. Twice GOMAXPROCS keeps both cores busy; -parallel on the
	// command line still decides.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(2*runtime.GOMAXPROCS(0))); err != nil {
			panic(err)
		}
	}
	m.Run()
}

// gitops is one test's config repository on Gitea with an agent loop on it.
type gitops struct {
	*env
	g     *testenv.GiteaServer
	repo  string // repository name on Gitea
	loop  *pipesync.Loop
	src   *pipesync.Repo
	rec   *pipesync.Reconciler
	clock *fakeClock
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func newGitOps(t testing.TB, httpClient *http.Client) *gitops {
	t.Helper()
	e := newEnv(t)
	g := testenv.Gitea(t)
	name := testenv.UniqueName(t) + "-config"
	cloneURL := g.CreateRepo(t, name)
	alg := repo(nil)
	write := map[string]string{}
	for path, f := range alg {
		write[path] = string(f.Data)
	}
	g.CommitFiles(t, name, testenv.ChangeFiles{Message: "algorithms", Write: write})

	src, err := pipesync.OpenRepo(t.Context(), gitsource.Options{URL: cloneURL, CacheDir: t.TempDir(),
		Token: secret.New(g.Token), Username: g.User, HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	gh, err := status.New(status.Options{APIURL: g.APIURL, Repo: g.RepoName(name), Token: secret.New(g.Token)})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	rec := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "agent-a"})
	o := &gitops{env: e, g: g, repo: name, src: src, rec: rec, clock: clock}
	o.loop = o.newLoop(gh)
	return o
}

// newLoop returns a loop on the repository that reports through gh, as a
// (re)started agent.
func (o *gitops) newLoop(gh *status.GitHub) *pipesync.Loop {
	o.t.Helper()
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: o.src, Reconciler: o.rec, Statuses: gh, PRs: gh, Comments: gh,
		Runs: o.inv, DriftEvery: time.Hour, Now: o.clock.Now})
	if err != nil {
		o.t.Fatal(err)
	}
	return loop
}

// commitStatus is a status as Gitea returns it: Gitea names the state
// "status" in its answers (go-github's RepoStatus reads "state").
type commitStatus struct {
	Context     string `json:"context"`
	State       string `json:"status"`
	Description string `json:"description"`
}

// statusOf returns the latest status of context on commit, from the
// combined status (one entry per context, the latest).
func (o *gitops) statusOf(commit, context string) *commitStatus {
	o.t.Helper()
	var combined struct {
		Statuses []commitStatus `json:"statuses"`
	}
	o.g.API(o.t, "GET", "repos/"+o.g.RepoName(o.repo)+"/commits/"+commit+"/status", nil, &combined)
	for _, s := range combined.Statuses {
		if s.Context == context {
			return &s
		}
	}
	return nil
}

func (o *gitops) pass() pipesync.PassResult {
	o.t.Helper()
	res := o.loop.Pass(o.t.Context())
	if res.Err != nil {
		o.t.Fatalf("pass: %v", res.Err)
	}
	return res
}

func TestGitOpsPullRequestsMergeDriftDelete(t *testing.T) {
	t.Parallel() // one of the long tests run side by side (see TestDeploy100)
	o := newGitOps(t, nil)
	o.pass()

	wf := o.name("pipe")
	file := "workflows/" + wf + ".json"
	in, out := o.name("in"), o.name("out")

	// A pull request adding a workflow is planned, not applied.
	addHead := o.g.CommitFiles(t, o.repo, testenv.ChangeFiles{NewBranch: "add", Message: "add " + wf,
		Write: map[string]string{file: singleRun(in, out, "x", `"retain_buckets": false`)}})
	addPR := o.g.CreatePullRequest(t, o.repo, "add", "main", "add a pipeline")
	// A pull request with a broken file gets a failure naming file and field.
	brokenFile := "workflows/" + o.name("broken") + ".json"
	brokenHead := o.g.CommitFiles(t, o.repo, testenv.ChangeFiles{NewBranch: "broken", Message: "broken",
		Write: map[string]string{brokenFile: singleRun("Bad_Bucket", o.name("bout"), "x")}})
	o.g.CreatePullRequest(t, o.repo, "broken", "main", "a broken pipeline")

	o.pass()
	if s := o.statusOf(addHead, "cloudpipe/plan"); s == nil || s.State != "success" || s.Description != "+1 create ~0 update -0 delete" {
		t.Fatalf("plan status of the adding PR: %+v", s)
	}
	s := o.statusOf(brokenHead, "cloudpipe/plan")
	if s == nil || s.State != "failure" || !strings.Contains(s.Description, brokenFile+":input_s3_name") {
		t.Fatalf("plan status of the broken PR: %+v", s)
	}
	if got := o.existing(wf, 1); len(got) != 0 {
		t.Fatalf("planning a pull request created %v", got)
	}

	// Merging deploys and says where to upload.
	merge := o.g.MergePullRequest(t, o.repo, addPR)
	res := o.pass()
	if res.Commit != merge || res.Report == nil {
		t.Fatalf("pass after merge: commit %s (merge %s), report %v", res.Commit, merge, res.Report)
	}
	s = o.statusOf(merge, "cloudpipe/"+wf)
	if s == nil || s.State != "success" || !strings.Contains(s.Description, "s3://"+in) || !strings.Contains(s.Description, "s3://"+out) {
		t.Fatalf("status on the merge commit: %+v", s)
	}
	if got := o.existing(wf, 1); len(got) != 8 {
		t.Fatalf("resources after merge: %v", got)
	}

	// A file uploaded runs through the real handler and runner, and the run
	// shows in cloudpipe/run/<workflow> on the merge commit.
	o.runOneFile(wf, in)
	if err := o.loop.UpdateRunStatuses(t.Context()); err != nil {
		t.Fatal(err)
	}
	s = o.statusOf(merge, "cloudpipe/run/"+wf)
	if s == nil || s.State != "success" || !strings.HasPrefix(s.Description, "1 done, 0 failed") || !strings.Contains(s.Description, "s3://"+out+"/") {
		t.Fatalf("run status on the merge commit: %+v", s)
	}

	// Nothing moved: the next pass is skipped.
	if res := o.pass(); !res.Skipped {
		t.Errorf("pass with an unchanged branch was not skipped: %+v", res)
	}

	// A queue deleted by hand comes back at the next drift check.
	q, err := o.sqs.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(provision.ResourceName(wf, 0))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.sqs.DeleteQueue(t.Context(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	// Two hours pass, for AWS too: SQS frees a deleted queue's name after 60 s.
	o.clock.now = o.clock.now.Add(2 * time.Hour)
	testenv.AdvanceAWSClock(2 * time.Hour)
	res = o.pass()
	if !res.Drift || res.Report == nil {
		t.Fatalf("no drift check after the interval: %+v", res)
	}
	mended := false
	for _, r := range res.Report.Results {
		if r.Workflow == wf && r.Action == pipesync.Update && strings.Contains(r.Reason, "drift") && r.Err == nil {
			mended = true
		}
	}
	if !mended {
		t.Errorf("drift pass did not report mending %s: %+v", wf, res.Report.Results)
	}
	if got := o.existing(wf, 1); len(got) != 8 {
		t.Fatalf("resources after the drift check: %v", got)
	}

	// Deleting the file tears the pipeline down and says so.
	del := o.g.CommitFiles(t, o.repo, testenv.ChangeFiles{Message: "remove " + wf, Delete: []string{file}})
	o.pass()
	s = o.statusOf(del, "cloudpipe/"+wf)
	if s == nil || s.State != "success" || !strings.Contains(s.Description, "torn down") {
		t.Fatalf("status after removal: %+v", s)
	}
	if got := o.existing(wf, 1); len(got) != 0 {
		t.Fatalf("left after removal: %v", got)
	}
}

// countingTransport counts HTTP requests, as the Git server sees them.
type countingTransport struct {
	n  atomic.Int64
	rt http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

// BenchmarkPollNoChange is the agent's steady state: a scheduled poll of a
// branch that has not moved. It must cost one Git request and no AWS call.
func BenchmarkPollNoChange(b *testing.B) {
	gitReqs := &countingTransport{rt: http.DefaultTransport}
	o := newGitOps(b, &http.Client{Transport: gitReqs})
	o.g.CommitFiles(b, o.repo, testenv.ChangeFiles{Message: "one workflow", Write: map[string]string{
		"workflows/" + o.name("poll") + ".json": singleRun(o.name("in"), o.name("out"), "x")}})
	if res := o.loop.Pass(b.Context()); res.Err != nil || res.Report == nil || res.Report.Failed() != 0 {
		b.Fatalf("first pass: %+v", res)
	}
	gitReqs.n.Store(0)
	o.calls.Reset()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := o.loop.Pass(b.Context()); !res.Skipped || res.Err != nil {
			b.Fatalf("poll %d was not skipped: %+v", i, res)
		}
	}
	b.StopTimer()
	// Wall time is mostly Gitea forking git for the ref advertisement; the
	// agent's own cost is the CPU this process used (Gitea is another one).
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu_ns/op")
	b.ReportMetric(float64(gitReqs.n.Load())/float64(b.N), "git_requests/op")
	b.ReportMetric(float64(o.calls.Total())/float64(b.N), "aws_calls/op")
}

// processCPU is the user+system CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPassOneChanged measures a pass after a commit that changes one
// workflow, in a repository of 1 and of 1000 workflows (Gitea and kumo on
// loopback). The goal is that the 1000-workflow pass takes at most 1.5 times
// as long as the 1-workflow one: the other 999 cost a file read each and no
// AWS call.
func BenchmarkPassOneChanged(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("workflows=%d", n), func(b *testing.B) {
			o := newGitOps(b, nil)
			files := map[string]string{}
			for i := range n {
				files["workflows/"+o.name(fmt.Sprintf("w%d", i))+".json"] = singleRun(o.name(fmt.Sprintf("i%d", i)), o.name(fmt.Sprintf("o%d", i)), "x")
			}
			// Many files go in one push: Gitea's contents API is too slow for 1000.
			dir := b.TempDir()
			o.g.Git(b, dir, "clone", "-q", o.g.PushURL(o.repo), ".")
			if err := os.MkdirAll(filepath.Join(dir, "workflows"), 0o755); err != nil {
				b.Fatal(err)
			}
			for path, data := range files {
				if err := os.WriteFile(filepath.Join(dir, path), []byte(data), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			o.g.Git(b, dir, "add", ".")
			o.g.Git(b, dir, "commit", "-q", "-m", "workflows")
			o.g.Git(b, dir, "push", "-q", "origin", "main")
			if res := o.loop.Pass(b.Context()); res.Err != nil || res.Report.Failed() != 0 {
				b.Fatalf("first pass: %+v", res)
			}
			target := "workflows/" + o.name("w0") + ".json"
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				o.g.CommitFiles(b, o.repo, testenv.ChangeFiles{Message: "change one", Write: map[string]string{
					target: singleRun(o.name("i0"), o.name("o0"), fmt.Sprintf("mode-%d", i))}})
				b.StartTimer()
				res := o.loop.Pass(b.Context())
				if res.Err != nil || res.Report == nil || res.Report.Failed() != 0 {
					b.Fatalf("pass %d: %+v", i, res)
				}
				if c, u, d := res.Report.Plan.Counts(); c+u+d != 1 {
					b.Fatalf("pass %d: plan %s, want one update", i, res.Report.Plan.Summary())
				}
			}
		})
	}
}

// runOneFile uploads a file to the workflow's input bucket and carries it
// through stage 0 as AWS would, minus the delivery plumbing: the S3 event goes
// to the real Lambda handler (which queues it and calls RunTask, which kumo
// ignores), and the real runner, configured from the task definition the
// agent registered, processes the queue in-process.
func (o *gitops) runOneFile(wf, in string) {
	t := o.t
	ctx := t.Context()
	key := "batch 1/unsorted+lines é.txt"
	o.put(in, key, "pear\napple\nfig\n")

	fn, err := o.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(provision.ResourceName(wf, 0))})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := cplambda.ConfigFromEnv(mapEnv(fn.Environment.Variables))
	if err != nil {
		t.Fatal(err)
	}
	ev := events.S3Event{Records: []events.S3EventRecord{{
		EventSource: "aws:s3", EventName: "ObjectCreated:Put", EventTime: time.Now(),
		S3: events.S3Entity{Bucket: events.S3Bucket{Name: in}, Object: events.S3Object{Key: url.QueryEscape(key), Size: 16, ETag: "e1"}},
	}}}
	// The handler acts as the function's role, as it would in Lambda.
	if err := cplambda.New(testenv.AsRoleARN(o.cfg, aws.ToString(fn.Role)), lc).Handle(ctx, ev); err != nil {
		t.Fatalf("handler: %v", err)
	}

	var env map[string]string
	var taskRole string
	for _, in := range o.calls.Inputs("ECS.RegisterTaskDefinition") {
		td := in.(*ecs.RegisterTaskDefinitionInput)
		if aws.ToString(td.Family) != provision.ResourceName(wf, 0) {
			continue
		}
		taskRole = aws.ToString(td.TaskRoleArn)
		env = map[string]string{}
		for _, kv := range td.ContainerDefinitions[len(td.ContainerDefinitions)-1].Environment {
			env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
	}
	if env == nil {
		t.Fatal("no task definition registered for stage 0")
	}
	rc, err := runner.ConfigFromEnv(mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	// The algorithm's paths are container paths; on this host, a temp dir.
	dir := t.TempDir()
	rc.InputPath, rc.OutputPath = dir+"/in/", dir+"/out/"
	rc.S3UsePathStyle, rc.IdleTimeout, rc.WaitTime = true, time.Second, time.Second
	// The runner acts as the task role, as it would in ECS.
	if err := runner.Run(ctx, testenv.AsRoleARN(o.cfg, taskRole), rc, slog.New(slog.NewTextHandler(testWriter{t}, nil))); err != nil {
		t.Fatalf("runner: %v", err)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
