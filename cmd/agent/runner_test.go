package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

func TestStartedAsLambda(t *testing.T) {
	tests := []struct {
		env  map[string]string
		arg0 string
		want bool
	}{
		{map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}, "/var/task/bootstrap", true},
		{map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}, "bootstrap", true},
		{map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "CLOUDPIPE_LAMBDA": "1"}, "/usr/bin/agent", true},
		{map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}, "/usr/bin/agent", false},
		{map[string]string{"CLOUDPIPE_LAMBDA": "1"}, "bootstrap", false},
		{nil, "bootstrap", false},
		{nil, "agent", false},
	}
	for _, tt := range tests {
		if got := startedAsLambda(envOf(tt.env), tt.arg0); got != tt.want {
			t.Errorf("startedAsLambda(%v, %q) = %v, want %v", tt.env, tt.arg0, got, tt.want)
		}
	}
}

func TestRunnerInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloudpipe")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second install replaces the first
		var out, errOut bytes.Buffer
		if code := dispatch(t.Context(), []string{"runner", "install", dir}, envOf(nil), streams{&out, &errOut}); code != exitOK {
			t.Fatalf("runner install: exit %d, %s", code, errOut.String())
		}
		if got := out.String(); got != "installed "+filepath.Join(dir, "agent")+"\n" {
			t.Errorf("stdout %q", got)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
	got, err := os.ReadFile(filepath.Join(dir, "agent"))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("installed file differs from the executable (%d vs %d bytes, %v)", len(got), len(want), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("install left %d entries in DIR, want only agent", len(entries))
	}
}

func TestRunnerUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"runner", "bogus"}, `unknown argument "bogus"`},
		{[]string{"runner", "install"}, "install takes one DIR"},
		{[]string{"runner", "install", "a", "b"}, "install takes one DIR"},
		// No CLOUDPIPE_ settings at all: each required one is named.
		{[]string{"runner"}, "CLOUDPIPE_QUEUE_URL is not set"},
	} {
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CLOUDPIPE_") {
				t.Setenv(k, "")
			}
		}
		var out, errOut bytes.Buffer
		code := dispatch(t.Context(), tt.args, envOf(nil), streams{&out, &errOut})
		if code != exitUsage || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("agent %q: exit %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), exitUsage, tt.want)
		}
	}
}

// TestRunnerCommand runs `agent runner` in-process with the environment the
// agent's task definition gives it, signed as the task definition's task
// role, as in ECS: the message is processed, the run recorded, and the
// runner exits 0 once the queue is idle.
func TestRunnerCommand(t *testing.T) {
	cfg := testenv.Kumo(t)
	ctx := t.Context()
	name := testenv.UniqueName(t)
	s3c := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	// The user's input bucket, with the file in it before the stage exists.
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name + "-in")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(name + "-in"), Key: aws.String("in/x y.txt"),
		Body: strings.NewReader("b\na\n")}); err != nil {
		t.Fatal(err)
	}
	st := deployStage(t, name)
	body, err := contract.Message{Bucket: name + "-in", Key: "in/x y.txt"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqs.NewFromConfig(cfg).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(st.res.QueueURL), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	// The runner acts as the task role, as it would in ECS.
	asRole(t, roleName(st.taskRoleARN))
	dir := t.TempDir()
	env := maps.Clone(st.runnerEnv)
	maps.Copy(env, map[string]string{
		"CLOUDPIPE_INPUT_PATH": dir + "/in/", "CLOUDPIPE_OUTPUT_PATH": dir + "/out/",
		"CLOUDPIPE_WAIT_TIME": "1", "CLOUDPIPE_IDLE_TIMEOUT": "1",
	})
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	if code := dispatch(ctx, []string{"runner", "--log-format", "json"}, envOf(nil), streams{&out, &errOut}); code != exitOK {
		t.Fatalf("agent runner: exit %d\n%s", code, errOut.String())
	}
	res, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(name + "-out"), Key: aws.String("in/Result-sort-lines-x y.txt")})
	if err != nil {
		t.Fatalf("no result: %v\n%s", err, errOut.String())
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(got) != "a\nb\n" {
		t.Errorf("result %q", got)
	}
	if !strings.Contains(errOut.String(), `"msg":"run succeeded"`) {
		t.Errorf("no JSON log of the run on stderr:\n%s", errOut.String())
	}
	records, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(st.state), Prefix: aws.String(contract.WorkflowRunsPrefix(name))})
	if err != nil || len(records.Contents) == 0 {
		t.Errorf("no run record under s3://%s/%s (%v):\n%s", st.state, contract.WorkflowRunsPrefix(name), err, errOut.String())
	}
}

