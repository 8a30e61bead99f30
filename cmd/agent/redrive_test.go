package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/deploy"
	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// failedStage is a deployed stage (deployStage) whose inventory records it
// as the agent would, with files whose runs failed in its dead-letter
// queue: files uploaded and queued that a failing algorithm ran on until
// SQS dead-lettered them, one S3 event the stage function failed (Lambda's
// invocation record) and one letter that names no object.
type failedStage struct {
	*deployedStage
	files []string // the keys of the objects that should be processed
}

const failedFiles = 3 // files queued and failed by the algorithm

func newFailedStage(t *testing.T) *failedStage {
	t.Helper()
	ctx := t.Context()
	name := testenv.UniqueName(t)
	op := testenv.Kumo(t)
	s3c := s3.NewFromConfig(op, testenv.S3PathStyle)
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name + "-in")}); err != nil {
		t.Fatal(err)
	}
	f := &failedStage{}
	for i := range failedFiles + 1 {
		key := fmt.Sprintf("in/file %d.txt", i)
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(name + "-in"), Key: aws.String(key),
			Body: strings.NewReader(fmt.Sprintf("b%d\na%d\n", i, i))}); err != nil {
			t.Fatal(err)
		}
		f.files = append(f.files, key)
	}
	f.deployedStage = deployStage(t, name)

	// The inventory, as a pass that deployed the stage leaves it.
	inv := inventory.NewStore(testenv.Agent(t), f.state, true)
	now := time.Now().UTC()
	if err := inv.WriteIndex(ctx, &inventory.Index{Commit: "c0ffee1234567", UpdatedAt: now, Workflows: map[string]inventory.IndexEntry{
		name: {Region: testenv.Region, Stages: 1, SpecHash: "h1", Commit: "c0ffee1234567", State: inventory.StateReady, UpdatedAt: now},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := inv.WriteRecord(ctx, &inventory.Record{Workflow: name, Region: testenv.Region, Commit: "c0ffee1234567",
		SpecHash: "h1", State: inventory.StateReady, UpdatedAt: now,
		Stages: []inventory.StageRecord{{Spec: f.spec, Resources: f.res}}}); err != nil {
		t.Fatal(err)
	}

	// Files the stage function queued...
	q := sqs.NewFromConfig(op)
	for _, key := range f.files[:failedFiles] {
		body, err := contract.Message{Bucket: name + "-in", Key: key, Size: 6}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(f.res.QueueURL), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	// ... that a broken algorithm fails on every delivery, until SQS moves
	// them to the dead-letter queue (maxReceiveCount 3).
	f.runRunner(t, "false $input")
	// An event the stage function failed on every attempt, and a letter
	// that names nothing.
	record := `{"version":"1.0","timestamp":"2026-01-02T03:07:05.568Z","requestContext":{"requestId":"e4b46cbf",` +
		`"functionArn":"arn:aws:lambda:us-east-1:123456789012:function:cp-x-0:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3},` +
		`"requestPayload":{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-01-02T03:04:05.000Z",` +
		`"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"` + name + `-in"},"object":{"key":"` + url.QueryEscape(f.files[failedFiles]) + `","size":6}}}]},` +
		`"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"responsePayload":{"errorMessage":"run task: throttled"}}`
	for _, body := range []string{record, "not a dead letter"} {
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(f.res.DLQURL), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// runRunner runs `agent runner` in-process as the stage's task would, with
// run_command command, until the work queue is idle.
func (f *failedStage) runRunner(t *testing.T, command string) {
	t.Helper()
	asRole(t, roleName(f.taskRoleARN))
	dir := t.TempDir()
	env := maps.Clone(f.runnerEnv)
	maps.Copy(env, map[string]string{
		"CLOUDPIPE_RUN_COMMAND": command, "CLOUDPIPE_INPUT_PATH": dir + "/in/", "CLOUDPIPE_OUTPUT_PATH": dir + "/out/",
		"CLOUDPIPE_WAIT_TIME": "1", "CLOUDPIPE_IDLE_TIMEOUT": "2", "CLOUDPIPE_RETRY_DELAY": "1ms",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code := dispatch(t.Context(), []string{"runner", "--log-format", "json"}, envOf(nil), streams{&out, &errOut})
	if code != exitOK && !strings.HasPrefix(command, "false") {
		t.Fatalf("agent runner: exit %d\n%s", code, errOut.String())
	}
	for k := range env {
		os.Unsetenv(k) // t.Setenv restores them at the end
	}
}

// agentCommand runs an agent command in-process as the agent's role.
func (f *failedStage) agentCommand(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	asAgentRole(t)
	var out, errOut bytes.Buffer
	code = dispatch(t.Context(), append(args, "--state-bucket", f.state, "--log-format", "json"), envOf(nil), streams{&out, &errOut})
	return code, out.String(), errOut.String()
}

// status is `agent status --json` of the stage's workflow.
func (f *failedStage) status(t *testing.T) pipesync.WorkflowStatus {
	t.Helper()
	code, out, errOut := f.agentCommand(t, "status", "--json", f.name)
	var got []pipesync.WorkflowStatus
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 {
		t.Fatalf("agent status --json %s: exit %d\n%s\n%s", f.name, code, out, errOut)
	}
	return got[0]
}

// queueCounts reads the queues' counts as the operator.
func (f *failedStage) queueCounts(t *testing.T) (waiting, inFlight, dead int) {
	t.Helper()
	q := sqs.NewFromConfig(testenv.Kumo(t))
	count := func(url string) (int, int) {
		out, err := q.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		var a, b int
		fmt.Sscan(out.Attributes["ApproximateNumberOfMessages"], &a)
		fmt.Sscan(out.Attributes["ApproximateNumberOfMessagesNotVisible"], &b)
		return a, b
	}
	waiting, inFlight = count(f.res.QueueURL)
	d1, d2 := count(f.res.DLQURL)
	return waiting, inFlight, d1 + d2
}

// okRuns maps each object to its successful run records.
func (f *failedStage) okRuns(t *testing.T) map[string][]contract.RunRecord {
	t.Helper()
	inv := inventory.NewStore(testenv.Kumo(t), f.state, true)
	keys, err := inv.ListRunKeys(t.Context(), f.name, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string][]contract.RunRecord{}
	for _, k := range keys {
		if info, ok := contract.ParseRunRecordKey(k); !ok || info.Outcome != contract.OutcomeOK {
			continue
		}
		var r contract.RunRecord
		if err := inv.ReadRun(t.Context(), k, &r); err != nil {
			t.Fatal(err)
		}
		runs[r.Input] = append(runs[r.Input], r)
	}
	return runs
}

// checkProcessedOnce: every file has exactly one successful run, and the
// letter that names nothing is still a dead letter.
func (f *failedStage) checkProcessedOnce(t *testing.T) {
	t.Helper()
	runs := f.okRuns(t)
	for _, key := range f.files {
		in := "s3://" + f.name + "-in/" + key
		if n := len(runs[in]); n != 1 {
			t.Errorf("%s: %d successful runs, want exactly 1 (%+v)", in, n, runs[in])
		}
	}
	if len(runs) != len(f.files) {
		t.Errorf("runs of %d objects, want %d: %v", len(runs), len(f.files), slices.Collect(maps.Keys(runs)))
	}
	if _, _, dead := f.queueCounts(t); dead != 1 {
		t.Errorf("%d dead letters after the redrive, want the 1 that names no object", dead)
	}
}

// TestStatusAndRedrive: after a broken algorithm dead-lettered files,
// `agent status` counts what the queues and the run records hold; after the
// fix, `agent redrive` moves every dead letter that names an object back
// (Lambda's invocation record as the work message of its object), starts a
// task and says so, and every file is then processed exactly once. Both run
// as the agent's role, so its policy allows what they do.
func TestStatusAndRedrive(t *testing.T) {
	f := newFailedStage(t)

	st := f.status(t)
	waiting, inFlight, dead := f.queueCounts(t)
	if dead != failedFiles+2 || waiting != 0 {
		t.Fatalf("queues: %d waiting, %d dead; the set-up wants 0 and %d", waiting, dead, failedFiles+2)
	}
	if st.DeadLetters != dead || st.Waiting != waiting || st.InFlight != inFlight {
		t.Errorf("status counts %d waiting, %d in flight, %d dead; the queues %d, %d, %d", st.Waiting, st.InFlight, st.DeadLetters, waiting, inFlight, dead)
	}
	if st.State != "ready" || st.Commit != "c0ffee1234567" || st.InputBucket != f.name+"-in" || st.OutputBucket != f.name+"-out" ||
		st.Done != 0 || st.Failed != 3*failedFiles || !strings.Contains(st.LastRunError, "exit status 1") || st.LastRunErrorAt == nil {
		t.Errorf("status = %+v\nwant ready at c0ffee1, its buckets, 0 done, %d failed runs and the last run's error", st, 3*failedFiles)
	}
	if len(st.Stages) != 1 || st.Stages[0].DeadLetters != dead || st.Stages[0].Algorithm != "sort-lines" {
		t.Errorf("stages = %+v", st.Stages)
	}
	code, table, errOut := f.agentCommand(t, "status", f.name)
	if code != exitOK || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(f.name)+` +ready +c0ffee1 +\S+-in +\S+-out +0 +9 +0 +5 +- +run: `).MatchString(table) {
		t.Errorf("agent status %s: exit %d\n%s\n%s", f.name, code, table, errOut)
	}
	// A principal with only the documented read-only policy sees the same.
	reader := "status-reader-" + f.name
	ic := iam.NewFromConfig(testenv.Kumo(t))
	if _, err := ic.CreateRole(t.Context(), &iam.CreateRoleInput{RoleName: aws.String(reader),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.PutRolePolicy(t.Context(), &iam.PutRolePolicyInput{RoleName: aws.String(reader), PolicyName: aws.String("status"),
		PolicyDocument: aws.String(string(deploy.StatusReaderPolicy()))}); err != nil {
		t.Fatal(err)
	}
	asRole(t, reader)
	var rout, rerr bytes.Buffer
	if code := dispatch(t.Context(), []string{"status", "--json", "--state-bucket", f.state}, envOf(nil), streams{&rout, &rerr}); code != exitOK ||
		!strings.Contains(rout.String(), `"dead_letters": 5`) {
		t.Errorf("agent status as a role with %s: exit %d\n%s\n%s", "deploy/status-readonly-policy.json", code, rout.String(), rerr.String())
	}
	if code, _, errOut := f.agentCommand(t, "status", f.name, "nosuch"); code != exitFailure || !strings.Contains(errOut, "workflow nosuch: not in the inventory") {
		t.Errorf("status of an unknown workflow: exit %d, %q; want 1 and the name", code, errOut)
	}

	// The algorithm is fixed; redrive.
	code, out, errOut := f.agentCommand(t, "redrive", f.name)
	want := fmt.Sprintf("%s stage 0: %d moved, 0 resumed, 1 tasks started, 1 skipped\n", f.name, failedFiles+1)
	if code != exitOK || out != want {
		t.Fatalf("agent redrive: exit %d, %q; want %q\n%s", code, out, want, errOut)
	}
	if st := f.status(t); st.Waiting != failedFiles+1 || st.DeadLetters != 1 {
		t.Errorf("after the redrive, status says %d waiting and %d dead letters; want %d and 1", st.Waiting, st.DeadLetters, failedFiles+1)
	}
	f.runRunner(t, "sort -o $output $input")
	f.checkProcessedOnce(t)
	if st := f.status(t); st.Done != failedFiles+1 || st.Waiting != 0 {
		t.Errorf("after the runs, status says %d done, %d waiting; want %d and 0", st.Done, st.Waiting, failedFiles+1)
	}
	// Nothing left to move: a second redrive moves nothing and starts no task.
	code, out, _ = f.agentCommand(t, "redrive", "--stage", "0", f.name)
	if want := fmt.Sprintf("%s stage 0: 0 moved, 0 resumed, 0 tasks started, 0 skipped\n", f.name); code != exitOK || out != want {
		t.Errorf("second redrive: exit %d, %q; want %q", code, out, want)
	}
}

// crashProxy forwards the agent's requests to the AWS rules and, at the
// request crash matches, holds it unanswered and closes hit: the test then
// kills the agent, which never learns whether the request took effect. It
// remembers the receipt handles of the dead letters the agent received.
type crashProxy struct {
	crash    func(target, body string) bool
	hit      chan struct{}
	mu       gosync.Mutex
	receipts []string
	once     gosync.Once
}

var receiptRE = regexp.MustCompile(`"ReceiptHandle":"([^"]+)"`)

func (c *crashProxy) handler(target *url.URL) http.Handler {
	rp := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		op := r.Header.Get("X-Amz-Target")
		if c.crash(op+" "+r.Method+" "+r.URL.Path, string(body)) {
			c.once.Do(func() { close(c.hit) })
			<-r.Context().Done() // held until the agent dies
			return
		}
		if op != "AmazonSQS.ReceiveMessage" {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		c.mu.Lock()
		for _, m := range receiptRE.FindAllStringSubmatch(rec.Body.String(), -1) {
			c.receipts = append(c.receipts, m[1])
		}
		c.mu.Unlock()
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// TestRedriveKilledMidway kills `agent redrive` (SIGKILL) at a dead letter's
// delete, after its copy was sent and recorded in the journal, with other
// received letters not yet moved; a second redrive moves the rest, only
// deletes the one already sent, and every file is processed exactly once.
func TestRedriveKilledMidway(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	f := newFailedStage(t)
	deletes := 0
	proxy := &crashProxy{hit: make(chan struct{}), crash: func(op, body string) bool {
		if !strings.HasPrefix(op, "AmazonSQS.DeleteMessage ") || !strings.Contains(body, f.res.DLQURL) {
			return false
		}
		deletes++
		return deletes == 2 // the second letter: one moved, one sent, the rest received
	}}
	rules, err := url.Parse(awsRules(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(proxy.handler(rules))
	t.Cleanup(srv.Close)

	cmd := exec.CommandContext(t.Context(), bin, "redrive", f.name, "--state-bucket", f.state, "--log-format", "json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") && !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_ENDPOINT_URL="+srv.URL, "AWS_REGION="+testenv.Region, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ACCESS_KEY_ID="+awsrules.RoleAccessKeyID(testenv.AgentRole), "AWS_SECRET_ACCESS_KEY=x")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-proxy.hit:
	case err := <-exited:
		t.Fatalf("redrive ended before the crash point: %v\n%s", err, logs.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited

	// The letters it had received come back once their visibility ends;
	// end it now rather than wait a minute.
	q := sqs.NewFromConfig(testenv.Kumo(t))
	proxy.mu.Lock()
	for _, r := range proxy.receipts {
		_, _ = q.ChangeMessageVisibility(t.Context(), &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(f.res.DLQURL),
			ReceiptHandle: aws.String(r), VisibilityTimeout: 0}) // a deleted letter's handle fails: fine
	}
	proxy.mu.Unlock()
	// One letter moved, one sent and not deleted.
	if waiting, _, dead := f.queueCounts(t); waiting != 2 || dead != failedFiles+1 {
		t.Fatalf("after the crash: %d waiting, %d dead letters; want 2 and %d", waiting, dead, failedFiles+1)
	}

	code, out, errOut := f.agentCommand(t, "redrive", f.name)
	want := fmt.Sprintf("%s stage 0: %d moved, 1 resumed, 1 tasks started, 1 skipped\n", f.name, failedFiles-1)
	if code != exitOK || out != want {
		t.Errorf("redrive after the crash: exit %d, %q; want %q\n%s", code, out, want, errOut)
	}
	f.runRunner(t, "sort -o $output $input")
	f.checkProcessedOnce(t)
}
