package sync_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// stageResourceNames lists the names of the per-stage resources cloudpipe
// creates, by kind, so tests can look for leftovers.
func stageResourceNames(wf string, stage int) map[string][]string {
	n := provision.ResourceName(wf, stage)
	return map[string][]string{
		"queue":    {n, n + "-dlq"},
		"role":     {n + "-lambda", n + "-exec", n + "-task"},
		"function": {n},
		"loggroup": {"/aws/lambda/" + n},
	}
}

// existing returns which of the workflow's stage resources exist now.
func (e *env) existing(wf string, stages int) []string {
	e.t.Helper()
	ctx := e.t.Context()
	var found []string
	for i := range stages {
		for kind, names := range stageResourceNames(wf, i) {
			for _, name := range names {
				var err error
				switch kind {
				case "queue":
					_, err = e.sqs.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
				case "role":
					_, err = e.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
				case "function":
					_, err = e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(name)})
				case "loggroup":
					err = e.logGroupExists(name)
				}
				if err == nil {
					found = append(found, kind+" "+name)
				}
			}
		}
	}
	if e.logGroupExists("/cloudpipe/"+wf) == nil {
		found = append(found, "loggroup /cloudpipe/"+wf)
	}
	sort.Strings(found)
	return found
}

func (e *env) logGroupExists(name string) error {
	out, err := e.logs.DescribeLogGroups(e.t.Context(), &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(name)})
	if err != nil {
		return err
	}
	for _, g := range out.LogGroups {
		if aws.ToString(g.LogGroupName) == name {
			return nil
		}
	}
	return errors.New("no log group " + name)
}

func (e *env) bucketExists(name string) bool {
	_, err := e.s3.HeadBucket(e.t.Context(), &s3.HeadBucketInput{Bucket: aws.String(name)})
	return err == nil
}

