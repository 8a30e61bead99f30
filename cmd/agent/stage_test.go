package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// deployedStage is one single_run stage deployed as the agent deploys it:
// bootstrap and EnsureStage signed as the agent's role, so its roles hold
// the policies provision writes for them, and the stage function and the
// runner a test starts can act as those roles, as they would in Lambda and
// ECS.
type deployedStage struct {
	name  string // the workflow
	state string // the state bucket
	spec  provision.StageSpec
	res   provision.StageResources
	// functionEnv is the stage function's environment, as the agent
	// configured it; runnerEnv that of the algorithm container (the
	// runner's), as the agent registered it.
	functionEnv map[string]string
	runnerEnv   map[string]string
	// taskRoleARN is the task definition's TaskRoleArn: the runner's
	// principal. The stage function's is res.LambdaRoleARN.
	taskRoleARN string
}

// deployStage deploys stage 0 of workflow name, a sort-lines single_run
// reading name-in and writing name-out; buckets the test made before are
// adopted as they are. The network is the operator's (testenv.NewNetwork);
// the rest is the agent's. Uploads made before deployStage reach no stage
// function: kumo would try to deliver their S3 events, and the tests invoke
// the function themselves.
func deployStage(t *testing.T, name string) *deployedStage {
	t.Helper()
	ctx := t.Context()
	subnets, sgs := testenv.NewNetwork(t, testenv.Kumo(t))
	awsRules(t) // the agent's requests are checked
	agent := testenv.Agent(t)
	calls := &testenv.CallCounter{}
	calls.Attach(&agent)
	// kumo stores the function's code but never runs it.
	bootstrap := filepath.Join(t.TempDir(), "bootstrap")
	if err := os.WriteFile(bootstrap, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	zip, err := provision.LambdaZipFromFile(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployedStage{name: name, state: "cloudpipe-state-" + name} // as the agent's policy scopes it
	p := provision.New(agent, provision.Options{
		Cluster:               provision.DefaultCluster,
		Network:               provision.Network{Subnets: subnets, SecurityGroups: sgs},
		StateBucket:           d.state,
		LambdaCode:            provision.NewLambdaCode(zip),
		LambdaArchitecture:    "x86_64",
		RunnerImage:           "ghcr.io/cloudpipe/agent:test",
		S3UsePathStyle:        true,
		IAMPropagationTimeout: 5 * time.Second,
	})
	if _, err := p.Bootstrap(ctx, testenv.Region, provision.BootstrapOptions{
		StateBucket: d.state, Subnets: subnets, SecurityGroups: sgs}); err != nil {
		t.Fatalf("bootstrap as the agent: %v", err)
	}
	d.spec = provision.StageSpec{
		Workflow: name, Stage: 0, Region: testenv.Region, StateBucket: d.state,
		InputBucket: name + "-in", OutputBucket: name + "-out", RetainBuckets: true,
		Algorithm: provision.AlgorithmSpec{Name: "sort-lines", Image: "docker.io/library/alpine:3.20",
			RunCommand: "sort -o $output $input", InputFilePath: "/data/in/", OutputFilePath: "/data/out/",
			CPU: 0.25, MemoryMiB: 512},
	}
	if d.res, err = p.EnsureStage(ctx, d.spec, provision.StageResources{}); err != nil {
		t.Fatalf("deploy the stage as the agent: %v", err)
	}

	conf, err := awslambda.NewFromConfig(testenv.Kumo(t)).GetFunctionConfiguration(ctx,
		&awslambda.GetFunctionConfigurationInput{FunctionName: aws.String(provision.ResourceName(name, 0))})
	if err != nil || conf.Environment == nil {
		t.Fatalf("stage function configuration: %v", err)
	}
	d.functionEnv = conf.Environment.Variables
	// kumo has no DescribeTaskDefinition: the request is the record.
	td, ok := calls.LastInput("ECS.RegisterTaskDefinition").(*ecs.RegisterTaskDefinitionInput)
	if !ok {
		t.Fatalf("the agent registered no task definition")
	}
	d.taskRoleARN = aws.ToString(td.TaskRoleArn)
	for _, c := range td.ContainerDefinitions {
		if aws.ToString(c.Name) != d.spec.Algorithm.Name {
			continue
		}
		d.runnerEnv = map[string]string{}
		for _, kv := range c.Environment {
			d.runnerEnv[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
	}
	if d.runnerEnv == nil || d.taskRoleARN == "" || d.res.LambdaRoleARN == "" {
		t.Fatalf("task definition %s: no %s container or no roles", aws.ToString(td.Family), d.spec.Algorithm.Name)
	}
	return d
}

// roleName is the name of the role roleARN names.
func roleName(roleARN string) string { return roleARN[strings.LastIndex(roleARN, "/")+1:] }
