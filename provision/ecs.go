package provision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// fargateSize returns the smallest valid Fargate (cpu, memory) combination
// that gives at least cpu (vCPUs below 64, else CPU units) and memoryMiB,
// from workflow's table of Fargate sizes, the one validation and placement
// use. Zero values ask for the minimum. It fails when the request exceeds
// the largest Fargate task.
func fargateSize(cpu float64, memoryMiB int) (cpuUnits, memory int, err error) {
	cpuUnits, memory, ok := workflow.FargateSize(cpu, memoryMiB)
	if !ok {
		return 0, 0, fmt.Errorf("cpu %v and memory %d MiB exceed the largest Fargate task (16 vCPU, 120 GiB)", cpu, memoryMiB)
	}
	return cpuUnits, memory, nil
}

// taskDefinitionInput builds the RegisterTaskDefinition request of a stage:
// an init container copies the runner from RunnerImage into the shared
// volume, then the algorithm's unmodified image runs with the runner as its
// entry point. Secrets are passed by valueFrom only, so no credential is
// ever part of the task definition.
func (p *Provisioner) taskDefinitionInput(spec StageSpec, ids StageResources) (*ecs.RegisterTaskDefinitionInput, error) {
	cpu, memory, err := fargateSize(spec.Algorithm.CPU, spec.Algorithm.MemoryMiB)
	if err != nil {
		return nil, fmt.Errorf("size task of stage %s: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	initContainer, algorithm := p.stageContainers(spec, ids)
	var platform *ecstypes.RuntimePlatform
	if spec.Algorithm.Architecture == workflow.ArchARM {
		// Fargate runs x86_64 unless told otherwise; a Graviton type asks
		// for arm64, and the runner image must then have an arm64 variant:
		// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs-arm64.html
		platform = &ecstypes.RuntimePlatform{
			CpuArchitecture:       ecstypes.CPUArchitectureArm64,
			OperatingSystemFamily: ecstypes.OSFamilyLinux,
		}
	}
	in := &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(ResourceName(spec.Workflow, spec.Stage)),
		RuntimePlatform:         platform,
		RequiresCompatibilities: []ecstypes.Compatibility{ecstypes.CompatibilityFargate},
		NetworkMode:             ecstypes.NetworkModeAwsvpc,
		Cpu:                     aws.String(strconv.Itoa(cpu)),
		Memory:                  aws.String(strconv.Itoa(memory)),
		ExecutionRoleArn:        aws.String(ids.ExecutionRoleARN),
		TaskRoleArn:             aws.String(ids.TaskRoleARN),
		Volumes:                 []ecstypes.Volume{{Name: aws.String(volumeName)}},
		ContainerDefinitions:    []ecstypes.ContainerDefinition{initContainer, algorithm},
		Tags:                    ecsTags(stageTags(spec.Workflow, spec.Stage)),
	}
	if g := spec.Algorithm.EphemeralStorageGiB; g > 0 {
		// Left out otherwise, so a task definition without it hashes as it
		// always did and no stage is re-registered for nothing.
		// https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html
		in.EphemeralStorage = &ecstypes.EphemeralStorage{SizeInGiB: int32(g)}
	}
	return in, nil
}

// stageContainers returns the two containers of a stage's task, on Fargate
// (taskDefinitionInput) and on AWS Batch (jobDefinitionInput, which takes
// what Batch's containers have of them): the init container that copies
// the runner into the shared volume, and the algorithm's unmodified image
// with the runner as its entry point.
func (p *Provisioner) stageContainers(spec StageSpec, ids StageResources) (initContainer, algorithm ecstypes.ContainerDefinition) {
	logs := &ecstypes.LogConfiguration{
		LogDriver: ecstypes.LogDriverAwslogs,
		Options: map[string]string{
			"awslogs-group":         workflowLogGroup(spec.Workflow),
			"awslogs-region":        spec.Region,
			"awslogs-stream-prefix": logStreamPrefix(spec.Stage),
		},
	}
	initContainer = ecstypes.ContainerDefinition{
		Name:             aws.String(initContainerName),
		Image:            aws.String(p.opts.RunnerImage),
		Essential:        aws.Bool(false),
		Command:          []string{"runner", "install", runnerMount},
		MountPoints:      []ecstypes.MountPoint{{SourceVolume: aws.String(volumeName), ContainerPath: aws.String(runnerMount), ReadOnly: aws.Bool(false)}},
		LogConfiguration: logs,
	}
	algorithm = ecstypes.ContainerDefinition{
		Name:       aws.String(spec.Algorithm.Name),
		Image:      aws.String(spec.Algorithm.Image),
		Essential:  aws.Bool(true),
		EntryPoint: []string{runnerMount + "/agent", "runner"},
		DependsOn: []ecstypes.ContainerDependency{{
			ContainerName: aws.String(initContainerName),
			Condition:     ecstypes.ContainerConditionSuccess,
		}},
		MountPoints: []ecstypes.MountPoint{{SourceVolume: aws.String(volumeName), ContainerPath: aws.String(runnerMount), ReadOnly: aws.Bool(true)}},
		// An init process as PID 1 reaps what the algorithm leaves behind
		// and forwards ECS's SIGTERM to the runner, which otherwise is PID 1
		// and gets no default signal handling.
		// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_LinuxParameters.html
		LinuxParameters:  &ecstypes.LinuxParameters{InitProcessEnabled: aws.Bool(true)},
		Environment:      containerEnvironment(spec, ids, p.opts.StateBucket, p.stateRegion()),
		Secrets:          containerSecrets(spec),
		PortMappings:     portMappings(spec.Algorithm.Ports),
		LogConfiguration: logs,
	}
	return initContainer, algorithm
}

// containerEnvironment returns the algorithm container's environment: the
// workflow's variables, then the runner's settings, which win on a clash.
// Sorted, so the same spec always gives the same request and hash. The
// state bucket is named with its region, the agent's, which a stage of
// another region does not share.
func containerEnvironment(spec StageSpec, ids StageResources, stateBucket, stateRegion string) []ecstypes.KeyValuePair {
	env := maps.Clone(spec.Variables)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, contract.RunnerEnv{
		QueueURL:     ids.QueueURL,
		InputBucket:  spec.InputBucket,
		OutputBucket: spec.OutputBucket,
		RunCommand:   spec.Algorithm.RunCommand,
		InputPath:    spec.Algorithm.InputFilePath,
		OutputPath:   spec.Algorithm.OutputFilePath,
		Algorithm:    spec.Algorithm.Name,
		StateBucket:  stateBucket,
		StateRegion:  stateRegion,
		Workflow:     spec.Workflow,
		Stage:        spec.Stage,
	}.Env())
	out := make([]ecstypes.KeyValuePair, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, ecstypes.KeyValuePair{Name: aws.String(k), Value: aws.String(env[k])})
	}
	return out
}

