package provision_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// batchEnv is env with AWS Batch: the provisioner, signed as the agent,
// talks to the AWS rules in front of the local ECS and Batch
// (internal/localecs) in front of kumo, since kumo keeps no job
// definition's ecsProperties, no tags and no queue states. Bootstrap has
// run, so the instance profile compute environments need exists.
type batchEnv struct {
	*env
	batch *batch.Client // the operator's, to look
}

func newBatchEnv(t *testing.T) *batchEnv {
	t.Helper()
	cfg, _ := testenv.LocalECS(t, localecs.Options{
		Start: func(ctx context.Context, _ localecs.TaskSpec) (*exec.Cmd, error) {
			return nil, errors.New("these tests run no job")
		},
		BatchTransition: 20 * time.Millisecond,
	})
	e := &env{t: t, name: testenv.UniqueName(t), cfg: cfg, calls: &testenv.CallCounter{}}
	e.subnets, e.sgs = testenv.NewNetwork(t, cfg)
	pcfg := testenv.AsRole(cfg, testenv.AgentRole)
	e.calls.Attach(&pcfg)
	e.opts = e.options()
	e.p = provision.New(pcfg, e.opts)
	e.s3 = s3.NewFromConfig(cfg, testenv.S3PathStyle)
	e.iam = iam.NewFromConfig(cfg)
	e.lambda = lambda.NewFromConfig(cfg)
	if _, err := e.p.Bootstrap(t.Context(), testenv.Region, provision.BootstrapOptions{
		StateBucket: e.opts.StateBucket, Subnets: e.subnets, SecurityGroups: e.sgs}); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	e.calls.Reset()
	return &batchEnv{env: e, batch: batch.NewFromConfig(cfg)}
}

// gpuSpec is e's stage on a g5.xlarge (4 vCPU, 16 GiB, one NVIDIA A10G)
// through AWS Batch, on capacity ("ec2" or "spot").
func (e *batchEnv) gpuSpec(workflow, capacity string) provision.StageSpec {
	spec := e.spec()
	spec.Workflow = workflow
	spec.InputBucket, spec.OutputBucket = workflow+"-in", workflow+"-out"
	spec.Algorithm.CPU, spec.Algorithm.MemoryMiB = 4, 15000
	spec.Batch = &provision.BatchSpec{InstanceType: "g5.xlarge", Capacity: capacity, InstanceVCPU: 4, GPUs: 1, GPU: true}
	return spec
}

