package lambda_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/stagetask"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/lambda"
	"github.com/cloudpipe/cloudpipe/provision"
)

// batchStage is a stage placed on AWS Batch as the agent deploys it,
// through the AWS rules in front of the local ECS and Batch, and a handler
// signing as its Lambda role. Its jobs run `sleep` until the test ends, so
// they stay unfinished.
type batchStage struct {
	cfg   lambda.Config
	aws   aws.Config // the Lambda role's, counted
	calls *testenv.CallCounter
	ecs   *localecs.Proxy
}

func newBatchStage(t *testing.T, maxTasks int) *batchStage {
	t.Helper()
	ctx := t.Context()
	base, proxy := testenv.LocalECS(t, localecs.Options{
		Start: func(ctx context.Context, _ localecs.TaskSpec) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "sleep", "60"), nil
		},
		BatchTransition: 20 * time.Millisecond,
		StopTimeout:     100 * time.Millisecond,
	})
	name := testenv.UniqueName(t)
	subnets, sgs := testenv.NewNetwork(t, base)
	state := "cloudpipe-state-" + name
	p := provision.New(testenv.AsRole(base, testenv.AgentRole), provision.Options{
		Cluster: "cloudpipe", Network: provision.Network{Subnets: subnets, SecurityGroups: sgs},
		StateBucket: state, LambdaCode: provision.NewLambdaCode(testenv.LambdaZip(t)), LambdaArchitecture: "x86_64",
		RunnerImage: "ghcr.io/cloudpipe/agent:test", S3UsePathStyle: true, IAMPropagationTimeout: 5 * time.Second,
	})
	if _, err := p.Bootstrap(ctx, testenv.Region, provision.BootstrapOptions{StateBucket: state, Subnets: subnets, SecurityGroups: sgs}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	spec := provision.StageSpec{
		Workflow: name, Stage: 0, Region: testenv.Region, AccountID: testenv.Account,
		InputBucket: name + "-in", OutputBucket: name + "-out",
		Algorithm: provision.AlgorithmSpec{
			Name: "algo", Image: "docker.io/library/alpine:3.20", RunCommand: "cp $input $output",
			InputFilePath: "/data/in/", OutputFilePath: "/data/out/", CPU: 4, MemoryMiB: 15000,
		},
		MaxTasks: maxTasks,
		Batch:    &provision.BatchSpec{InstanceType: "g5.xlarge", Capacity: "ec2", InstanceVCPU: 4, GPUs: 1, GPU: true},
	}
	res, err := p.EnsureStage(ctx, spec, provision.StageResources{})
	if err != nil {
		t.Fatalf("ensure stage: %v", err)
	}
	t.Cleanup(func() {
		// Jobs end with their queue; the capacity is shared by name.
		_, _ = p.DeleteStage(context.WithoutCancel(ctx), spec, res)
		_, _, _ = p.DeleteBatchCapacity(context.WithoutCancel(ctx), spec.Batch.Key(spec.Region))
	})
	fn, err := awslambda.NewFromConfig(base).GetFunctionConfiguration(ctx, &awslambda.GetFunctionConfigurationInput{
		FunctionName: aws.String(provision.ResourceName(name, 0))})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lambda.ConfigFromEnv(func(k string) string { return fn.Environment.Variables[k] })
	if err != nil {
		t.Fatalf("the function's environment: %v", err)
	}
	s := &batchStage{cfg: cfg, aws: testenv.AsRoleARN(base, aws.ToString(fn.Role)), calls: new(testenv.CallCounter), ecs: proxy}
	s.calls.Attach(&s.aws)
	return s
}

// stageJobs are the names of the stage's jobs the local Batch holds.
func (s *batchStage) stageJobs() []string {
	var out []string
	for _, j := range s.ecs.Jobs() {
		if stagetask.IsStageJob(s.cfg.JobDefinition, j.JobName) {
			out = append(out, j.JobName)
		}
	}
	return out
}

// TestStageOnBatchSubmitsJobs: the stage function of a stage on AWS
// Batch, as its Lambda role through the AWS rules, submits one job per
// uploaded file to its queue with its job definition, named for the
// record; the same event delivered again submits nothing; the cap counts
// the stage's unfinished jobs.
func TestStageOnBatchSubmitsJobs(t *testing.T) {
	s := newBatchStage(t, 3)
	h := lambda.New(s.aws, s.cfg, lambda.WithRetryer(fastRetryer))
	ev := s3Event(t, s.cfg.Workflow+"-in", "a.txt", "b.txt")
	if err := h.Handle(t.Context(), ev); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	subs := s.calls.Inputs("Batch.SubmitJob")
	if len(subs) != 2 {
		t.Fatalf("%d SubmitJob calls, want 2", len(subs))
	}
	for _, in := range subs {
		in := in.(*batch.SubmitJobInput)
		if aws.ToString(in.JobQueue) != s.cfg.JobQueue || aws.ToString(in.JobDefinition) != s.cfg.JobDefinition ||
			!strings.HasPrefix(aws.ToString(in.JobName), provision.ResourceName(s.cfg.Workflow, 0)+"-") {
			t.Errorf("SubmitJob %s to %s with %s", aws.ToString(in.JobName), aws.ToString(in.JobQueue), aws.ToString(in.JobDefinition))
		}
	}
	if n := s.calls.Ops()["ECS.RunTask"]; n != 0 {
		t.Errorf("%d RunTask calls for a stage on AWS Batch", n)
	}
	if jobs := s.stageJobs(); len(jobs) != 2 {
		t.Errorf("the local Batch holds %v, want 2 jobs of the stage", jobs)
	}

	// The same event again (S3 and Lambda deliver at least once).
	s.calls.Reset()
	if err := h.Handle(t.Context(), ev); err != nil {
		t.Fatalf("Handle again: %v", err)
	}
	if n := s.calls.Ops()["Batch.SubmitJob"]; n != 0 {
		t.Errorf("a repeated event submitted %d jobs, want 0", n)
	}

	// Three more files with max_tasks 3 and two unfinished: one more job.
	s.calls.Reset()
	if err := h.Handle(t.Context(), s3Event(t, s.cfg.Workflow+"-in", "c.txt", "d.txt", "e.txt")); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if n := s.calls.Ops()["Batch.SubmitJob"]; n != 1 {
		t.Errorf("at the cap with 2 of 3 unfinished, %d jobs submitted, want 1", n)
	}
	if jobs := s.stageJobs(); len(jobs) != 3 {
		t.Errorf("the local Batch holds %v, want 3 jobs of the stage", jobs)
	}
}
