package runner_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/runner"
)

// stage is one stage as the agent deploys it in kumo, local directories for
// the algorithm, and a runner Config for them, read from the stage's task
// definition.
type stage struct {
	t        testing.TB
	aws      aws.Config // for the runner: the stage's task role's
	taskRole string     // ARN
	s3       *s3.Client // the operator's: the test's own view
	sqs      *sqs.Client
	name     string
	in, out  string // input and output buckets
	state    string // state bucket
	queueURL string
	dlqURL   string
	res      provision.StageResources // as the agent ensured it
	root     string                   // local directory holding in/, out/, tmp/ and bin/
	cfg      runner.Config
	logs     *syncBuffer
}

type stageOptions struct {
	maxReceiveCount int           // 0: the stage's own redrive policy
	visibility      time.Duration // the queue's; 0: the stage's own
	// shortPoll sets the queue's ReceiveMessageWaitTimeSeconds to 0 (the
	// stage's is 20), so a receive that names no wait time returns at
	// once: the SDK cannot send WaitTimeSeconds=0, it leaves it out.
	shortPoll bool
	kumoURL   string // the emulator to use; "": the test binary's, behind the AWS rules
	// name names the stage's workflow and buckets; "": one of the test's.
	name string
	// agentEndpoint is where the agent's calls go instead of the AWS rules
	// (a local ECS in front of them, for a test that starts tasks).
	agentEndpoint string
	// spec changes the stage's spec before the agent ensures it.
	spec func(*provision.StageSpec)
	// denials: the test has the task role denied on purpose and checks
	// what itself, so the check that it was denied nothing is off.
	denials bool
}