// TestGPUStageOnBatch: EnsureStage, as the agent through the AWS rules,
// builds a GPU stage on AWS Batch with the calls counted: a compute
// environment of the type on the GPU AMI scaling from 0, a job queue on
// it, a job definition with the Fargate task's two containers and the
// GPU, and a function that submits jobs. No task definition. A second
// call writes nothing; DeleteStage and DeleteBatchCapacity remove it all.
func TestGPUStageOnBatch(t *testing.T) {
	e := newBatchEnv(t)
	ctx := t.Context()
	spec := e.gpuSpec(e.name, "ec2")
	capacity := spec.Batch.Key(spec.Region)

	res := e.ensure(spec, provision.StageResources{})
	writes := e.calls.WriteOps()
	t.Logf("create: %d calls, %d writes: %v", e.calls.Total(), e.calls.Writes(), writes)
	for op, want := range map[string]int{
		"Batch.CreateComputeEnvironment": 1, "Batch.CreateJobQueue": 1, "Batch.RegisterJobDefinition": 1,
		"ECS.RegisterTaskDefinition": 0,
	} {
		if writes[op] != want {
			t.Errorf("%s called %d times, want %d", op, writes[op], want)
		}
	}
	ce := e.calls.LastInput("Batch.CreateComputeEnvironment").(*batch.CreateComputeEnvironmentInput)
	cr := ce.ComputeResources
	if aws.ToString(ce.ComputeEnvironmentName) != "cp-batch-g5-xlarge-ec2" || cr.Type != batchtypes.CRTypeEc2 ||
		aws.ToInt32(cr.MinvCpus) != 0 || aws.ToInt32(cr.MaxvCpus) != 40 ||
		!slices.Equal(cr.InstanceTypes, []string{"g5.xlarge"}) || !slices.Equal(cr.Subnets, e.subnets) ||
		!slices.Equal(cr.SecurityGroupIds, e.sgs) || aws.ToString(cr.InstanceRole) != provision.BatchInstanceRole ||
		len(cr.Ec2Configuration) != 1 || aws.ToString(cr.Ec2Configuration[0].ImageType) != "ECS_AL2_NVIDIA" {
		t.Errorf("compute environment request %+v, resources %+v", ce, cr)
	}
	jd := e.calls.LastInput("Batch.RegisterJobDefinition").(*batch.RegisterJobDefinitionInput)
	task := jd.EcsProperties.TaskProperties[0]
	if aws.ToString(jd.JobDefinitionName) != provision.ResourceName(spec.Workflow, 0) ||
		!slices.Equal(jd.PlatformCapabilities, []batchtypes.PlatformCapability{batchtypes.PlatformCapabilityEc2}) ||
		aws.ToString(task.TaskRoleArn) != res.TaskRoleARN || aws.ToString(task.ExecutionRoleArn) != res.ExecutionRoleARN ||
		len(task.Containers) != 2 {
		t.Fatalf("job definition %+v, task %+v", jd, task)
	}
	init, run := task.Containers[0], task.Containers[1]
	if aws.ToString(init.Image) != e.opts.RunnerImage || aws.ToBool(init.Essential) ||
		aws.ToString(run.Image) != spec.Algorithm.Image || !slices.Equal(run.Command, []string{"/cloudpipe/agent", "runner"}) {
		t.Errorf("containers: init %+v, algorithm %+v", init, run)
	}
	reqs := map[batchtypes.ResourceType]string{}
	for _, r := range run.ResourceRequirements {
		reqs[r.Type] = aws.ToString(r.Value)
	}
	if reqs[batchtypes.ResourceTypeVcpu] != "4" || reqs[batchtypes.ResourceTypeMemory] != "15000" || reqs[batchtypes.ResourceTypeGpu] != "1" {
		t.Errorf("resource requirements %v, want 4 vCPU, 15000 MiB, 1 GPU", reqs)
	}
	var secrets []string
	for _, s := range run.Secrets {
		secrets = append(secrets, aws.ToString(s.Name)+"="+aws.ToString(s.ValueFrom))
	}
	if !slices.Contains(secrets, "DB_PASSWORD="+testSecretARN+":password::") {
		t.Errorf("secrets %v: the workflow's secret is not passed by valueFrom", secrets)
	}
	if run.LogConfiguration == nil || run.LogConfiguration.LogDriver != batchtypes.LogDriverAwslogs {
		t.Errorf("algorithm container logs %+v, want awslogs", run.LogConfiguration)
	}
	if res.JobQueueARN == "" || res.JobDefinitionARN == "" || res.TaskDefinitionARN != "" {
		t.Errorf("resources: queue %q, job definition %q, task definition %q", res.JobQueueARN, res.JobDefinitionARN, res.TaskDefinitionARN)
	}
	fn, err := e.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(provision.ResourceName(spec.Workflow, 0))})
	if err != nil {
		t.Fatal(err)
	}
	if env := fn.Environment.Variables; env[contract.EnvJobQueue] != res.JobQueueARN || env[contract.EnvJobDefinition] != res.JobDefinitionARN {
		t.Errorf("function environment %v does not name the queue and job definition", env)
	}

	// The stage function's role may submit to its queue with its
	// definition, and with nothing else.
	asLambda := batch.NewFromConfig(testenv.AsRoleARN(e.cfg, res.LambdaRoleARN))
	if _, err := asLambda.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String("ok"), JobQueue: &res.JobQueueARN, JobDefinition: &res.JobDefinitionARN}); err != nil {
		t.Errorf("the stage function's role cannot submit its job: %v", err)
	}
	other := e.gpuSpec(e.name+"-other", "ec2")
	otherRes := e.ensure(other, provision.StageResources{})
	_, err = asLambda.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String("no"), JobQueue: &res.JobQueueARN, JobDefinition: &otherRes.JobDefinitionARN})
	if code := apiCode(err); code != "AccessDeniedException" {
		t.Errorf("SubmitJob with another stage's job definition: %v, want AccessDeniedException", err)
	}
	if otherRes.JobQueueARN != res.JobQueueARN {
		t.Errorf("two stages on g5.xlarge/ec2 got queues %s and %s, want one shared", res.JobQueueARN, otherRes.JobQueueARN)
	}

	e.calls.Reset()
	again := e.ensure(spec, res)
	if n := e.calls.Writes(); n != 0 {
		t.Errorf("second EnsureStage made %d writes (%v), want 0", n, e.calls.WriteOps())
	}
	if again.JobDefinitionARN != res.JobDefinitionARN {
		t.Errorf("second EnsureStage moved to %s", again.JobDefinitionARN)
	}

	e.calls.Reset()
	for _, s := range []struct {
		spec provision.StageSpec
		res  provision.StageResources
	}{{spec, res}, {other, otherRes}} {
		del, err := e.p.DeleteStage(ctx, s.spec, s.res)
		if err != nil {
			t.Fatalf("DeleteStage: %v", err)
		}
		if !slices.Contains(del.Deleted, "batch job definition "+s.res.JobDefinitionARN) {
			t.Errorf("DeleteStage deleted %v, not the job definition", del.Deleted)
		}
	}
	deleted, done, err := e.p.DeleteBatchCapacity(ctx, capacity)
	if err != nil || !done {
		t.Fatalf("DeleteBatchCapacity: done %v, %v", done, err)
	}
	t.Logf("delete: %d calls, %d writes: %v", e.calls.Total(), e.calls.Writes(), e.calls.WriteOps())
	if want := []string{"batch job queue cp-batch-g5-xlarge-ec2", "batch compute environment cp-batch-g5-xlarge-ec2"}; !slices.Equal(deleted, want) {
		t.Errorf("DeleteBatchCapacity deleted %v, want %v", deleted, want)
	}
	out, err := e.batch.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: []string{capacity.Name()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ce := range out.ComputeEnvironments {
		if ce.Status != batchtypes.CEStatusDeleted {
			t.Errorf("compute environment left: %s %s", aws.ToString(ce.ComputeEnvironmentName), ce.Status)
		}
	}
	if _, done, err := e.p.DeleteBatchCapacity(ctx, capacity); err != nil || !done {
		t.Errorf("second DeleteBatchCapacity: done %v, %v", done, err)
	}
}

