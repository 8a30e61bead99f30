package provision_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/cloudpipe/cloudpipe/internal/awsrules"
	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

const otherRegion = "eu-west-1"

// regionEnv is a provisioner of an agent in us-east-1 talking to kumo
// through the awsrules proxy, which keeps resources in the region that
// created them, with the clients to look in each region through it.
type regionEnv struct {
	name       string
	home, away aws.Config // us-east-1 and eu-west-1, both through the proxy
	opts       provision.Options
	p          *provision.Provisioner
}

func newRegionEnv(t *testing.T) *regionEnv {
	t.Helper()
	proxy, err := awsrules.New(testenv.KumoURL(t), awsrules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	e := &regionEnv{name: testenv.UniqueName(t), home: testenv.KumoConfig(proxy.URL())}
	e.away = e.home.Copy()
	e.away.Region = otherRegion
	subnets, sgs := testenv.NewNetwork(t, e.home)
	e.opts = provision.Options{
		Cluster:               e.name,
		Network:               provision.Network{Subnets: subnets, SecurityGroups: sgs},
		StateBucket:           e.name + "-state",
		LambdaCode:            provision.NewLambdaCode(tinyZip(t)),
		LambdaArchitecture:    "x86_64",
		RunnerImage:           "ghcr.io/cloudpipe/agent:test",
		S3UsePathStyle:        true,
		IAMPropagationTimeout: 5 * time.Second,
	}
	e.p = provision.New(e.home, e.opts)
	return e
}

// awayStage is a single_run stage of a workflow in eu-west-1.
func (e *regionEnv) awayStage() provision.StageSpec {
	return provision.StageSpec{
		Workflow: e.name, Stage: 0, Region: otherRegion, AccountID: kumoAccount,
		InputBucket: e.name + "-in", OutputBucket: e.name + "-out",
		Algorithm: provision.AlgorithmSpec{
			Name: "sort-lines", Image: "public.ecr.aws/docker/library/busybox:latest",
			RunCommand: "sort -o $output $input", InputFilePath: "/data/in/", OutputFilePath: "/data/out/",
			CPU: 1, MemoryMiB: 512,
		},
	}
}

// errCode is the AWS error code of err, or "".
func errCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func TestWorkflowInAnotherRegionDeploysThereAndKeepsTheStateBucketHome(t *testing.T) {
	ctx := t.Context()
	e := newRegionEnv(t)
	awaySubnets, awaySGs := testenv.NewNetwork(t, e.away)
	if _, err := e.p.Bootstrap(ctx, testenv.Region, provision.BootstrapOptions{
		StateBucket: e.opts.StateBucket, Subnets: e.opts.Network.Subnets, SecurityGroups: e.opts.Network.SecurityGroups,
	}); err != nil {
		t.Fatalf("bootstrap %s: %v", testenv.Region, err)
	}

	// Before eu-west-1 is prepared: kumo has no default VPC, so the plan
	// and the first deploy name the command that prepares it.
	line, err := e.p.PlanRegion(ctx, otherRegion)
	if err != nil {
		t.Fatal(err)
	}
	if want := "region eu-west-1: no stored network and no default VPC: run 'agent bootstrap --region eu-west-1 --subnets SUBNETS --security-groups GROUPS' first"; line != want {
		t.Errorf("PlanRegion before = %q, want %q", line, want)
	}
	_, err = e.p.EnsureStage(ctx, e.awayStage(), provision.StageResources{})
	if !errors.Is(err, provision.ErrNoNetwork) || !strings.Contains(err.Error(), "agent bootstrap --region eu-west-1") {
		t.Fatalf("EnsureStage before the region is prepared: %v, want ErrNoNetwork naming agent bootstrap --region", err)
	}

	// The network is stored but the cluster gone: the plan says the pass
	// would make it.
	res, err := e.p.Bootstrap(ctx, otherRegion, provision.BootstrapOptions{
		StateBucket: e.opts.StateBucket, Subnets: awaySubnets, SecurityGroups: awaySGs,
	})
	if err != nil {
		t.Fatalf("bootstrap --region %s: %v", otherRegion, err)
	}
	if !strings.HasPrefix(res.ClusterARN, "arn:aws:ecs:"+otherRegion+":") {
		t.Errorf("cluster ARN %q, want it in %s", res.ClusterARN, otherRegion)
	}
	awayECS := ecs.NewFromConfig(e.away)
	if _, err := awayECS.DeleteCluster(ctx, &ecs.DeleteClusterInput{Cluster: &e.name}); err != nil {
		t.Fatal(err)
	}
	if line, err := e.p.PlanRegion(ctx, otherRegion); err != nil || line != "region eu-west-1: would create cluster "+e.name {
		t.Errorf("PlanRegion without the cluster = %q, %v; want it to create the cluster", line, err)
	}

	// A fresh agent deploys the stage: the cluster is made again on first
	// use, and the stored network is used.
	calls := &testenv.CallCounter{}
	pcfg := e.home.Copy()
	calls.Attach(&pcfg)
	p := provision.New(pcfg, e.opts)
	ids, err := p.EnsureStage(ctx, e.awayStage(), provision.StageResources{})
	if err != nil {
		t.Fatalf("EnsureStage in %s: %v", otherRegion, err)
	}
	if line, err := p.PlanRegion(ctx, otherRegion); err != nil || line != "" {
		t.Errorf("PlanRegion once prepared = %q, %v; want nothing to do", line, err)
	}

	// Everything of the stage is in eu-west-1, as the proxy remembers it:
	// found there, not in us-east-1.
	homeS3, awayS3 := s3.NewFromConfig(e.home, testenv.S3PathStyle), s3.NewFromConfig(e.away, testenv.S3PathStyle)
	for _, b := range []string{ids.InputBucket, ids.OutputBucket} {
		if _, err := awayS3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b}); err != nil {
			t.Errorf("bucket %s in %s: %v", b, otherRegion, err)
		}
		if _, err := homeS3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b}); err == nil {
			t.Errorf("bucket %s is in %s too, want only %s", b, testenv.Region, otherRegion)
		}
	}
	queue := provision.ResourceName(e.name, 0)
	if _, err := sqs.NewFromConfig(e.away).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &queue}); err != nil {
		t.Errorf("queue %s in %s: %v", queue, otherRegion, err)
	}
	if _, err := sqs.NewFromConfig(e.home).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &queue}); errCode(err) != "AWS.SimpleQueueService.NonExistentQueue" {
		t.Errorf("queue %s in %s: %v, want NonExistentQueue", queue, testenv.Region, err)
	}
	for _, arn := range []string{ids.QueueARN, ids.FunctionARN, ids.TaskDefinitionARN} {
		if !strings.Contains(arn, ":"+otherRegion+":") {
			t.Errorf("ARN %q, want it to name %s", arn, otherRegion)
		}
	}

	// Lambda takes code from S3 only in the function's region, and the
	// state bucket is in us-east-1: the function of eu-west-1 got the
	// package in its request.
	create, _ := calls.LastInput("Lambda.CreateFunction").(*lambda.CreateFunctionInput)
	if create == nil || len(create.Code.ZipFile) == 0 || create.Code.S3Bucket != nil {
		t.Errorf("CreateFunction in %s: code %+v, want the zip in the request", otherRegion, create)
	}

	// The state bucket stays in us-east-1.
	if _, err := homeS3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &e.opts.StateBucket}); err != nil {
		t.Errorf("state bucket in %s: %v", testenv.Region, err)
	}
	if _, err := awayS3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &e.opts.StateBucket}); err == nil {
		t.Errorf("state bucket found in %s, want it only in %s", otherRegion, testenv.Region)
	}

	// The stage function starts tasks in eu-west-1's cluster and network;
	// the runner is told where the state bucket is.
	fn, err := lambda.NewFromConfig(e.away).GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: &ids.FunctionARN})
	if err != nil {
		t.Fatal(err)
	}
	fenv, err := contract.ReadFunctionEnv(func(k string) string { return fn.Environment.Variables[k] })
	if err != nil {
		t.Fatal(err)
	}
	if fenv.Cluster != e.name || strings.Join(fenv.Subnets, ",") != strings.Join(awaySubnets, ",") ||
		strings.Join(fenv.SecurityGroups, ",") != strings.Join(awaySGs, ",") {
		t.Errorf("function env cluster %s, subnets %v, groups %v; want %s, %v, %v", fenv.Cluster, fenv.Subnets, fenv.SecurityGroups, e.name, awaySubnets, awaySGs)
	}
	td, ok := calls.LastInput("ECS.RegisterTaskDefinition").(*ecs.RegisterTaskDefinitionInput)
	if !ok {
		t.Fatal("no RegisterTaskDefinition")
	}
	var renv contract.RunnerEnv
	for _, c := range td.ContainerDefinitions {
		if aws.ToString(c.Name) != "sort-lines" {
			continue
		}
		vars := map[string]string{}
		for _, kv := range c.Environment {
			vars[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
		}
		renv, _ = contract.ReadRunnerEnv(func(k string) string { return vars[k] })
	}
	if renv.StateBucket != e.opts.StateBucket || renv.StateRegion != testenv.Region {
		t.Errorf("runner env state bucket %q in %q, want %q in %q", renv.StateBucket, renv.StateRegion, e.opts.StateBucket, testenv.Region)
	}

	// What the stage function does with that environment, AWS accepts: a
	// task in eu-west-1's cluster and network.
	if _, err := awayECS.RunTask(ctx, &ecs.RunTaskInput{
		Cluster: &fenv.Cluster, TaskDefinition: &fenv.TaskDefinition, LaunchType: "FARGATE",
		NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{
			Subnets: fenv.Subnets, SecurityGroups: fenv.SecurityGroups,
		}},
	}); err != nil {
		t.Errorf("RunTask as the stage function would: %v", err)
	}
}