// TestLambdaMode starts the agent binary the way the Lambda runtime does
// (AWS_LAMBDA_RUNTIME_API set; CLOUDPIPE_LAMBDA=1 since the test binary is
// not named bootstrap) against kumo's Runtime API, with the environment and
// the role the agent gave the stage function, and invokes it with an S3
// event: main must serve the stage function, which queues the upload and
// starts a task.
func TestLambdaMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testenv.Kumo(t)
	ctx := t.Context()
	name := testenv.UniqueName(t)
	st := deployStage(t, name)
	fn := provision.ResourceName(name, 0)
	// The function acts as its role, as Lambda's injected keys would.
	asRole(t, roleName(st.res.LambdaRoleARN))

	cmd := exec.CommandContext(ctx, bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The Runtime API is Lambda's own local endpoint, not an AWS API a
	// role signs: it is kumo's, directly.
	cmd.Env = append(cmd.Env,
		"AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(testenv.KumoURL(t), "http://")+"/_runtime/"+fn,
		"AWS_LAMBDA_FUNCTION_NAME="+fn, "CLOUDPIPE_LAMBDA=1")
	for _, k := range slices.Sorted(maps.Keys(st.functionEnv)) {
		cmd.Env = append(cmd.Env, k+"="+st.functionEnv[k])
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("handler output:\n%s", logs.String())
		}
	})

	event := fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-01-02T03:04:05Z",
		"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"%s-in"},"object":{"key":"in/a+b.txt","size":3,"eTag":"e1"}}}]}`, name)
	lc := awslambda.NewFromConfig(cfg)
	before := runningTasks(t)
	// Until the handler has polled once, kumo answers that the function has
	// no handler: retry for a while.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := lc.Invoke(ctx, &awslambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(event)})
		if err == nil {
			if out.FunctionError != nil {
				t.Fatalf("handler failed: %s: %s", aws.ToString(out.FunctionError), out.Payload)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	q := sqs.NewFromConfig(cfg)
	msgs, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.res.QueueURL), WaitTimeSeconds: 2})
	if err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("queue: %d messages, %v; want 1", len(msgs.Messages), err)
	}
	m, err := contract.DecodeMessage(aws.ToString(msgs.Messages[0].Body))
	if err != nil || m.Key != "in/a b.txt" {
		t.Errorf("message %+v, %v; want the decoded key in/a b.txt", m, err)
	}
	// kumo counts the tasks RunTask started on the cluster, which every
	// stage shares (and kumo has no ListTasks to count this stage's).
	if n := runningTasks(t); n != before+1 {
		t.Errorf("%d tasks running on the cluster, %d before the event: want 1 task started", n, before)
	}
}

// runningTasks is the number of tasks kumo counts as started on the agent's
// cluster.
func runningTasks(t *testing.T) int32 {
	t.Helper()
	cl, err := ecs.NewFromConfig(testenv.Kumo(t)).DescribeClusters(t.Context(), &ecs.DescribeClustersInput{Clusters: []string{provision.DefaultCluster}})
	if err != nil || len(cl.Clusters) != 1 {
		t.Fatalf("cluster %s: %+v, %v", provision.DefaultCluster, cl, err)
	}
	return cl.Clusters[0].RunningTasksCount
}
