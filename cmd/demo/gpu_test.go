package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/cloudpipe/cloudpipe/internal/localecs"
	"github.com/cloudpipe/cloudpipe/provision"
)

// gpuMixWorkflow is a sequence of three stages, one per place a stage can
// run: sort-lines on Fargate (no instance_type), gpu-info on AWS Batch
// On-Demand g5.xlarge instances (a GPU type Fargate cannot serve), and
// sort-spot on Batch Spot m7i.large instances. capacity is the workflow's
// unless a step sets its own, so the third step sets "spot".
const gpuMixWorkflow = `{
  "input_s3_name": "cloudpipe-example-gpu-in",
  "output_s3_name": "cloudpipe-example-gpu-out",
  "region": "us-east-1",
  "process": {"type": "sequence_run", "algorithms": [
    {"name": "sort-lines", "port": [], "variables": {"LC_ALL": "C"}},
    {"name": "gpu-info", "port": [], "variables": {}},
    {"name": "sort-spot", "port": [], "variables": {"LC_ALL": "C"}, "capacity": "spot"}
  ]}
}
`

// gpuMixRepo is a config repository with the checkout's algorithms, a
// sort-lines on m7i.large (which only Spot capacity moves to Batch) and
// gpuMixWorkflow.
func gpuMixRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(checkoutRoot(t), "algorithms")
	if err := os.CopyFS(filepath.Join(dir, "algorithms"), os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	sortLines, err := os.ReadFile(filepath.Join(src, "sort-lines.json"))
	if err != nil {
		t.Fatal(err)
	}
	spot := strings.Replace(strings.Replace(string(sortLines), `"name": "sort-lines"`, `"name": "sort-spot"`, 1),
		`"instance_type": ""`, `"instance_type": "m7i.large"`, 1)
	if spot == string(sortLines) || !strings.Contains(spot, "m7i.large") {
		t.Fatal("algorithms/sort-lines.json changed shape: cannot derive sort-spot from it")
	}
	files := map[string]string{"algorithms/sort-spot.json": spot, "workflows/gpu-mix.json": gpuMixWorkflow}
	if err := os.MkdirAll(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDemoGPUAndSpot runs a three-stage sequence through Fargate, a GPU
// type on AWS Batch and Spot capacity on Batch, end to end: the upload
// comes out of the last stage sorted, with the GPU stage's line in it (no
// GPU is visible on a test machine; nvidia-smi's output where one is). The
// compute environments and job definitions the agent created are read
// back from the local Batch before the upload.
func TestDemoGPUAndSpot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	seq := runSeq.Add(1)
	name := fmt.Sprintf("gpu-%d.txt", seq)
	input := []byte("pear\napple\nfig\napple\n")
	upload := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(upload, input, 0o644); err != nil {
		t.Fatal(err)
	}
	dl := t.TempDir()
	var envs []batchtypes.ComputeEnvironmentDetail
	var defs []batchtypes.JobDefinition
	var stdout, stderr syncBuffer
	o := demoOptions(t, gpuMixRepo(t), bin, seq, &stderr)
	o.upload, o.download, o.once = upload, dl, true
	o.beforeUpload = func(ctx context.Context, cfg aws.Config) error {
		// Read back while the local Batch, which keeps what kumo
		// drops (ecsProperties), is up.
		client := batch.NewFromConfig(cfg)
		ce, err := client.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{
			ComputeEnvironments: []string{"cp-batch-g5-xlarge-ec2", "cp-batch-m7i-large-spot"}})
		if err != nil {
			return err
		}
		envs = ce.ComputeEnvironments
		jd, err := client.DescribeJobDefinitions(ctx, &batch.DescribeJobDefinitionsInput{
			JobDefinitions: []string{provision.ResourceName("gpu-mix", 1), provision.ResourceName("gpu-mix", 2)}, Status: aws.String("ACTIVE")})
		if err != nil {
			return err
		}
		defs = jd.JobDefinitions
		return nil
	}
	err := run(t.Context(), o, &stdout)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	got := readLines(t, filepath.Join(dl, "gpu-mix", "Result-sort-spot-Result-gpu-info-Result-sort-lines-"+name))
	gpuLine := "no GPU is visible"
	if _, err := os.Stat("/usr/bin/nvidia-smi"); err == nil {
		gpuLine = "" // nvidia-smi's table: only the input's lines are checked
	}
	want := wantSorted(input)
	if gpuLine != "" {
		want = wantSorted(append(input, gpuLine+"\n"...))
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("result %q lacks %q (want the sorted input with the GPU stage's line)", got, l)
		}
	}
	if gpuLine != "" && !slices.Equal(got, want) {
		t.Errorf("result = %q, want %q", got, want)
	}
	for _, want := range []string{
		"gpu-mix: stage 0 (sort-lines): queued, task ", // an ECS task on "Fargate"
		"gpu-mix: stage 1 (gpu-info) would run on g5.xlarge (AWS Batch, EC2 On-Demand, 1 GPU); running it on this machine",
		"gpu-mix: stage 2 (sort-spot) would run on m7i.large (AWS Batch, EC2 Spot); running it on this machine",
		"all 1 results arrived",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, notWant := range []string{"stage 0 (sort-lines) would run", "stage 1 (gpu-info): queued, task", "stage 2 (sort-spot): queued, task"} {
		if strings.Contains(stdout.String(), notWant) {
			t.Errorf("output has %q: a stage ran on the wrong platform", notWant)
		}
	}

	checkComputeEnvironments(t, envs)
	checkJobDefinitions(t, defs)
}