func (e *env) put(bucket, key, body string) {
	e.t.Helper()
	_, err := e.s3.PutObject(e.t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
	if err != nil {
		e.t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

func actions(rep *pipesync.Report) map[string]string {
	got := map[string]string{}
	for _, r := range rep.Results {
		s := string(r.Action)
		if r.Err != nil {
			s += " failed: " + r.Err.Error()
		}
		got[r.Workflow] = s
	}
	return got
}

func wantActions(t *testing.T, rep *pipesync.Report, want map[string]string) {
	t.Helper()
	got := actions(rep)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results:\n got  %v\n want %v", got, want)
	}
}

func TestReconcileLifecycle(t *testing.T) {
	e := newEnv(t)
	r := e.reconciler("agent-a")
	single, chain := e.name("single"), e.name("chain")
	files := map[string]string{
		single: singleRun(e.name("in"), e.name("out"), "fast", `"retain_buckets": false`),
		chain:  sequenceRun(e.name("chain-in"), e.name("chain-out")),
	}

	// Create: every resource exists.
	rep := e.sync(r, repo(files), "c1")
	wantActions(t, rep, map[string]string{single: "create", chain: "create"})
	if got := e.existing(single, 1); len(got) != 8 {
		t.Fatalf("single_run resources after create: %v (want 8)", got)
	}
	if got := e.existing(chain, 3); len(got) != 22 {
		t.Fatalf("sequence_run resources after create: %v (want 22)", got)
	}
	for _, b := range []string{e.name("in"), e.name("out"), e.name("chain-in"), e.name("chain-out"),
		provision.IntermediateBucketName(chain, 0, "000000000000", "us-east-1"),
		provision.IntermediateBucketName(chain, 1, "000000000000", "us-east-1")} {
		if !e.bucketExists(b) {
			t.Errorf("bucket %s missing after create", b)
		}
	}
	// The sequence is wired bucket to bucket: stage i+1's function is notified
	// by stage i's output bucket.
	for i := 1; i < 3; i++ {
		mid := provision.IntermediateBucketName(chain, i-1, "000000000000", "us-east-1")
		n, err := e.s3.GetBucketNotificationConfiguration(t.Context(), &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(mid)})
		if err != nil {
			t.Fatal(err)
		}
		if len(n.LambdaFunctionConfigurations) != 1 || !strings.HasSuffix(aws.ToString(n.LambdaFunctionConfigurations[0].LambdaFunctionArn), provision.ResourceName(chain, i)) {
			t.Errorf("bucket %s notifies %+v, want stage %d's function", mid, n.LambdaFunctionConfigurations, i)
		}
	}
	rec, err := e.inv.ReadRecord(t.Context(), chain)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != inventory.StateReady || rec.Commit != "c1" || len(rec.Stages) != 3 {
		t.Errorf("record after create: state %s commit %s stages %d", rec.State, rec.Commit, len(rec.Stages))
	}

	// A second pass with nothing changed: no AWS write at all.
	e.calls.Reset()
	rep = e.sync(r, repo(files), "c1")
	wantActions(t, rep, map[string]string{single: "unchanged", chain: "unchanged"})
	if w := e.calls.Writes(); w != 0 {
		t.Errorf("unchanged pass made %d write calls: %v", w, e.calls.Ops())
	}
	// A new commit that changes nothing: one read and one write of the index.
	e.calls.Reset()
	rep = e.sync(r, repo(files), "c2")
	wantActions(t, rep, map[string]string{single: "unchanged", chain: "unchanged"})
	if total := e.calls.Total(); total > 3 {
		t.Errorf("new commit without changes made %d AWS calls (want <= 3): %v", total, e.calls.Ops())
	}

	// Change one variable of the single_run: only its task definition changes.
	files[single] = singleRun(e.name("in"), e.name("out"), "slow", `"retain_buckets": false`)
	e.calls.Reset()
	rep = e.sync(r, repo(files), "c3")
	wantActions(t, rep, map[string]string{single: "update", chain: "unchanged"})
	writes := e.calls.WriteOps()
	for op := range writes {
		if op != "ECS.RegisterTaskDefinition" && op != "ECS.DeregisterTaskDefinition" && op != "Lambda.UpdateFunctionConfiguration" && op != "S3.PutObject" {
			t.Errorf("variable change wrote %s (writes: %v)", op, writes)
		}
	}
	if writes["ECS.RegisterTaskDefinition"] != 1 {
		t.Errorf("variable change: %d task definitions registered, want 1 (writes: %v)", writes["ECS.RegisterTaskDefinition"], writes)
	}

	// Remove both files; data in the sequence's input bucket survives.
	e.put(e.name("chain-in"), "keep/me.txt", "precious")
	rep = e.sync(r, repo(nil), "c4")
	wantActions(t, rep, map[string]string{single: "delete", chain: "delete"})
	if got := e.existing(single, 1); len(got) != 0 {
		t.Errorf("left after delete of %s: %v", single, got)
	}
	if got := e.existing(chain, 3); len(got) != 0 {
		t.Errorf("left after delete of %s: %v", chain, got)
	}
	if e.bucketExists(e.name("in")) || e.bucketExists(e.name("out")) {
		t.Errorf("empty buckets of a retain_buckets=false workflow were kept")
	}
	if !e.bucketExists(e.name("chain-in")) {
		t.Errorf("bucket holding data was deleted")
	}
	var kept []string
	for _, res := range rep.Results {
		for _, kb := range res.KeptBuckets {
			kept = append(kept, kb.Name)
		}
	}
	if !slices.Contains(kept, e.name("chain-in")) {
		t.Errorf("kept buckets %v do not report %s", kept, e.name("chain-in"))
	}
	if _, err := e.inv.ReadRecord(t.Context(), chain); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("record of deleted workflow: %v, want ErrNotFound", err)
	}
	idx, err := e.inv.ReadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Workflows) != 0 {
		t.Errorf("index after deleting everything: %v", idx.Workflows)
	}
}

func TestReconcileBrokenFileDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t)
	r := e.reconciler("agent-a")
	good, broken := e.name("good"), e.name("broken")
	files := map[string]string{
		good:   singleRun(e.name("in"), e.name("out"), "x"),
		broken: `{"input_s3_name": "Not_A_Bucket", "output_s3_name": "x", "region": "us-east-1", "process": {"type": "single_run", "algorithms": [{"name": "sorter", "port": [], "variables": {}}]}}`,
	}
	rep := e.sync(r, repo(files), "c1")
	got := actions(rep)
	if got[good] != "create" {
		t.Errorf("good workflow: %s, want create", got[good])
	}
	if !strings.HasPrefix(got[broken], "invalid failed: workflows/"+broken+".json:") || !strings.Contains(got[broken], "input_s3_name") {
		t.Errorf("broken workflow: %q, want an invalid result naming file and field", got[broken])
	}
	if rep.Failed() != 1 {
		t.Errorf("Failed() = %d, want 1", rep.Failed())
	}

	// Breaking the deployed file later keeps the pipeline running.
	files[good] = `{"input_s3_name": ` // truncated
	rep = e.sync(r, repo(files), "c2")
	if got := actions(rep)[good]; !strings.HasPrefix(got, "invalid") {
		t.Errorf("deployed workflow with a broken file: %s, want invalid", got)
	}
	if got := e.existing(good, 1); len(got) != 8 {
		t.Errorf("a broken edit tore resources down: %v", got)
	}
}

func TestReconcileAccountMismatchWritesNothing(t *testing.T) {
	e := newEnv(t)
	r := e.reconciler("agent-a")
	wf := e.name("acct")
	files := map[string]string{wf: singleRun(e.name("in"), e.name("out"), "x", `"account_id": "111122223333"`)}
	e.calls.Reset()
	rep := e.sync(r, repo(files), "c1")
	got := actions(rep)[wf]
	if !strings.Contains(got, "account_id") || !strings.Contains(got, "111122223333") || !strings.Contains(got, "000000000000") {
		t.Errorf("result %q, want an account_id mismatch naming both accounts", got)
	}
	// Only the index may be written (to record the pass's commit).
	for op, n := range e.calls.WriteOps() {
		if op != "S3.PutObject" || n > 1 {
			t.Errorf("account mismatch wrote %s %d times (writes: %v)", op, n, e.calls.WriteOps())
		}
	}
	if _, err := e.inv.ReadRecord(t.Context(), wf); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("account mismatch left an inventory record: %v", err)
	}
	if got := e.existing(wf, 1); len(got) != 0 {
		t.Errorf("account mismatch created %v", got)
	}
}

func TestReconcileForeignResourceIsRefused(t *testing.T) {
	e := newEnv(t)
	r := e.reconciler("agent-a")
	wf := e.name("foreign")
	queue := provision.ResourceName(wf, 0)
	if _, err := e.sqs.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(queue),
		Attributes: map[string]string{"VisibilityTimeout": "7"}}); err != nil {
		t.Fatal(err)
	}
	rep := e.sync(r, repo(map[string]string{wf: singleRun(e.name("in"), e.name("out"), "x")}), "c1")
	res := rep.Results[0]
	if !errors.Is(res.Err, provision.ErrNotOwned) || !strings.Contains(res.Err.Error(), queue) {
		t.Fatalf("result %v, want ErrNotOwned naming %s", res.Err, queue)
	}
	// Deleting the workflow must leave the foreign queue alone.
	e.sync(r, repo(nil), "c2")
	url, err := e.sqs.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		t.Fatalf("foreign queue deleted: %v", err)
	}
	attrs, err := e.sqs.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{"VisibilityTimeout"}})
	if err != nil {
		t.Fatal(err)
	}
	if attrs.Attributes["VisibilityTimeout"] != "7" {
		t.Errorf("foreign queue changed: %v", attrs.Attributes)
	}
}

// TestReconcileCrashResume kills the pass (no AWS call gets through) after
// every possible number of AWS calls; a clean pass afterwards must converge:
// every resource present and on record, nothing left over or duplicated.
// The crash points are shared by lanes run side by side, each with its own
// state bucket and crash switch: the test waits on AWS round trips far more
// than it computes, and alone it was the sync package's longest by minutes.
// Lanes of a few dozen crash points each let the other long tests fill the
// two cores as the last lanes end.
func TestReconcileCrashResume(t *testing.T) {
	t.Parallel() // one of the long tests run side by side (see TestDeploy100)
	e := newEnv(t)
	probe := e.reconciler("agent-a")
	// Count the calls of a full create and delete of one sequence workflow.
	wf := e.name("probe")
	files := map[string]string{wf: sequenceRun(e.name("p-in"), e.name("p-out"))}
	e.calls.Reset()
	e.sync(probe, repo(files), "c1")
	createCalls := e.calls.Total()
	e.calls.Reset()
	e.sync(probe, repo(nil), "c2")
	deleteCalls := e.calls.Total()
	t.Logf("a three-stage create takes %d AWS calls, its delete %d", createCalls, deleteCalls)

	step := 1
	if testing.Short() {
		step = 7
	}
	const lanes = 4
	for lane := range lanes {
		t.Run(fmt.Sprintf("lane%d", lane), func(t *testing.T) {
			t.Parallel()
			crashResumeLane(t, newEnv(t), createCalls, deleteCalls, lane*step, lanes*step)
		})
	}
}

