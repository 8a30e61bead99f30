package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

// kindJobDefinition is a stage's AWS Batch job definition revision, as
// DeleteResult and drift reports name it.
const kindJobDefinition = "batch job definition"

// defaultBatchMemoryMiB is the job's memory when the algorithm names none:
// Batch requires a MEMORY requirement of every job.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ResourceRequirement.html
const defaultBatchMemoryMiB = 2048

// jobDefinitionInput builds the RegisterJobDefinition request of a stage on
// AWS Batch: the same two containers as its Fargate task definition
// (stageContainers), as an ECS-orchestrated job (ecsProperties, one task)
// on EC2, with the job's vCPUs, memory and GPUs as resource requirements of
// the algorithm's container, the stage's task and execution roles (the
// execution role reads the secrets, which go by valueFrom only, and
// writes the logs) and privileged when the algorithm asks.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_EcsTaskProperties.html
func (p *Provisioner) jobDefinitionInput(spec StageSpec, ids StageResources) *batch.RegisterJobDefinitionInput {
	initContainer, algorithm := p.stageContainers(spec, ids)
	init, run := batchContainer(initContainer), batchContainer(algorithm)
	memory := spec.Algorithm.MemoryMiB
	if memory <= 0 {
		memory = defaultBatchMemoryMiB
	}
	run.ResourceRequirements = []batchtypes.ResourceRequirement{
		{Type: batchtypes.ResourceTypeVcpu, Value: aws.String(strconv.Itoa(int(max(1, math.Ceil(spec.Algorithm.CPU)))))},
		{Type: batchtypes.ResourceTypeMemory, Value: aws.String(strconv.Itoa(memory))},
	}
	if b := spec.Batch; b != nil && b.GPUs > 0 {
		run.ResourceRequirements = append(run.ResourceRequirements,
			batchtypes.ResourceRequirement{Type: batchtypes.ResourceTypeGpu, Value: aws.String(strconv.Itoa(b.GPUs))})
	}
	if b := spec.Batch; b != nil && b.Privileged {
		run.Privileged = aws.Bool(true)
	}
	return &batch.RegisterJobDefinitionInput{
		JobDefinitionName:    aws.String(ResourceName(spec.Workflow, spec.Stage)),
		Type:                 batchtypes.JobDefinitionTypeContainer,
		PlatformCapabilities: []batchtypes.PlatformCapability{batchtypes.PlatformCapabilityEc2},
		EcsProperties: &batchtypes.EcsProperties{TaskProperties: []batchtypes.EcsTaskProperties{{
			Containers:       []batchtypes.TaskContainerProperties{init, run},
			TaskRoleArn:      aws.String(ids.TaskRoleARN),
			ExecutionRoleArn: aws.String(ids.ExecutionRoleARN),
			Volumes:          []batchtypes.Volume{{Name: aws.String(volumeName)}},
		}}},
		Tags: stageTags(spec.Workflow, spec.Stage),
	}
}