// checkComputeEnvironments checks the two compute environments: both
// scale from zero; the GPU one uses the GPU-enabled ECS AMI; the Spot one
// is Spot with the allocation strategy that interrupts least.
func checkComputeEnvironments(t *testing.T, envs []batchtypes.ComputeEnvironmentDetail) {
	t.Helper()
	byName := map[string]*batchtypes.ComputeResource{}
	for _, e := range envs {
		byName[aws.ToString(e.ComputeEnvironmentName)] = e.ComputeResources
	}
	for _, c := range []struct {
		name, instanceType, image string
		typ                       batchtypes.CRType
		strategy                  batchtypes.CRAllocationStrategy
	}{
		{"cp-batch-g5-xlarge-ec2", "g5.xlarge", "ECS_AL2_NVIDIA", batchtypes.CRTypeEc2, batchtypes.CRAllocationStrategyBestFitProgressive},
		{"cp-batch-m7i-large-spot", "m7i.large", "ECS_AL2023", batchtypes.CRTypeSpot, batchtypes.CRAllocationStrategySpotPriceCapacityOptimized},
	} {
		cr := byName[c.name]
		if cr == nil {
			t.Errorf("compute environment %s: not described (got %d environments)", c.name, len(envs))
			continue
		}
		var images []string
		for _, ec := range cr.Ec2Configuration {
			images = append(images, aws.ToString(ec.ImageType))
		}
		if aws.ToInt32(cr.MinvCpus) != 0 || !slices.Equal(cr.InstanceTypes, []string{c.instanceType}) ||
			cr.Type != c.typ || cr.AllocationStrategy != c.strategy || !slices.Equal(images, []string{c.image}) {
			t.Errorf("compute environment %s: minvCpus %d, instance types %v, type %s, strategy %s, images %v; want 0, [%s], %s, %s, [%s]",
				c.name, aws.ToInt32(cr.MinvCpus), cr.InstanceTypes, cr.Type, cr.AllocationStrategy, images,
				c.instanceType, c.typ, c.strategy, c.image)
		}
	}
}

// checkJobDefinitions checks the Batch stages' job definitions: the init
// container that copies the runner, then the algorithm's image running it,
// sized by VCPU, MEMORY and (for the GPU type) GPU.
func checkJobDefinitions(t *testing.T, defs []batchtypes.JobDefinition) {
	t.Helper()
	// The algorithm's CPU rounded up to whole vCPUs, its memory.suggested,
	// and the GPUs of its instance type (algorithms/gpu-info.json: CPU 1,
	// 2048 MiB, g5.xlarge with one GPU; sort-spot: CPU 0.25, 512 MiB).
	want := map[string]map[string]string{
		provision.ResourceName("gpu-mix", 1): {"VCPU": "1", "MEMORY": "2048", "GPU": "1"},
		provision.ResourceName("gpu-mix", 2): {"VCPU": "1", "MEMORY": "512"},
	}
	for _, d := range defs {
		name := aws.ToString(d.JobDefinitionName)
		w, ok := want[name]
		if !ok {
			continue
		}
		delete(want, name)
		if d.EcsProperties == nil || len(d.EcsProperties.TaskProperties) != 1 || len(d.EcsProperties.TaskProperties[0].Containers) != 2 {
			t.Errorf("job definition %s: ecsProperties %+v, want one task of two containers", name, d.EcsProperties)
			continue
		}
		init, run := d.EcsProperties.TaskProperties[0].Containers[0], d.EcsProperties.TaskProperties[0].Containers[1]
		if aws.ToString(init.Image) != runnerImage || !slices.Equal(run.Command, []string{"/cloudpipe/agent", runnerRole}) {
			t.Errorf("job definition %s: init image %s, algorithm command %v; want %s and the runner", name,
				aws.ToString(init.Image), run.Command, runnerImage)
		}
		reqs := map[string]string{}
		for _, r := range run.ResourceRequirements {
			reqs[string(r.Type)] = aws.ToString(r.Value)
		}
		for k, v := range w {
			if reqs[k] != v {
				t.Errorf("job definition %s: %s = %q, want %q (all: %v)", name, k, reqs[k], v, reqs)
			}
		}
		if _, gpu := w["GPU"]; !gpu && reqs["GPU"] != "" {
			t.Errorf("job definition %s asks for a GPU: %v", name, reqs)
		}
	}
	for name := range want {
		t.Errorf("job definition %s: not described", name)
	}
}