// crashResumeLane is TestReconcileCrashResume for the crash points first,
// first+stride, ... below createCalls+deleteCalls.
func crashResumeLane(t *testing.T, e *env, createCalls, deleteCalls, first, stride int) {
	for n := first; n < createCalls+deleteCalls; n += stride {
		name := e.name(fmt.Sprintf("c%d", n))
		files := map[string]string{name: sequenceRun(e.name(fmt.Sprintf("i%d", n)), e.name(fmt.Sprintf("o%d", n)), `"retain_buckets": false`)}
		r := e.reconciler("agent-a")
		crashAt := n
		if n >= createCalls {
			// Crash during teardown: create cleanly first.
			e.sync(r, repo(files), "c1")
			files = nil
			crashAt = n - createCalls
		}
		e.crash.arm(int64(crashAt))
		_, _ = r.Reconcile(t.Context(), pipesync.LoadDesired(repo(files), "c2"))
		e.crash.disarm()

		// A restarted agent (same ID) resumes.
		rep := e.sync(e.reconciler("agent-a"), repo(files), "c3")
		if rep.Failed() != 0 {
			t.Fatalf("crash after %d calls: resume pass failed: %v", n, actions(rep))
		}
		got := e.existing(name, 3)
		if files != nil && len(got) != 22 {
			t.Fatalf("crash after %d calls: after resume %d resources (want 22): %v", n, len(got), got)
		}
		if files == nil && len(got) != 0 {
			t.Fatalf("crash after %d calls in teardown: left behind %v", n, got)
		}
		if files != nil {
			e.checkNoDuplicates(name, 3)
			// Tear down so the next round starts clean and teardown is checked.
			e.sync(e.reconciler("agent-a"), repo(nil), "c4")
			if got := e.existing(name, 3); len(got) != 0 {
				t.Fatalf("crash after %d calls: teardown after resume left %v", n, got)
			}
		}
	}
}

// checkNoDuplicates looks for what a repeated create could double: bucket
// notification entries and Lambda permissions.
func (e *env) checkNoDuplicates(wf string, stages int) {
	e.t.Helper()
	rec, err := e.inv.ReadRecord(e.t.Context(), wf)
	if err != nil {
		e.t.Fatalf("record of %s: %v", wf, err)
	}
	for _, st := range rec.Stages {
		n, err := e.s3.GetBucketNotificationConfiguration(e.t.Context(), &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String(st.Spec.InputBucket)})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(n.LambdaFunctionConfigurations) != 1 {
			e.t.Errorf("bucket %s has %d lambda notifications, want 1", st.Spec.InputBucket, len(n.LambdaFunctionConfigurations))
		}
		pol, err := e.lambda.GetPolicy(e.t.Context(), &lambda.GetPolicyInput{FunctionName: aws.String(provision.ResourceName(wf, st.Spec.Stage))})
		if err != nil {
			e.t.Fatal(err)
		}
		if c := strings.Count(aws.ToString(pol.Policy), "s3.amazonaws.com"); c != 1 {
			e.t.Errorf("function %s has %d s3 permissions, want 1", provision.ResourceName(wf, st.Spec.Stage), c)
		}
	}
	if len(rec.Stages) != stages {
		e.t.Errorf("record has %d stages, want %d", len(rec.Stages), stages)
	}
}