// containerSecrets maps spec.Secrets and the task-credentials secret into
// the container by valueFrom: ECS reads them with the execution role at
// start, and their values never appear in the task definition.
func containerSecrets(spec StageSpec) []ecstypes.Secret {
	from := maps.Clone(spec.Secrets)
	if from == nil {
		from = map[string]string{}
	}
	if arn := spec.TaskCredentialsSecret; arn != "" {
		// "<arn>:<json key>::" selects one key of a JSON secret. The keys go
		// in under cloudpipe's names, so the runner keeps the task role and
		// only the algorithm's process gets them (see contract.AlgorithmCredentials).
		for name, key := range contract.AlgorithmCredentials {
			from[name] = arn + ":" + key + "::"
		}
	}
	if len(from) == 0 {
		return nil
	}
	out := make([]ecstypes.Secret, 0, len(from))
	for _, k := range slices.Sorted(maps.Keys(from)) {
		out = append(out, ecstypes.Secret{Name: aws.String(k), ValueFrom: aws.String(from[k])})
	}
	return out
}

// secretARNs returns the distinct secrets a stage reads, as IAM resources.
func secretARNs(spec StageSpec) []string {
	var out []string
	add := func(valueFrom string) {
		if arn := secretARN(valueFrom); !slices.Contains(out, arn) {
			out = append(out, arn)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Secrets)) {
		add(spec.Secrets[k])
	}
	if spec.TaskCredentialsSecret != "" {
		add(spec.TaskCredentialsSecret)
	}
	slices.Sort(out)
	return out
}

func portMappings(ports []PortSpec) []ecstypes.PortMapping {
	var out []ecstypes.PortMapping
	for _, p := range ports {
		out = append(out, ecstypes.PortMapping{
			ContainerPort: aws.Int32(int32(p.Port)),
			Protocol:      ecstypes.TransportProtocol(strings.ToLower(p.Protocol)),
		})
	}
	return out
}

func ecsTags(tags map[string]string) []ecstypes.Tag {
	out := make([]ecstypes.Tag, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, ecstypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// taskDefinitionHash identifies a RegisterTaskDefinition request. It is
// recorded with the revision, and a new revision is registered only when
// the hash changes: comparing with what we sent, not with what ECS echoes,
// since emulators drop fields and ECS adds defaults.
func taskDefinitionHash(in *ecs.RegisterTaskDefinitionInput) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("hash task definition: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// registerTaskDefinition registers a new revision of the stage's family.
func registerTaskDefinition(ctx context.Context, c *clients, in *ecs.RegisterTaskDefinitionInput) (string, error) {
	out, err := c.ecs.RegisterTaskDefinition(ctx, in)
	if err != nil {
		return "", fmt.Errorf("register task definition %s: %w", aws.ToString(in.Family), err)
	}
	return aws.ToString(out.TaskDefinition.TaskDefinitionArn), nil
}

// deregisterTaskDefinition deregisters one revision; a revision that does
// not exist counts as done. Tasks already running keep running.
func deregisterTaskDefinition(ctx context.Context, c *clients, arn string) (outcome, error) {
	_, err := c.ecs.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: &arn})
	if isTaskDefinitionNotFound(err) {
		return outcomeGone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("deregister task definition %s: %w", arn, err)
	}
	return outcomeDeleted, nil
}