// TestBatchLine: the line that says where a job the demo runs on this
// machine would have run on AWS.
func TestBatchLine(t *testing.T) {
	tests := []struct {
		name string
		job  localecs.JobSpec
		want string
	}{
		{"GPU On-Demand", localecs.JobSpec{ComputeType: "EC2", InstanceTypes: []string{"g5.xlarge"}, Resources: map[string]string{"VCPU": "4", "GPU": "1"}},
			"w: stage 1 (a) would run on g5.xlarge (AWS Batch, EC2 On-Demand, 1 GPU); running it on this machine"},
		{"Spot", localecs.JobSpec{ComputeType: "SPOT", InstanceTypes: []string{"m7i.large"}, Resources: map[string]string{"VCPU": "2"}},
			"w: stage 1 (a) would run on m7i.large (AWS Batch, EC2 Spot); running it on this machine"},
		{"GPU 0", localecs.JobSpec{ComputeType: "EC2", InstanceTypes: []string{"c5.large"}, Resources: map[string]string{"GPU": "0"}},
			"w: stage 1 (a) would run on c5.large (AWS Batch, EC2 On-Demand); running it on this machine"},
		{"no instance types", localecs.JobSpec{ComputeType: "FARGATE"},
			"w: stage 1 (a) would run on an instance of its compute environment (AWS Batch, FARGATE); running it on this machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := batchLine("w: stage 1 (a)", tt.job); got != tt.want {
				t.Errorf("batchLine = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestJobTask: a finished Batch job reaches the tracker as the stopped task
// it ran, or could not start.
func TestJobTask(t *testing.T) {
	const (
		def  = "arn:aws:batch:us-east-1:000000000000:job-definition/cp-w-1:3"
		task = "arn:aws:ecs:us-east-1:000000000000:task/AWSBatch-cp-batch-g5-xlarge-ec2/0123456789abcdef"
	)
	one := 1
	tests := []struct {
		name                 string
		job                  localecs.Job
		ok                   bool
		id, stopCode, reason string
		exitCode             *int
	}{
		{"running", localecs.Job{Status: localecs.JobRunning}, false, "", "", "", nil},
		{"succeeded", localecs.Job{JobSpec: localecs.JobSpec{JobID: "j1", JobDefinitionARN: def}, Status: localecs.JobSucceeded,
			StatusReason: localecs.JobReasonExited, TaskARN: task, ExitCode: new(int)},
			true, "0123456789abcdef", localecs.StopEssentialContainerExited, localecs.JobReasonExited, new(int)},
		{"command failed", localecs.Job{JobSpec: localecs.JobSpec{JobID: "j1", JobDefinitionARN: def}, Status: localecs.JobFailed,
			StatusReason: localecs.JobReasonExited, TaskARN: task, ExitCode: &one},
			true, "0123456789abcdef", localecs.StopEssentialContainerExited, localecs.JobReasonExited, &one},
		{"not started", localecs.Job{JobSpec: localecs.JobSpec{JobID: "j1", JobDefinitionARN: def}, Status: localecs.JobFailed,
			StatusReason: localecs.JobReasonNotStarted, ContainerReason: "CannotPullContainerError: no such image"},
			true, "j1", localecs.StopTaskFailedToStart, "CannotPullContainerError: no such image", nil},
		{"cancelled", localecs.Job{JobSpec: localecs.JobSpec{JobID: "j1", JobDefinitionARN: def}, Status: localecs.JobFailed,
			StatusReason: "cancelled", IsCancelled: true},
			true, "j1", localecs.StopUserInitiated, "cancelled", nil},
		{"terminated while running", localecs.Job{JobSpec: localecs.JobSpec{JobID: "j1", JobDefinitionARN: def}, Status: localecs.JobFailed,
			StatusReason: "terminated", IsTerminated: true, TaskARN: task},
			true, "0123456789abcdef", localecs.StopUserInitiated, "terminated", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := jobTask(tt.job)
			if ok != tt.ok {
				t.Fatalf("jobTask ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if got.Family != "cp-w-1" || got.TaskID != tt.id || got.LastStatus != localecs.StatusStopped ||
				got.StopCode != tt.stopCode || got.StoppedReason != tt.reason || (got.ExitCode == nil) != (tt.exitCode == nil) ||
				(got.ExitCode != nil && *got.ExitCode != *tt.exitCode) {
				t.Errorf("jobTask = family %q, id %q, %s, %s %q, exit %v; want cp-w-1, %q, STOPPED, %s %q, exit %v",
					got.Family, got.TaskID, got.LastStatus, got.StopCode, got.StoppedReason, got.ExitCode, tt.id, tt.stopCode, tt.reason, tt.exitCode)
			}
		})
	}
}