// newStage deploys one stage (index 1 of a workflow named for the test)
// with the agent's provisioner, acting as the agent's role: buckets, queues,
// roles and task definition exactly as a workflow gets them. The runner is
// configured from the environment of the task definition's algorithm
// container (the paths made local) and signs as the task role, so every
// call it makes is authorized by the policy the agent gave that role; at
// the end of the test the role must have been denied nothing.
//
// The queue attributes a test asks for in o are set afterwards, as the
// operator: they change how SQS redelivers, not who may do what.
func newStage(tb testing.TB, o stageOptions) *stage {
	tb.Helper()
	ctx := tb.Context()
	base := testenv.Kumo(tb)
	if o.kumoURL != "" {
		// An emulator of its own, without the AWS rules: roles are made
		// as everywhere, but nothing checks them.
		base = testenv.KumoConfig(o.kumoURL)
	}
	name := o.name
	if name == "" {
		name = testenv.UniqueName(tb)
	}
	s := &stage{
		t: tb, name: name,
		s3:  s3.NewFromConfig(base, testenv.S3PathStyle),
		sqs: sqs.NewFromConfig(base),
		in:  name + "-in", out: name + "-out",
		// The agent's policy scopes state buckets to "cloudpipe-state-*".
		state: "cloudpipe-state-" + name,
		root:  tb.TempDir(),
		logs:  new(syncBuffer),
	}
	// Bootstrap's part that the runner sees: the state bucket.
	if _, err := s.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.state)}); err != nil {
		tb.Fatal(err)
	}
	agent := testenv.AsRole(base, testenv.AgentRole)
	if o.kumoURL != "" {
		// The provisioner makes calls kumo lacks and the AWS rules serve
		// (Lambda's event invoke configuration), so the stage is set up
		// through rules of its own; the runner still talks to the emulator
		// direct.
		agent = testenv.AsRole(testenv.KumoConfig(testenv.RulesInFrontOf(tb, o.kumoURL).URL()), testenv.AgentRole)
	}
	if o.agentEndpoint != "" {
		agent.BaseEndpoint = aws.String(o.agentEndpoint)
	}
	var calls testenv.CallCounter
	calls.Attach(&agent)
	subnets, sgs := testenv.NewNetwork(tb, base)
	p := provision.New(agent, provision.Options{
		Cluster:               "cloudpipe",
		Network:               provision.Network{Subnets: subnets, SecurityGroups: sgs},
		StateBucket:           s.state,
		LambdaCode:            provision.NewLambdaCode(testenv.LambdaZip(tb)),
		LambdaArchitecture:    "x86_64",
		RunnerImage:           "ghcr.io/cloudpipe/agent:test",
		S3UsePathStyle:        true,
		IAMPropagationTimeout: 5 * time.Second,
	})
	spec := provision.StageSpec{
		Workflow: name, Stage: 1, Region: testenv.Region, AccountID: testenv.Account,
		InputBucket: s.in, OutputBucket: s.out,
		Algorithm: provision.AlgorithmSpec{
			Name: "copy", Image: "docker.io/library/alpine:3.20", RunCommand: "cp $input $output",
			InputFilePath: "/data/in/", OutputFilePath: "/data/out/", CPU: 0.25, MemoryMiB: 512,
		},
		// No S3 notification: the tests hand the runner its messages, and
		// kumo would try to invoke a function it cannot run on each upload.
		Suspend: true,
	}
	if o.spec != nil {
		o.spec(&spec)
	}
	res, err := p.EnsureStage(ctx, spec, provision.StageResources{})
	if err != nil {
		tb.Fatalf("ensure stage: %v", err)
	}
	s.res = res
	s.queueURL, s.dlqURL = res.QueueURL, res.DLQURL
	s.setQueueAttributes(o, res.DLQARN)

	// kumo cannot describe task definitions: read the one the agent
	// registered from its request.
	env := map[string]string{}
	for _, in := range calls.Inputs("ECS.RegisterTaskDefinition") {
		td := in.(*ecs.RegisterTaskDefinitionInput)
		s.taskRole = aws.ToString(td.TaskRoleArn)
		for _, c := range td.ContainerDefinitions {
			if aws.ToString(c.Name) != "copy" {
				continue
			}
			for _, kv := range c.Environment {
				env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
			}
		}
	}
	if s.taskRole == "" || s.taskRole != res.TaskRoleARN {
		tb.Fatalf("task definition's task role %q, the stage's %q", s.taskRole, res.TaskRoleARN)
	}
	cfg, err := runner.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatalf("the algorithm container's environment: %v", err)
	}
	for _, d := range []string{"in", "out", "tmp", "bin"} {
		if err := os.Mkdir(filepath.Join(s.root, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	// The algorithm's paths are container paths; here, local directories.
	// The tuning settings are the demo's kind: quick polls and exits.
	cfg.InputPath = filepath.Join(s.root, "in") + "/"
	cfg.OutputPath = filepath.Join(s.root, "out") + "/"
	cfg.TempDir = filepath.Join(s.root, "tmp")
	cfg.WaitTime, cfg.IdleTimeout = time.Second, time.Second
	cfg.RetryDelay = time.Millisecond // below a second: retry at once
	cfg.S3UsePathStyle = true
	s.cfg = cfg
	s.aws = testenv.AsRoleARN(base, s.taskRole)
	if o.kumoURL == "" && !o.denials {
		tb.Cleanup(func() {
			if denied := s.denied(); len(denied) > 0 {
				tb.Errorf("the stage's task role was denied %q", denied)
			}
		})
	}
	return s
}

// setQueueAttributes gives the work queue the redrive and visibility o
// asks for.
func (s *stage) setQueueAttributes(o stageOptions, dlqARN string) {
	s.t.Helper()
	attrs := map[string]string{}
	if o.visibility > 0 {
		attrs["VisibilityTimeout"] = strconv.Itoa(int(o.visibility / time.Second))
	}
	if o.maxReceiveCount > 0 {
		policy, _ := json.Marshal(map[string]string{
			"deadLetterTargetArn": dlqARN, "maxReceiveCount": strconv.Itoa(o.maxReceiveCount),
		})
		attrs["RedrivePolicy"] = string(policy)
	}
	if o.shortPoll {
		attrs["ReceiveMessageWaitTimeSeconds"] = "0"
	}
	if len(attrs) == 0 {
		return
	}
	if _, err := s.sqs.SetQueueAttributes(s.t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: &s.queueURL, Attributes: attrs}); err != nil {
		s.t.Fatal(err)
	}
}

// denied lists what IAM refused the stage's task role so far.
func (s *stage) denied() []string {
	role := s.taskRole[strings.LastIndexByte(s.taskRole, '/')+1:]
	return testenv.AWSRules(s.t).Report().Principals[role].Denied
}

// logger returns a logger for a runner that keeps its records for the test.
func (s *stage) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run runs the runner until the queue is idle and fails the test if it
// returns an error; on failure of the test its logs are shown.
func (s *stage) run() {
	s.t.Helper()
	s.t.Cleanup(func() {
		if s.t.Failed() {
			s.t.Logf("runner logs:\n%s", s.logs.String())
		}
	})
	if err := runner.Run(s.t.Context(), s.aws, s.cfg, s.logger()); err != nil {
		s.t.Fatalf("Run: %v", err)
	}
}

// put uploads an input object.
func (s *stage) put(key, content string) {
	s.t.Helper()
	_, err := s.s3.PutObject(s.t.Context(), &s3.PutObjectInput{Bucket: &s.in, Key: &key, Body: strings.NewReader(content)})
	if err != nil {
		s.t.Fatal(err)
	}
}

// send queues the message the stage function would send for key.
func (s *stage) send(key string) {
	s.t.Helper()
	body, err := contract.Message{Bucket: s.in, Key: key, Size: 1, ETag: "e", EventTime: time.Now().UTC()}.Encode()
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.sqs.SendMessage(s.t.Context(), &sqs.SendMessageInput{QueueUrl: &s.queueURL, MessageBody: aws.String(body)}); err != nil {
		s.t.Fatal(err)
	}
}

// get reads an object; ok is false when it does not exist.
func (s *stage) get(bucket, key string) (content string, ok bool) {
	s.t.Helper()
	out, err := s.s3.GetObject(s.t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return "", false
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b), true
}

// objects lists the keys of a bucket.
func (s *stage) objects(bucket string) []string {
	s.t.Helper()
	return s.objectsUnder(bucket, "")
}

// objectsUnder lists the keys of a bucket that start with prefix.
func (s *stage) objectsUnder(bucket, prefix string) []string {
	s.t.Helper()
	out, err := s.s3.ListObjectsV2(s.t.Context(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		s.t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	slices.Sort(keys)
	return keys
}

// records reads the run records of the stage, oldest first, checking that
// each key says what its record says. The state bucket also holds the stage
// functions' code (lambda/), which is not looked at.
func (s *stage) records() []contract.RunRecord {
	s.t.Helper()
	var recs []contract.RunRecord
	for _, key := range s.objectsUnder(s.state, contract.RunsPrefix) {
		info, ok := contract.ParseRunRecordKey(key)
		if !ok {
			s.t.Errorf("state bucket key %q is not a record key", key)
			continue
		}
		body, _ := s.get(s.state, key)
		r, err := contract.DecodeRunRecord([]byte(body))
		if err != nil {
			s.t.Fatalf("record %s: %v", key, err)
		}
		if info.Outcome != r.Outcome || info.Workflow != r.Workflow || info.Stage != r.Stage || !info.Finished.Equal(r.Finished) {
			s.t.Errorf("record key %q says %+v, the record %+v", key, info, r)
		}
		recs = append(recs, r)
	}
	return recs
}

// inFlight returns the queue's visible and in-flight message counts.
func (s *stage) inFlight(url string) (visible, invisible int) {
	s.t.Helper()
	out, err := s.sqs.GetQueueAttributes(s.t.Context(), &sqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	visible, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessages"])
	invisible, _ = strconv.Atoi(out.Attributes["ApproximateNumberOfMessagesNotVisible"])
	return visible, invisible
}

// script writes an executable shell script into bin/ and returns its path.
func (s *stage) script(name, body string) string {
	s.t.Helper()
	p := filepath.Join(s.root, "bin", name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nset -e\n"+body+"\n"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// leftovers lists the files under root other than the test's scripts:
// after a run, in/, out/ and tmp/ must be empty again.
func (s *stage) leftovers() []string {
	s.t.Helper()
	var out []string
	err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		switch {
		case rel == "." || rel == "in" || rel == "out" || rel == "tmp" || rel == "bin":
		case strings.HasPrefix(rel, "bin/"):
		default:
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for the runner's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
