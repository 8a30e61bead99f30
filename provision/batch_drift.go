package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
)

// Drift of the AWS Batch resources a stage uses: what a person with the
// console (or a script) can change by hand so that the stage's jobs no
// longer run, or no longer run as cloudpipe set them:
//
//   - the capacity's compute environment or job queue DISABLED: a disabled
//     queue accepts no job, a disabled environment starts no instance
//     ("ENABLED" / "DISABLED", UpdateComputeEnvironment, UpdateJobQueue);
//   - the queue's compute environments changed (another environment
//     added, or ours replaced): jobs would run on other instances;
//   - the stage's job definition: the revision the function submits
//     deregistered (INACTIVE: SubmitJob refuses it), or a newer ACTIVE
//     revision whose image, resources, roles or privilege are not what
//     cloudpipe registers (whoever submits by name, as the console does,
//     runs that one).
//
// Each is repaired by the next EnsureStage: ensureBatchCapacity enables the
// environment and queue and resets the queue's environments, and
// ensureJobDefinition registers a new revision, which is then the newest.
// Revisions are immutable, so nothing else of a job definition can change.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_UpdateJobQueue.html
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DescribeJobDefinitions.html
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeregisterJobDefinition.html

// batchDrift lists the drift of the stage's capacity and job definition,
// reading only; nothing for a stage on Fargate.
func (s *stageBuild) batchDrift(ctx context.Context, res StageResources) ([]Drift, error) {
	if s.spec.Batch == nil {
		return nil, nil
	}
	out, err := capacityDrift(ctx, s.c, s.spec.Batch.Key(s.spec.Region))
	if err != nil {
		return out, err
	}
	if res.JobDefinitionARN == "" {
		return out, nil
	}
	jd, err := jobDefinitionDrift(ctx, s.c, s.p.jobDefinitionInput(s.spec, res), res.JobDefinitionARN)
	return append(out, jd...), err
}

// capacityDrift compares k's compute environment and job queue with what
// ensureBatchCapacity makes: both ENABLED, the queue on the environment
// alone. One that is missing is listed with no state: the next
// EnsureStage creates it.
func capacityDrift(ctx context.Context, c *clients, k BatchCapacity) ([]Drift, error) {
	name := k.Name()
	var out []Drift
	ce, err := findComputeEnvironment(ctx, c, name)
	switch {
	case errors.Is(err, ErrNotFound):
		out = append(out, Drift{Kind: kindComputeEnvironment, Name: name, Setting: "state", Want: string(batchtypes.CEStateEnabled)})
	case err != nil:
		return nil, err
	case ce.State != batchtypes.CEStateEnabled:
		out = append(out, Drift{Kind: kindComputeEnvironment, Name: name, Setting: "state", Want: string(batchtypes.CEStateEnabled), Have: string(ce.State)})
	}
	q, err := findJobQueue(ctx, c, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return append(out, Drift{Kind: kindJobQueue, Name: name, Setting: "state", Want: string(batchtypes.JQStateEnabled)}), nil
	case err != nil:
		return out, err
	}
	if q.State != batchtypes.JQStateEnabled {
		out = append(out, Drift{Kind: kindJobQueue, Name: name, Setting: "state", Want: string(batchtypes.JQStateEnabled), Have: string(q.State)})
	}
	if have := queueEnvironments(q); !slices.Equal(have, []string{name}) {
		out = append(out, Drift{Kind: kindJobQueue, Name: name, Setting: "compute environments", Want: name, Have: strings.Join(have, ", ")})
	}
	return out, nil
}

// queueEnvironments are the names of q's compute environments, in the
// order the queue tries them.
func queueEnvironments(q *batchtypes.JobQueueDetail) []string {
	order := slices.Clone(q.ComputeEnvironmentOrder)
	slices.SortStableFunc(order, func(a, b batchtypes.ComputeEnvironmentOrder) int {
		return int(aws.ToInt32(a.Order)) - int(aws.ToInt32(b.Order))
	})
	names := make([]string, len(order))
	for i, o := range order {
		names[i] = lastOfARN(aws.ToString(o.ComputeEnvironment))
	}
	return names
}

// lastOfARN is what follows an ARN's last "/": a Batch resource's name.
func lastOfARN(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }

// jobDefinitionDrift compares the stage's job definition with want, the
// request of recorded (the revision the function submits): recorded no
// longer ACTIVE, or a newer ACTIVE revision that differs from want.
func jobDefinitionDrift(ctx context.Context, c *clients, want *batch.RegisterJobDefinitionInput, recorded string) ([]Drift, error) {
	name := aws.ToString(want.JobDefinitionName)
	active, err := activeJobDefinitions(ctx, c, name)
	if err != nil {
		return nil, err
	}
	var out []Drift
	if !slices.ContainsFunc(active, func(d batchtypes.JobDefinition) bool { return aws.ToString(d.JobDefinitionArn) == recorded }) {
		out = append(out, Drift{Kind: kindJobDefinition, Name: name, Setting: "revision " + revisionOf(recorded), Want: "ACTIVE", Have: "INACTIVE"})
	}
	if len(active) == 0 {
		return out, nil
	}
	newest := slices.MaxFunc(active, func(a, b batchtypes.JobDefinition) int { return int(aws.ToInt32(a.Revision) - aws.ToInt32(b.Revision)) })
	if aws.ToString(newest.JobDefinitionArn) == recorded {
		return out, nil
	}
	if diff := jobDefinitionDiffers(want, newest); len(diff) > 0 {
		out = append(out, Drift{Kind: kindJobDefinition, Name: name, Setting: "latest ACTIVE revision",
			Want: revisionOf(recorded), Have: strconv.Itoa(int(aws.ToInt32(newest.Revision))) + " (" + strings.Join(diff, ", ") + " differ)"})
	}
	return out, nil
}

// revisionOf is the revision number at the end of a job definition's ARN.
func revisionOf(arn string) string { return arn[strings.LastIndexByte(arn, ':')+1:] }

// activeJobDefinitions lists the ACTIVE revisions of the job definition
// name, every page.
func activeJobDefinitions(ctx context.Context, c *clients, name string) ([]batchtypes.JobDefinition, error) {
	var out []batchtypes.JobDefinition
	p := batch.NewDescribeJobDefinitionsPaginator(c.batch, &batch.DescribeJobDefinitionsInput{
		JobDefinitionName: aws.String(name), Status: aws.String("ACTIVE")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describe job definition %s: %w", name, err)
		}
		out = append(out, page.JobDefinitions...)
	}
	return out, nil
}

// jobDefinitionDiffers names what of have (a registered revision) differs
// from want in what decides how the stage's job runs: the containers'
// images, commands, resources and privilege, and the task's roles.
// Settings AWS fills in on its own (defaults, the revision, tags) are not
// compared.
func jobDefinitionDiffers(want *batch.RegisterJobDefinitionInput, have batchtypes.JobDefinition) []string {
	var out []string
	wantTask, haveTask := batchtypes.EcsTaskProperties{}, batchtypes.EcsTaskProperties{}
	if want.EcsProperties != nil && len(want.EcsProperties.TaskProperties) > 0 {
		wantTask = want.EcsProperties.TaskProperties[0]
	}
	if have.EcsProperties != nil && len(have.EcsProperties.TaskProperties) > 0 {
		haveTask = have.EcsProperties.TaskProperties[0]
	}
	if aws.ToString(wantTask.TaskRoleArn) != aws.ToString(haveTask.TaskRoleArn) {
		out = append(out, "task role")
	}
	if aws.ToString(wantTask.ExecutionRoleArn) != aws.ToString(haveTask.ExecutionRoleArn) {
		out = append(out, "execution role")
	}
	if len(wantTask.Containers) != len(haveTask.Containers) {
		return append(out, "containers")
	}
	for i, w := range wantTask.Containers {
		h := haveTask.Containers[i]
		name := aws.ToString(w.Name)
		if aws.ToString(h.Name) != name {
			out = append(out, "containers")
			continue
		}
		if aws.ToString(w.Image) != aws.ToString(h.Image) {
			out = append(out, "image of "+name)
		}
		if !slices.Equal(w.Command, h.Command) {
			out = append(out, "command of "+name)
		}
		if !sameRequirements(w.ResourceRequirements, h.ResourceRequirements) {
			out = append(out, "resources of "+name)
		}
		if aws.ToBool(w.Privileged) != aws.ToBool(h.Privileged) {
			out = append(out, "privilege of "+name)
		}
	}
	return out
}

// sameRequirements compares resource requirements whatever their order.
func sameRequirements(a, b []batchtypes.ResourceRequirement) bool {
	key := func(rs []batchtypes.ResourceRequirement) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = string(r.Type) + "=" + aws.ToString(r.Value)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}
