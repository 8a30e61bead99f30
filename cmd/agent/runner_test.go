package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
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

// TestRunnerCommand runs `agent runner` in-process with the environment a
// task definition gives it: the message is processed and the runner exits
// 0 once the queue is idle.
func TestRunnerCommand(t *testing.T) {
	kumoEnv(t)
	cfg := testenv.Kumo(t)
	ctx := t.Context()
	name := testenv.UniqueName(t)
	s3c := s3.NewFromConfig(cfg, testenv.S3PathStyle)
	for _, b := range []string{name + "-in", name + "-out", name + "-state"} {
		if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(name + "-in"), Key: aws.String("in/x y.txt"),
		Body: strings.NewReader("b\na\n")}); err != nil {
		t.Fatal(err)
	}
	q, err := sqs.NewFromConfig(cfg).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	body, err := contract.Message{Bucket: name + "-in", Key: "in/x y.txt"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqs.NewFromConfig(cfg).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for k, v := range map[string]string{
		"CLOUDPIPE_QUEUE_URL": aws.ToString(q.QueueUrl), "CLOUDPIPE_INPUT_BUCKET": name + "-in",
		"CLOUDPIPE_OUTPUT_BUCKET": name + "-out", "CLOUDPIPE_RUN_COMMAND": "sort -o $output $input",
		"CLOUDPIPE_INPUT_PATH": dir + "/in/", "CLOUDPIPE_OUTPUT_PATH": dir + "/out/", "CLOUDPIPE_ALGORITHM": "sort-lines",
		"CLOUDPIPE_STATE_BUCKET": name + "-state", "CLOUDPIPE_WORKFLOW": name, "CLOUDPIPE_STAGE": "0",
		"CLOUDPIPE_WAIT_TIME": "1", "CLOUDPIPE_IDLE_TIMEOUT": "1",
	} {
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
}

// TestLambdaMode starts the agent binary the way the Lambda runtime does
// (AWS_LAMBDA_RUNTIME_API set; CLOUDPIPE_LAMBDA=1 since the test binary is
// not named bootstrap) against kumo's Runtime API, and invokes it with an S3
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
	kumoEnv(t)
	cfg := testenv.Kumo(t)
	ctx := t.Context()
	name := testenv.UniqueName(t)

	q := sqs.NewFromConfig(cfg)
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	e := ecs.NewFromConfig(cfg)
	if _, err := e.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	td, err := e.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family: aws.String("cp-" + name + "-0"), NetworkMode: ecstypes.NetworkModeAwsvpc,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate}, Cpu: aws.String("256"), Memory: aws.String("512"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("algo"), Image: aws.String("alpine"), Essential: aws.Bool(true)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	subnets, sgs := testenv.NewNetwork(t, cfg)
	fn := "cp-" + name + "-0"
	lc := awslambda.NewFromConfig(cfg)
	if _, err := lc.CreateFunction(ctx, &awslambda.CreateFunctionInput{
		FunctionName: aws.String(fn), Runtime: lambdatypes.RuntimeProvidedal2023, Handler: aws.String("bootstrap"),
		Role: aws.String("arn:aws:iam::123456789012:role/" + name), Code: &lambdatypes.FunctionCode{ZipFile: emptyZip()},
		Timeout: aws.Int32(60), // as the provisioner sets it
	}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLOUDPIPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(testenv.KumoURL(t), "http://")+"/_runtime/"+fn,
		"AWS_LAMBDA_FUNCTION_NAME="+fn, "CLOUDPIPE_LAMBDA=1",
		"CLOUDPIPE_QUEUE_URL="+aws.ToString(queue.QueueUrl), "CLOUDPIPE_DLQ_URL="+aws.ToString(dlq.QueueUrl),
		"CLOUDPIPE_CLUSTER="+name, "CLOUDPIPE_TASK_DEFINITION="+aws.ToString(td.TaskDefinition.TaskDefinitionArn),
		"CLOUDPIPE_SUBNETS="+strings.Join(subnets, ","), "CLOUDPIPE_SECURITY_GROUPS="+strings.Join(sgs, ","),
		"CLOUDPIPE_MAX_TASKS=5", "CLOUDPIPE_WORKFLOW="+name, "CLOUDPIPE_STAGE=0",
	)
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

	event := `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-01-02T03:04:05Z",
		"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"in"},"object":{"key":"in/a+b.txt","size":3,"eTag":"e1"}}}]}`
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
	msgs, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queue.QueueUrl, WaitTimeSeconds: 2})
	if err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("queue: %d messages, %v; want 1", len(msgs.Messages), err)
	}
	m, err := contract.DecodeMessage(aws.ToString(msgs.Messages[0].Body))
	if err != nil || m.Key != "in/a b.txt" {
		t.Errorf("message %+v, %v; want the decoded key in/a b.txt", m, err)
	}
	// kumo counts the tasks RunTask started on the cluster.
	cl, err := e.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{name}})
	if err != nil || len(cl.Clusters) != 1 || cl.Clusters[0].RunningTasksCount != 1 {
		t.Errorf("cluster %+v, %v: want 1 task started", cl.Clusters, err)
	}
}

// emptyZip is a deployment package holding an empty bootstrap: kumo stores
// the code but never runs it (the test starts the handler itself).
func emptyZip() []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	_, _ = zw.Create("bootstrap")
	_ = zw.Close()
	return buf.Bytes()
}
