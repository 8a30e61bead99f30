package provision_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestTaskDefinitionRequest checks the RegisterTaskDefinition request as
// sent: kumo drops volumes, dependsOn, mount points, secrets and log
// configuration from what it stores, so its echo proves nothing.
func TestTaskDefinitionRequest(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	name := provision.ResourceName(spec.Workflow, spec.Stage)

	inputs := e.calls.Inputs("ECS.RegisterTaskDefinition")
	if len(inputs) != 1 {
		t.Fatalf("%d RegisterTaskDefinition calls, want 1", len(inputs))
	}
	in := inputs[0].(*ecs.RegisterTaskDefinitionInput)
	if !strings.HasPrefix(res.TaskDefinitionARN, "arn:aws:ecs:") || !strings.Contains(res.TaskDefinitionARN, "task-definition/"+name+":") {
		t.Errorf("TaskDefinitionARN = %s, want a revision of family %s", res.TaskDefinitionARN, name)
	}
	if res.TaskDefinitionHash == "" {
		t.Error("no TaskDefinitionHash recorded")
	}

	if aws.ToString(in.Family) != name || in.NetworkMode != ecstypes.NetworkModeAwsvpc ||
		!slices.Equal(in.RequiresCompatibilities, []ecstypes.Compatibility{ecstypes.CompatibilityFargate}) {
		t.Errorf("family %s, network %s, compatibilities %v; want %s on Fargate/awsvpc", aws.ToString(in.Family), in.NetworkMode, in.RequiresCompatibilities, name)
	}
	// CPU 1 (vCPU) and 1024 MiB: the smallest Fargate size with one vCPU.
	if aws.ToString(in.Cpu) != "1024" || aws.ToString(in.Memory) != "2048" {
		t.Errorf("cpu/memory = %s/%s, want 1024/2048", aws.ToString(in.Cpu), aws.ToString(in.Memory))
	}
	if aws.ToString(in.ExecutionRoleArn) != res.ExecutionRoleARN || aws.ToString(in.TaskRoleArn) != res.TaskRoleARN {
		t.Errorf("roles %s/%s, want %s/%s", aws.ToString(in.ExecutionRoleArn), aws.ToString(in.TaskRoleArn), res.ExecutionRoleARN, res.TaskRoleARN)
	}
	if len(in.Volumes) != 1 || aws.ToString(in.Volumes[0].Name) != "cloudpipe" {
		t.Errorf("volumes = %+v, want one named cloudpipe", in.Volumes)
	}
	tags := map[string]string{}
	for _, tag := range in.Tags {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	if want := map[string]string{provision.TagManaged: "true", provision.TagWorkflow: spec.Workflow, provision.TagStage: "0"}; !maps.Equal(tags, want) {
		t.Errorf("tags = %v, want %v", tags, want)
	}
	if len(in.ContainerDefinitions) != 2 {
		t.Fatalf("%d containers, want init + algorithm", len(in.ContainerDefinitions))
	}

	initC, algo := in.ContainerDefinitions[0], in.ContainerDefinitions[1]
	// The init container's name is the one workflow validation keeps
	// algorithms from taking.
	if aws.ToString(initC.Name) != workflow.InitContainerName || aws.ToString(initC.Image) != e.opts.RunnerImage ||
		aws.ToBool(initC.Essential) || !slices.Equal(initC.Command, []string{"runner", "install", "/cloudpipe"}) {
		t.Errorf("init container = %s %s essential=%v %v", aws.ToString(initC.Name), aws.ToString(initC.Image), aws.ToBool(initC.Essential), initC.Command)
	}
	if len(initC.MountPoints) != 1 || aws.ToBool(initC.MountPoints[0].ReadOnly) || aws.ToString(initC.MountPoints[0].ContainerPath) != "/cloudpipe" {
		t.Errorf("init mount = %+v, want /cloudpipe writable", initC.MountPoints)
	}

	if aws.ToString(algo.Name) != spec.Algorithm.Name || aws.ToString(algo.Image) != spec.Algorithm.Image || !aws.ToBool(algo.Essential) {
		t.Errorf("algorithm container = %s %s essential=%v", aws.ToString(algo.Name), aws.ToString(algo.Image), aws.ToBool(algo.Essential))
	}
	if !slices.Equal(algo.EntryPoint, []string{"/cloudpipe/agent", "runner"}) {
		t.Errorf("entry point = %v", algo.EntryPoint)
	}
	// An init process as PID 1 reaps the algorithm's orphaned children and
	// forwards ECS's SIGTERM to the runner.
	if algo.LinuxParameters == nil || !aws.ToBool(algo.LinuxParameters.InitProcessEnabled) {
		t.Errorf("linuxParameters = %+v, want initProcessEnabled", algo.LinuxParameters)
	}
	if len(algo.DependsOn) != 1 || aws.ToString(algo.DependsOn[0].ContainerName) != "cloudpipe-init" || algo.DependsOn[0].Condition != ecstypes.ContainerConditionSuccess {
		t.Errorf("dependsOn = %+v, want cloudpipe-init SUCCESS", algo.DependsOn)
	}
	if len(algo.MountPoints) != 1 || !aws.ToBool(algo.MountPoints[0].ReadOnly) || aws.ToString(algo.MountPoints[0].SourceVolume) != "cloudpipe" {
		t.Errorf("algorithm mount = %+v, want cloudpipe read-only", algo.MountPoints)
	}
	if len(algo.PortMappings) != 1 || aws.ToInt32(algo.PortMappings[0].ContainerPort) != 8080 || algo.PortMappings[0].Protocol != ecstypes.TransportProtocolTcp {
		t.Errorf("ports = %+v, want 8080/tcp", algo.PortMappings)
	}
	for _, c := range in.ContainerDefinitions {
		lc := c.LogConfiguration
		if lc == nil || lc.LogDriver != ecstypes.LogDriverAwslogs || lc.Options["awslogs-group"] != "/cloudpipe/"+spec.Workflow ||
			lc.Options["awslogs-stream-prefix"] != "stage-0" || lc.Options["awslogs-region"] != spec.Region {
			t.Errorf("%s log configuration = %+v", aws.ToString(c.Name), lc)
		}
	}

	env := map[string]string{}
	for _, kv := range algo.Environment {
		env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
	}
	want := map[string]string{
		"TEST_ENV":                "blah",
		"CLOUDPIPE_QUEUE_URL":     res.QueueURL,
		"CLOUDPIPE_INPUT_BUCKET":  spec.InputBucket,
		"CLOUDPIPE_OUTPUT_BUCKET": spec.OutputBucket,
		"CLOUDPIPE_RUN_COMMAND":   spec.Algorithm.RunCommand,
		"CLOUDPIPE_INPUT_PATH":    spec.Algorithm.InputFilePath,
		"CLOUDPIPE_OUTPUT_PATH":   spec.Algorithm.OutputFilePath,
		"CLOUDPIPE_ALGORITHM":     spec.Algorithm.Name,
		"CLOUDPIPE_STATE_BUCKET":  e.opts.StateBucket,
		"CLOUDPIPE_STATE_REGION":  "us-east-1",
		"CLOUDPIPE_WORKFLOW":      spec.Workflow,
		"CLOUDPIPE_STAGE":         "0",
	}
	if !maps.Equal(env, want) {
		t.Errorf("environment\n%v\nwant\n%v", env, want)
	}
	secrets := map[string]string{}
	for _, s := range algo.Secrets {
		secrets[aws.ToString(s.Name)] = aws.ToString(s.ValueFrom)
	}
	wantSecrets := map[string]string{
		"DB_PASSWORD": testSecretARN + ":password::",
		// Under cloudpipe's names: the runner must not sign with them.
		"CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID":     testCredsARN + ":AWS_ACCESS_KEY_ID::",
		"CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY": testCredsARN + ":AWS_SECRET_ACCESS_KEY::",
	}
	if !maps.Equal(secrets, wantSecrets) {
		t.Errorf("secrets\n%v\nwant\n%v", secrets, wantSecrets)
	}
	for _, c := range in.ContainerDefinitions {
		for _, kv := range c.Environment {
			if k := aws.ToString(kv.Name); strings.HasPrefix(k, "AWS_") || strings.Contains(k, "PASSWORD") || strings.Contains(k, "SECRET_ACCESS") {
				t.Errorf("credential-like variable %s in the environment of %s", k, aws.ToString(c.Name))
			}
		}
	}
}

// TestEphemeralStorageIsARevision: a stage without ephemeral storage sends
// none (Fargate's 20 GiB); setting it registers a new revision asking for
// it, and an unchanged spec registers nothing more.
func TestEphemeralStorageIsARevision(t *testing.T) {
	e := newEnv(t)
	spec := e.spec()
	res := e.ensure(spec, provision.StageResources{})
	spec.Algorithm.EphemeralStorageGiB = 50
	res2 := e.ensure(spec, res)
	e.ensure(spec, res2)

	inputs := e.calls.Inputs("ECS.RegisterTaskDefinition")
	if len(inputs) != 2 {
		t.Fatalf("%d RegisterTaskDefinition calls, want 2 (one per storage setting)", len(inputs))
	}
	if first := inputs[0].(*ecs.RegisterTaskDefinitionInput); first.EphemeralStorage != nil {
		t.Errorf("without ephemeral_storage_gib the request asks for %+v, want nothing", *first.EphemeralStorage)
	}
	if second := inputs[1].(*ecs.RegisterTaskDefinitionInput); second.EphemeralStorage == nil || second.EphemeralStorage.SizeInGiB != 50 {
		t.Errorf("ephemeral storage = %+v, want 50 GiB", second.EphemeralStorage)
	}
	if res2.TaskDefinitionARN == res.TaskDefinitionARN {
		t.Errorf("the stage still runs revision %s after its storage changed", res.TaskDefinitionARN)
	}
}