// TestReconcileRacingAgents runs two agents on one state bucket at the same
// time: each workflow is applied by exactly one of them and no inventory
// write is lost.
func TestReconcileRacingAgents(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{}
	for i := range 6 {
		files[e.name(fmt.Sprintf("w%d", i))] = singleRun(e.name(fmt.Sprintf("in%d", i)), e.name(fmt.Sprintf("out%d", i)), "x")
	}
	var mu sync.Mutex
	applied := map[string]int{}
	newAgent := func(id string) *pipesync.Reconciler {
		return mustReconciler(pipesync.Options{
			Provisioner: e.prov, Inventory: e.inv, AgentID: id, Concurrency: 4,
			OnEvent: func(ev pipesync.Event) {
				if ev.Done && ev.Err == nil && ev.Action == pipesync.Create {
					mu.Lock()
					applied[ev.Workflow]++
					mu.Unlock()
				}
			},
		})
	}
	a, b := newAgent("agent-a"), newAgent("agent-b")
	var wg sync.WaitGroup
	for _, r := range []*pipesync.Reconciler{a, b} {
		wg.Go(func() {
			if _, err := r.Reconcile(t.Context(), pipesync.LoadDesired(repo(files), "c1")); err != nil {
				t.Errorf("reconcile: %v", err)
			}
		})
	}
	wg.Wait()
	// Whatever one agent skipped (held by the other) is done by now; a
	// further pass from each changes nothing.
	for _, r := range []*pipesync.Reconciler{a, b} {
		rep := e.sync(r, repo(files), "c1")
		for _, res := range rep.Results {
			if res.Action != pipesync.Unchanged {
				t.Errorf("after the race, %s is %s (%v)", res.Workflow, res.Action, res.Err)
			}
		}
	}
	for name := range files {
		if applied[name] != 1 {
			t.Errorf("%s applied %d times, want 1", name, applied[name])
		}
	}
	idx, err := e.inv.ReadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name := range files {
		if idx.Workflows[name].State != inventory.StateReady {
			t.Errorf("index entry of %s: %+v, want ready (lost write?)", name, idx.Workflows[name])
		}
	}
}

// TestReconcileAgentUpgrade: a new agent release (other stage-function code,
// same workflow files) updates every deployed workflow once: new function
// code, nothing else rebuilt; then the workflows are unchanged again.
func TestReconcileAgentUpgrade(t *testing.T) {
	e := newEnv(t)
	wf := e.name("up")
	files := map[string]string{wf: singleRun(e.name("in"), e.name("out"), "fast")}
	r1 := mustReconciler(pipesync.Options{Provisioner: e.prov, Inventory: e.inv, AgentID: "a", Release: "r1"})
	wantActions(t, e.sync(r1, repo(files), "c1"), map[string]string{wf: "create"})

	// The upgraded agent: other code in its package, another release.
	upgraded := provision.New(e.cfg, provision.Options{
		Cluster: "cloudpipe", Network: e.network, StateBucket: e.state,
		LambdaCode:  provision.NewLambdaCode(append(tinyZip(t), "upgraded"...)),
		RunnerImage: "cloudpipe/agent:test", S3UsePathStyle: true, IAMPropagationTimeout: 2 * time.Second,
	})
	r2 := mustReconciler(pipesync.Options{Provisioner: upgraded, Inventory: e.inv, AgentID: "a", Release: "r2"})
	e.calls.Reset()
	rep := e.sync(r2, repo(files), "c1")
	wantActions(t, rep, map[string]string{wf: "update"})
	if reason := rep.Plan.Changes[0].Reason; !strings.Contains(reason, "agent upgraded") {
		t.Errorf("upgrade reason %q, want it to say the agent was upgraded", reason)
	}
	writes := e.calls.WriteOps()
	if writes["Lambda.UpdateFunctionCode"] != 1 {
		t.Errorf("upgrade: %d UpdateFunctionCode, want 1 (writes: %v)", writes["Lambda.UpdateFunctionCode"], writes)
	}
	for op := range writes {
		if op != "Lambda.UpdateFunctionCode" && op != "S3.PutObject" {
			t.Errorf("upgrade wrote %s: only the function code and the inventory should change (writes: %v)", op, writes)
		}
	}
	idx, err := e.inv.ReadIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.Workflows[wf].Release; got != "r2" {
		t.Errorf("index release %q after the upgrade, want r2", got)
	}

	e.calls.Reset()
	wantActions(t, e.sync(r2, repo(files), "c1"), map[string]string{wf: "unchanged"})
	if w := e.calls.Writes(); w != 0 {
		t.Errorf("pass after the upgrade made %d writes: %v", w, e.calls.Ops())
	}
}