// batchContainer is an ECS container definition as a Batch task container.
// Batch's containers have no entryPoint: the entry point goes first in
// the command, so the runner still starts the algorithm. An image's own
// ENTRYPOINT then receives the command as its arguments, which is why an
// algorithm image for Batch must not set one (docs/workflow-reference.md).
// Port mappings have no Batch counterpart and are left out.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_TaskContainerProperties.html
func batchContainer(c ecstypes.ContainerDefinition) batchtypes.TaskContainerProperties {
	out := batchtypes.TaskContainerProperties{
		Name: c.Name, Image: c.Image, Essential: c.Essential,
		Command: append(slices.Clone(c.EntryPoint), c.Command...),
	}
	for _, d := range c.DependsOn {
		out.DependsOn = append(out.DependsOn, batchtypes.TaskContainerDependency{
			ContainerName: d.ContainerName, Condition: aws.String(string(d.Condition))})
	}
	for _, m := range c.MountPoints {
		out.MountPoints = append(out.MountPoints, batchtypes.MountPoint{
			SourceVolume: m.SourceVolume, ContainerPath: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	for _, kv := range c.Environment {
		out.Environment = append(out.Environment, batchtypes.KeyValuePair{Name: kv.Name, Value: kv.Value})
	}
	for _, s := range c.Secrets {
		out.Secrets = append(out.Secrets, batchtypes.Secret{Name: s.Name, ValueFrom: s.ValueFrom})
	}
	if l := c.LinuxParameters; l != nil {
		out.LinuxParameters = &batchtypes.LinuxParameters{InitProcessEnabled: l.InitProcessEnabled}
	}
	if l := c.LogConfiguration; l != nil {
		out.LogConfiguration = &batchtypes.LogConfiguration{LogDriver: batchtypes.LogDriver(l.LogDriver), Options: l.Options}
	}
	return out
}

// jobDefinitionHash identifies a RegisterJobDefinition request, as
// taskDefinitionHash does a task definition's: a new revision only when it
// changes.
func jobDefinitionHash(in *batch.RegisterJobDefinitionInput) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("hash job definition: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// registerJobDefinition registers a new revision of the stage's job
// definition.
func registerJobDefinition(ctx context.Context, c *clients, in *batch.RegisterJobDefinitionInput) (string, error) {
	out, err := c.batch.RegisterJobDefinition(ctx, in)
	if err != nil {
		return "", fmt.Errorf("register job definition %s: %w", aws.ToString(in.JobDefinitionName), err)
	}
	return aws.ToString(out.JobDefinitionArn), nil
}

// deregisterJobDefinition makes one revision INACTIVE; one that does not
// exist counts as done. Jobs already submitted go on.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_DeregisterJobDefinition.html
func deregisterJobDefinition(ctx context.Context, c *clients, arn string) (outcome, error) {
	_, err := c.batch.DeregisterJobDefinition(ctx, &batch.DeregisterJobDefinitionInput{JobDefinition: &arn})
	if isJobDefinitionNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("deregister job definition %s: %w", arn, err)
	}
	return outcomeDeleted, nil
}

// jobDefinitionResource is one recorded revision of a stage's job
// definition. The table's drift checks skip it; batchDrift compares the
// job definition as a whole.
func jobDefinitionResource(c *clients, arn string) stageResource {
	return stageResource{
		kind: kindJobDefinition, name: arn,
		delete: func(ctx context.Context) (outcome, string, error) {
			return notKept(deregisterJobDefinition(ctx, c, arn))
		},
	}
}

// ensureJobDefinition returns the job-definition revision to submit: prev's
// when the request is the one that made it and nothing drifted (prev still
// ACTIVE, no newer revision unlike it: jobDefinitionDrift), else a new one.
func (s *stageBuild) ensureJobDefinition(ctx context.Context, in *batch.RegisterJobDefinitionInput) (revision, error) {
	hash, err := jobDefinitionHash(in)
	if err != nil {
		return revision{}, err
	}
	if hash == s.prev.JobDefinitionHash && s.prev.JobDefinitionARN != "" {
		drift, err := jobDefinitionDrift(ctx, s.c, in, s.prev.JobDefinitionARN)
		if err != nil {
			return revision{}, err
		}
		if len(drift) == 0 {
			return revision{arn: s.prev.JobDefinitionARN, hash: hash}, nil
		}
	}
	arn, err := registerJobDefinition(ctx, s.c, in)
	if err != nil {
		return revision{}, err
	}
	return revision{arn: arn, hash: hash}, nil
}

// recordJob makes rev the job-definition revision the function submits,
// and remembers it until it is deregistered.
func (rev revision) recordJob(res *StageResources) {
	if rev.arn == "" {
		return
	}
	res.JobDefinitionARN, res.JobDefinitionHash = rev.arn, rev.hash
	if !slices.Contains(res.JobDefinitionARNs, rev.arn) {
		res.JobDefinitionARNs = append(res.JobDefinitionARNs, rev.arn)
	}
}