// TestSpotCapacity: a Spot stage's compute environment is SPOT with the
// price-capacity-optimized allocation, on the standard ECS AMI for a type
// without GPU.
func TestSpotCapacity(t *testing.T) {
	e := newBatchEnv(t)
	spec := e.gpuSpec(e.name, "spot")
	spec.Batch = &provision.BatchSpec{InstanceType: "c7i.8xlarge", Capacity: "spot", InstanceVCPU: 32}
	res := e.ensure(spec, provision.StageResources{})
	ce := e.calls.LastInput("Batch.CreateComputeEnvironment").(*batch.CreateComputeEnvironmentInput)
	cr := ce.ComputeResources
	if aws.ToString(ce.ComputeEnvironmentName) != "cp-batch-c7i-8xlarge-spot" || cr.Type != batchtypes.CRTypeSpot ||
		cr.AllocationStrategy != batchtypes.CRAllocationStrategySpotPriceCapacityOptimized ||
		aws.ToInt32(cr.MaxvCpus) != 320 || aws.ToString(cr.Ec2Configuration[0].ImageType) != "ECS_AL2023" {
		t.Errorf("spot compute environment %+v, resources %+v", ce, cr)
	}
	if _, err := e.p.DeleteStage(t.Context(), spec, res); err != nil {
		t.Fatal(err)
	}
	if _, done, err := e.p.DeleteBatchCapacity(t.Context(), spec.Batch.Key(spec.Region)); err != nil || !done {
		t.Fatalf("DeleteBatchCapacity: done %v, %v", done, err)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	if err != nil {
		return strings.TrimSpace(err.Error())
	}
	return ""
}

// TestStrandedFilesOnBatch: the stranded-files check reads a stage on AWS
// Batch from its jobs. Files waiting with no job are stranded; a job the
// agent starts whose image cannot be pulled fails without running, and its
// status reason is the stage's stopped reason, as a task's would be.
func TestStrandedFilesOnBatch(t *testing.T) {
	e := newBatchEnv(t)
	ctx := t.Context()
	spec := e.gpuSpec(e.name, "ec2")
	spec.Secrets, spec.TaskCredentialsSecret = nil, ""
	spec.Algorithm.Image = "registry.invalid/gpu:1"
	res := e.ensure(spec, provision.StageResources{})
	t.Cleanup(func() {
		_, _ = e.p.DeleteStage(context.WithoutCancel(ctx), spec, res)
		_, _, _ = e.p.DeleteBatchCapacity(context.WithoutCancel(ctx), spec.Batch.Key(spec.Region))
	})
	sqsc := sqs.NewFromConfig(e.cfg)
	for _, key := range []string{"a.txt", "b.txt"} {
		if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &res.QueueURL, MessageBody: aws.String(`{"key":"` + key + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := e.p.StageActivity(ctx, spec, res)
	if err != nil || !a.Stranded() || a.Waiting != 2 || a.StoppedReason != "" {
		t.Fatalf("activity with two files and no job = %+v, %v; want 2 stranded, no reason", a, err)
	}
	arn, err := e.p.StartStageTask(ctx, spec, res)
	if err != nil || !strings.Contains(arn, ":job/") {
		t.Fatalf("StartStageTask = %q, %v; want a job", arn, err)
	}
	in := e.calls.LastInput("Batch.SubmitJob").(*batch.SubmitJobInput)
	if aws.ToString(in.JobQueue) != res.JobQueueARN || aws.ToString(in.JobDefinition) != res.JobDefinitionARN {
		t.Errorf("the agent submitted to %s with %s", aws.ToString(in.JobQueue), aws.ToString(in.JobDefinition))
	}
	// The job goes RUNNABLE, STARTING, then FAILED when the pull fails:
	// wait for the reason (bounded by the test's deadline, not timed).
	for a.StoppedReason == "" {
		if err := ctx.Err(); err != nil {
			t.Fatalf("no stopped reason before the test's deadline: %+v", a)
		}
		time.Sleep(50 * time.Millisecond)
		if a, err = e.p.StageActivity(ctx, spec, res); err != nil {
			t.Fatal(err)
		}
	}
	if !a.Stranded() || !strings.Contains(a.StoppedReason, "CannotPullContainer") {
		t.Errorf("activity after the failed job = %+v; want stranded, a pull failure as the reason", a)
	}
}
