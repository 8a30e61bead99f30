package provision_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/cloudpipe/cloudpipe/provision"
)

// TestBatchDrift changes by hand, with the operator's client, what a
// person could break of a stage on AWS Batch: ChangedSettings names it
// (and nothing else), EnsureStage repairs it, and then nothing is listed.
// A stage left as EnsureStage made it lists nothing. The capacity has its
// own key pair, so that it is this test's alone.
func TestBatchDrift(t *testing.T) {
	e := newBatchEnv(t)
	ctx := t.Context()
	spec := e.gpuSpec(e.name, "ec2")
	spec.Batch.KeyPair = e.name
	capacity := spec.Batch.Key(spec.Region).Name()
	def := provision.ResourceName(spec.Workflow, spec.Stage)
	res := e.ensure(spec, provision.StageResources{})
	if d, err := e.p.ChangedSettings(ctx, spec, res); err != nil || len(d) != 0 {
		t.Fatalf("ChangedSettings after EnsureStage = %v, %v; want none", d, err)
	}
	revision := func(arn string) string { return arn[strings.LastIndexByte(arn, ':')+1:] }
	// registerLike registers a revision of the stage's job definition as
	// the current one is, changed by change.
	registerLike := func(change func(*batchtypes.EcsTaskProperties)) (string, error) {
		out, err := e.batch.DescribeJobDefinitions(ctx, &batch.DescribeJobDefinitionsInput{JobDefinitions: []string{res.JobDefinitionARN}})
		if err != nil || len(out.JobDefinitions) != 1 || out.JobDefinitions[0].EcsProperties == nil {
			t.Fatalf("describe the stage's job definition: %+v, %v", out, err)
		}
		props := out.JobDefinitions[0].EcsProperties
		change(&props.TaskProperties[0])
		reg, err := e.batch.RegisterJobDefinition(ctx, &batch.RegisterJobDefinitionInput{JobDefinitionName: aws.String(def),
			Type: batchtypes.JobDefinitionTypeContainer, PlatformCapabilities: []batchtypes.PlatformCapability{batchtypes.PlatformCapabilityEc2},
			EcsProperties: props})
		if err != nil {
			return "", err
		}
		return aws.ToString(reg.JobDefinitionArn), nil
	}
	other := capacity + "-other"
	var handMade string
	for _, tt := range []struct {
		name   string
		tamper func() error
		want   func() []string // Drift.String of each
	}{
		{"compute environment disabled", func() error {
			_, err := e.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{ComputeEnvironment: aws.String(capacity), State: batchtypes.CEStateDisabled})
			return err
		}, func() []string {
			return []string{"batch compute environment " + capacity + " state ENABLED → DISABLED"}
		}},
		{"job queue disabled", func() error {
			_, err := e.batch.UpdateJobQueue(ctx, &batch.UpdateJobQueueInput{JobQueue: aws.String(capacity), State: batchtypes.JQStateDisabled})
			return err
		}, func() []string { return []string{"batch job queue " + capacity + " state ENABLED → DISABLED"} }},
		{"another compute environment first on the queue", func() error {
			ce, err := e.batch.CreateComputeEnvironment(ctx, &batch.CreateComputeEnvironmentInput{ComputeEnvironmentName: aws.String(other),
				Type: batchtypes.CETypeManaged, ComputeResources: &batchtypes.ComputeResource{Type: batchtypes.CRTypeEc2, MaxvCpus: aws.Int32(4),
					InstanceTypes: []string{"m5.large"}, Subnets: e.subnets, SecurityGroupIds: e.sgs, InstanceRole: aws.String(provision.BatchInstanceRole)}})
			if err != nil {
				return err
			}
			// Batch takes a queue's environment once it is VALID.
			for deadline := time.Now().Add(30 * time.Second); ; {
				out, err := e.batch.DescribeComputeEnvironments(ctx, &batch.DescribeComputeEnvironmentsInput{ComputeEnvironments: []string{other}})
				if err != nil {
					return err
				}
				if len(out.ComputeEnvironments) == 1 && out.ComputeEnvironments[0].Status == batchtypes.CEStatusValid {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("compute environment %s not VALID within 30 s: %+v", other, out.ComputeEnvironments)
				}
				time.Sleep(10 * time.Millisecond)
			}
			q, err := e.batch.DescribeJobQueues(ctx, &batch.DescribeJobQueuesInput{JobQueues: []string{capacity}})
			if err != nil || len(q.JobQueues) != 1 || len(q.JobQueues[0].ComputeEnvironmentOrder) != 1 {
				t.Fatalf("describe the queue: %+v, %v", q, err)
			}
			_, err = e.batch.UpdateJobQueue(ctx, &batch.UpdateJobQueueInput{JobQueue: aws.String(capacity),
				ComputeEnvironmentOrder: []batchtypes.ComputeEnvironmentOrder{{Order: aws.Int32(1), ComputeEnvironment: ce.ComputeEnvironmentArn},
					{Order: aws.Int32(2), ComputeEnvironment: q.JobQueues[0].ComputeEnvironmentOrder[0].ComputeEnvironment}}})
			return err
		}, func() []string {
			return []string{"batch job queue " + capacity + " compute environments " + capacity + " → " + other + ", " + capacity}
		}},
		{"the submitted revision deregistered", func() error {
			_, err := e.batch.DeregisterJobDefinition(ctx, &batch.DeregisterJobDefinitionInput{JobDefinition: aws.String(res.JobDefinitionARN)})
			return err
		}, func() []string {
			return []string{"batch job definition " + def + " revision " + revision(res.JobDefinitionARN) + " ACTIVE → INACTIVE"}
		}},
		{"a newer revision with another image and no GPU", func() (err error) {
			handMade, err = registerLike(func(task *batchtypes.EcsTaskProperties) {
				c := &task.Containers[len(task.Containers)-1]
				c.Image = aws.String("public.ecr.aws/docker/library/busybox:latest")
				c.ResourceRequirements = slices.DeleteFunc(c.ResourceRequirements, func(r batchtypes.ResourceRequirement) bool { return r.Type == batchtypes.ResourceTypeGpu })
			})
			return err
		}, func() []string {
			alg := spec.Algorithm.Name
			return []string{"batch job definition " + def + " latest ACTIVE revision " + revision(res.JobDefinitionARN) + " → " +
				revision(handMade) + " (image of " + alg + ", resources of " + alg + " differ)"}
		}},
		{"a newer revision as cloudpipe's is no drift", func() (err error) {
			_, err = registerLike(func(*batchtypes.EcsTaskProperties) {})
			return err
		}, func() []string { return nil }},
	} {
		if err := tt.tamper(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		d, err := e.p.ChangedSettings(ctx, spec, res)
		var got []string
		for _, x := range d {
			got = append(got, x.String())
		}
		if want := tt.want(); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: ChangedSettings = %q, %v\nwant %q", tt.name, got, err, want)
		}
		if missing, err := e.p.MissingResources(ctx, spec, res); err != nil || len(missing) != 0 {
			t.Errorf("%s: MissingResources = %v, %v; want none (a changed setting is not a missing resource)", tt.name, missing, err)
		}
		before := res.JobDefinitionARN
		res = e.ensure(spec, res)
		if d, err := e.p.ChangedSettings(ctx, spec, res); err != nil || len(d) != 0 {
			t.Errorf("%s: after the repair ChangedSettings = %v, %v; want none", tt.name, d, err)
		}
		// Only a job definition's drift is repaired with a new revision.
		wantMove := slices.ContainsFunc(tt.want(), func(d string) bool { return strings.HasPrefix(d, "batch job definition ") })
		if moved := res.JobDefinitionARN != before; moved != wantMove {
			t.Errorf("%s: the repair went from revision %s to %s, want a new one: %v", tt.name, revision(before), revision(res.JobDefinitionARN), wantMove)
		}
	}
	// Repaired, the queue runs on the capacity's environment alone, both
	// ENABLED, and the stage submits its newest revision.
	q, err := e.batch.DescribeJobQueues(ctx, &batch.DescribeJobQueuesInput{JobQueues: []string{capacity}})
	if err != nil || len(q.JobQueues) != 1 || q.JobQueues[0].State != batchtypes.JQStateEnabled || len(q.JobQueues[0].ComputeEnvironmentOrder) != 1 ||
		!strings.HasSuffix(aws.ToString(q.JobQueues[0].ComputeEnvironmentOrder[0].ComputeEnvironment), "/"+capacity) {
		t.Errorf("the queue after the repairs: %+v, %v", q, err)
	}

	if _, err := e.p.DeleteStage(ctx, spec, res); err != nil {
		t.Errorf("DeleteStage: %v", err)
	}
	if _, done, err := e.p.DeleteBatchCapacity(ctx, spec.Batch.Key(spec.Region)); err != nil || !done {
		t.Errorf("DeleteBatchCapacity: done %v, %v", done, err)
	}
	if _, err := e.batch.UpdateComputeEnvironment(ctx, &batch.UpdateComputeEnvironmentInput{ComputeEnvironment: aws.String(other), State: batchtypes.CEStateDisabled}); err != nil {
		t.Logf("disable %s: %v", other, err)
	}
}
