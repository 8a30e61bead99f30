package deploy_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// The cluster the policy names (arn:aws:ecs:*:*:cluster/cloudpipe): the
// agent's default, --cluster.
const clusterName = "cloudpipe"

// runnerImage stands for the agent's own image, which stage tasks run as
// their init container.
const runnerImage = "ghcr.io/cloudpipe/agent:test"

// lifecycle is what the agent did over a whole life cycle against kumo.
type lifecycle struct {
	account string
	calls   []call
	counts  map[string]int // by "<ServiceID>.<Operation>"
}

// runLifecycle drives the agent's AWS code the way the commands do, with
// every client counted: agent bootstrap (first without a network, which on
// kumo finds no default VPC, then with --subnets only, so the tasks'
// security group is created), then passes of agent sync/run over a
// two-stage sequence_run: plan, create, an update that also repairs three
// things changed behind the agent's back (a queue attribute, a role's trust
// policy, the function's S3 permission) and ships new function code, a
// drift repair after a log group was deleted, the run-status tally, and the
// delete after the file is removed.
func runLifecycle(t *testing.T) *lifecycle {
	t.Helper()
	ctx := t.Context()
	region := testenv.Region
	base := testenv.Kumo(t)
	// The agent acts as its role: the AWS rules authorize each of its
	// requests by deploy/agent-iam-policy.json, as IAM would.
	cfg := testenv.AsRole(base, testenv.AgentRole)
	counter := &testenv.CallCounter{}
	counter.Attach(&cfg)
	var calls callLog
	calls.attach(&cfg)

	name := testenv.UniqueName(t)
	state := "cloudpipe-state-" + name
	wf := name

	// kumo's state outlives a test (-count=2, or another test that made
	// the cluster): start without the cluster so bootstrap creates it.
	if _, err := ecs.NewFromConfig(base).DeleteCluster(ctx, &ecs.DeleteClusterInput{Cluster: aws.String(clusterName)}); err != nil && !errors.As(err, new(*ecstypes.ClusterNotFoundException)) {
		t.Fatalf("delete cluster left by an earlier test: %v", err)
	}

	// Nor with ECS's service-linked role, so bootstrap creates it (the
	// account may have it from an earlier test of this process).
	if _, err := iam.NewFromConfig(base).DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("AWSServiceRoleForECS")}); err != nil && !errors.As(err, new(*iamtypes.NoSuchEntityException)) {
		t.Fatalf("delete the service-linked role an earlier test left: %v", err)
	}

	// agent bootstrap
	boot := provision.New(cfg, provision.Options{Cluster: clusterName, S3UsePathStyle: true})
	account, err := boot.CallerAccount(ctx, region) // loadAWS: the default state bucket name
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boot.Bootstrap(ctx, region, provision.BootstrapOptions{StateBucket: state, Cluster: clusterName}); err != nil && !errors.Is(err, provision.ErrNoNetwork) {
		t.Fatalf("bootstrap without a network: %v", err)
	}
	subnets, _ := testenv.NewNetwork(t, base) // the operator's network, not the agent's calls
	deleteTasksSecurityGroups(t, base)
	if _, err := boot.Bootstrap(ctx, region, provision.BootstrapOptions{StateBucket: state, Cluster: clusterName, Subnets: subnets}); err != nil {
		t.Fatalf("bootstrap --subnets: %v", err)
	}

	// agent sync / agent run: the network comes from the state bucket.
	network, err := boot.LoadNetwork(ctx, region, state)
	if err != nil {
		t.Fatal(err)
	}
	newProvisioner := func(code string) *provision.Provisioner {
		return provision.New(cfg, provision.Options{
			Cluster: clusterName, Network: network, StateBucket: state,
			LambdaCode: provision.NewLambdaCode(lambdaZip(t, code)), RunnerImage: runnerImage,
			S3UsePathStyle: true, IAMPropagationTimeout: 2 * time.Second,
		})
	}
	inv := inventory.NewStore(cfg, state, true)
	reconciler := func(p *provision.Provisioner) *pipesync.Reconciler {
		r, err := pipesync.New(pipesync.Options{Provisioner: p, Inventory: inv, AgentID: "policy-test", Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	pass := func(what string, r *pipesync.Reconciler, repo fstest.MapFS, commit string, repair bool) {
		t.Helper()
		d := pipesync.LoadDesired(repo, commit)
		if len(d.Problems) > 0 {
			t.Fatalf("%s: test repository is invalid: %v", what, d.Problems)
		}
		reconcile := r.Reconcile
		if repair {
			reconcile = r.Repair
		}
		rep, err := reconcile(ctx, d)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, res := range rep.Results {
			if res.Err != nil {
				t.Fatalf("%s: %s %s: %v", what, res.Workflow, res.Action, res.Err)
			}
		}
	}

	// The workflow's secret is encrypted with a customer managed key, named
	// by key id: the agent finds it (DescribeSecret, then DescribeKey) to
	// grant it to the execution role.
	dataKey := customerKey(t, base, name)
	secret, err := secretsmanager.NewFromConfig(base).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(name + "-token"), SecretString: aws.String("not-a-real-token"), KmsKeyId: dataKey.KeyId})
	if err != nil {
		t.Fatal(err)
	}
	v1 := configRepo(wf, name+"-in", name+"-out", "fast", aws.ToString(secret.ARN))
	r1 := reconciler(newProvisioner("code v1"))
	if _, err := r1.Plan(ctx, pipesync.LoadDesired(v1, "c1")); err != nil { // agent plan
		t.Fatal(err)
	}
	pass("create", r1, v1, "c1", false)

	tamper(t, base, wf, account)
	// The input bucket's owner turns on SSE-KMS with the key's alias: the
	// update resolves it (DescribeKey) to grant it to the task role.
	encryptWithKey(t, base, name+"-in", "alias/"+name)
	v2 := configRepo(wf, name+"-in", name+"-out", "thorough", aws.ToString(secret.ARN))
	p2 := newProvisioner("code v2") // a new agent version ships new function code
	r2 := reconciler(p2)
	pass("update", r2, v2, "c2", false)

	deleteLogGroup(t, base, "/aws/lambda/"+provision.ResourceName(wf, 1))
	pass("drift repair", r2, v2, "c2", true)

	strandedFiles(t, base, p2, inv, wf)

	// The run-status tally (sync.Loop.UpdateRunStatuses) lists and reads
	// the run records runners write.
	key := contract.StageRunsPrefix(wf, 1) + "20240101T000000Z-test.json"
	putObject(t, base, state, key, `{"ok": true}`)
	keys, err := inv.ListRunKeys(ctx, wf, 1, "")
	if err != nil || len(keys) != 1 {
		t.Fatalf("list run keys: %v %v", keys, err)
	}
	var rec map[string]any
	if err := inv.ReadRun(ctx, keys[0], &rec); err != nil {
		t.Fatal(err)
	}
	deleteObject(t, base, state, key)

	pass("delete", r2, configRepo("", "", "", "", ""), "c3", false)

	// agent run reads its GitHub token and webhook secret from Secrets
	// Manager (cmd/agent/run.go), named under cloudpipe/.
	token, err := secretsmanager.NewFromConfig(base).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("cloudpipe/github-token-" + name), SecretString: aws.String("not-a-real-token")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: token.ARN}); err != nil {
		t.Fatalf("agent reads its token: %v", err)
	}

	return &lifecycle{account: account, calls: calls.all(), counts: counter.Ops()}
}

// strandedFiles does what the run-status tick does for a file left waiting
// in stage 0's work queue (sync/strand.go): read the stage's activity,
// start a task again, and dead-letter the file. kumo has no ListTasks, so
// the activity is read with nothing waiting, and the ECS reads are in
// declaredCalls.
func strandedFiles(t *testing.T, base aws.Config, p *provision.Provisioner, inv *inventory.Store, wf string) {
	t.Helper()
	ctx := t.Context()
	rec, err := inv.ReadRecord(ctx, wf)
	if err != nil {
		t.Fatal(err)
	}
	spec, res := rec.Stages[0].Spec, rec.Stages[0].Resources
	if a, err := p.StageActivity(ctx, spec, res); err != nil || a.Waiting != 0 {
		t.Fatalf("activity of an idle stage: %+v, %v", a, err)
	}
	if _, err := p.StartStageTask(ctx, spec, res); err != nil {
		t.Fatalf("start a stage task: %v", err)
	}
	if _, err := sqs.NewFromConfig(base).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(res.QueueURL),
		MessageBody: aws.String(`{"bucket":"in","key":"stranded.txt"}`)}); err != nil {
		t.Fatal(err)
	}
	if n, err := p.DeadLetterWaiting(ctx, spec, res, "test"); err != nil || n != 1 {
		t.Fatalf("dead-letter the waiting file: %d, %v", n, err)
	}
}

// configRepo is a config repository with a two-stage sequence_run workflow
// named wf (none when wf is empty) whose first stage gets MODE=mode, and
// both API_TOKEN from secret.
func configRepo(wf, in, out, mode, secret string) fstest.MapFS {
	algorithm := func(name, cmd string) *fstest.MapFile {
		return &fstest.MapFile{Data: fmt.Appendf(nil, `{
  "container_name": "public.ecr.aws/docker/library/alpine:3.20",
  "input_file_path": "/data/in",
  "output_file_path": "/data/out",
  "run_command": %q,
  "name": %q,
  "memory": {"minimal": 128, "suggested": 512},
  "CPU": 0.25,
  "user_specified_environment_variables": [{"name": "MODE", "required": false}, {"name": "API_TOKEN", "required": false}]
}`, cmd, name)}
	}
	repo := fstest.MapFS{
		"algorithms/sorter.json": algorithm("sorter", "sort -o $output $input"),
		"algorithms/dedup.json":  algorithm("dedup", "uniq $input $output"),
	}
	if wf != "" {
		repo["workflows/"+wf+".json"] = &fstest.MapFile{Data: fmt.Appendf(nil, `{
  "input_s3_name": %q,
  "output_s3_name": %q,
  "region": "us-east-1",
  "retain_buckets": false,
  "secrets": {"API_TOKEN": %q},
  "process": {"type": "sequence_run", "algorithms": [
    {"name": "sorter", "variables": {"MODE": %q}},
    {"name": "dedup"}]}
}`, in, out, secret, mode)}
	}
	return repo
}

// lambdaZip is a deployment package whose content (and so CodeSha256) is
// given by code.
func lambdaZip(t *testing.T, code string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "#!/bin/sh\n# %s\n", code)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tamper changes, behind the agent's back and with uncounted clients, three
// things of stage 0 that only an update pass repairs.
func tamper(t *testing.T, cfg aws.Config, wf, account string) {
	t.Helper()
	ctx := t.Context()
	name := provision.ResourceName(wf, 0)
	q := sqs.NewFromConfig(cfg)
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: u.QueueUrl,
		Attributes: map[string]string{"VisibilityTimeout": "30"}}); err != nil {
		t.Fatal(err)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	if _, err := iam.NewFromConfig(cfg).UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{
		RoleName: aws.String(name + "-task"), PolicyDocument: aws.String(trust)}); err != nil {
		t.Fatal(err)
	}
	fn := lambda.NewFromConfig(cfg)
	if _, err := fn.RemovePermission(ctx, &lambda.RemovePermissionInput{FunctionName: aws.String(name), StatementId: aws.String("cloudpipe-s3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := fn.AddPermission(ctx, &lambda.AddPermissionInput{
		FunctionName: aws.String(name), StatementId: aws.String("cloudpipe-s3"),
		Action: aws.String("lambda:InvokeFunction"), Principal: aws.String("s3.amazonaws.com"),
		SourceArn: aws.String("arn:aws:s3:::someone-elses-bucket"), SourceAccount: aws.String(account),
	}); err != nil {
		t.Fatal(err)
	}
}

// customerKey creates a customer managed KMS key with the alias
// alias/<name>, as the operator.
func customerKey(t *testing.T, cfg aws.Config, name string) *kmstypes.KeyMetadata {
	t.Helper()
	c := kms.NewFromConfig(cfg)
	out, err := c.CreateKey(t.Context(), &kms.CreateKeyInput{Description: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(t.Context(), &kms.CreateAliasInput{AliasName: aws.String("alias/" + name), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
		t.Fatal(err)
	}
	return out.KeyMetadata
}

// encryptWithKey sets a bucket's default encryption to SSE-KMS with key, as
// the operator.
func encryptWithKey(t *testing.T, cfg aws.Config, bucket, key string) {
	t.Helper()
	if _, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).PutBucketEncryption(t.Context(), &s3.PutBucketEncryptionInput{Bucket: aws.String(bucket),
		ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
			ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(key)}}}},
	}); err != nil {
		t.Fatal(err)
	}
}

// deleteTasksSecurityGroups deletes the "cloudpipe-tasks" groups an earlier
// run left in kumo, which (unlike EC2) refuses a group name already used in
// any VPC; bootstrap must create one in this test's VPC.
func deleteTasksSecurityGroups(t *testing.T, cfg aws.Config) {
	t.Helper()
	client := ec2.NewFromConfig(cfg)
	out, err := client.DescribeSecurityGroups(t.Context(), &ec2.DescribeSecurityGroupsInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range out.SecurityGroups {
		if aws.ToString(sg.GroupName) != "cloudpipe-tasks" {
			continue
		}
		if _, err := client.DeleteSecurityGroup(t.Context(), &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId}); err != nil {
			t.Fatal(err)
		}
	}
}

func deleteLogGroup(t *testing.T, cfg aws.Config, group string) {
	t.Helper()
	if _, err := cloudwatchlogs.NewFromConfig(cfg).DeleteLogGroup(t.Context(), &cloudwatchlogs.DeleteLogGroupInput{LogGroupName: aws.String(group)}); err != nil {
		t.Fatal(err)
	}
}

func putObject(t *testing.T, cfg aws.Config, bucket, key, body string) {
	t.Helper()
	if _, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

func deleteObject(t *testing.T, cfg aws.Config, bucket, key string) {
	t.Helper()
	if _, err := s3.NewFromConfig(cfg, testenv.S3PathStyle).DeleteObject(t.Context(), &s3.DeleteObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
}

// TestDeployLifecycle runs the agent's whole life cycle against kumo and
// checks what it called against the agent's policies and the image
// the Dockerfile builds.
func TestDeployLifecycle(t *testing.T) {
	lc := runLifecycle(t)

	ops := slices.Sorted(maps.Keys(lc.counts))
	t.Logf("%d AWS operations seen:", len(ops))
	for _, op := range ops {
		t.Logf("  %-50s %4d", op, lc.counts[op])
	}

	// The same life cycle as IAM decides it: every request the agent sent
	// went through the AWS rules signed as its role.
	t.Run("IAMAllowedEveryRequestAndEveryStatementWasNeeded", func(t *testing.T) {
		rep := testenv.AWSRules(t).Report()
		agent := rep.Principals[testenv.AgentRole]
		t.Logf("IAM: %d authorizations of the agent's role allowed, %d denied", agent.Authorized, len(agent.Denied))
		if agent.Authorized == 0 {
			t.Fatal("IAM authorized nothing for the agent's role: its requests did not go through the rules")
		}
		for _, d := range agent.Denied {
			t.Errorf("IAM denied the agent: %s", d)
		}
		// kumo has no ListTasks, so the stage reads of the stranded-files
		// check run only in the demo (through its local ECS):
		// cmd/demo TestDemoImageCannotBePulled uses StageTasksRead. Nor has
		// it DescribeInstanceTypes, which the local ECS answers for
		// provision TestInstanceTypeLookup, through the AWS rules.
		// kumo keeps no Batch tags, queue states or job definitions'
		// ecsProperties either: AWS Batch is played by the local ECS and
		// Batch, in front of which provision TestGPUStageOnBatch builds,
		// checks and tears down a stage on Batch as the agent's role.
		onBatch := "provision TestGPUStageOnBatch"
		elsewhere := map[string]string{
			"StageTasksRead":           "cmd/demo TestDemoImageCannotBePulled",
			"InstanceTypesDescribe":    "provision TestInstanceTypeLookup",
			"BatchRead":                onBatch,
			"BatchCapacityCreate":      onBatch,
			"BatchCapacityChange":      onBatch,
			"JobDefinitionsRegister":   onBatch,
			"JobDefinitionsDeregister": onBatch,
			"PassRolesToBatch":         onBatch,
			"StageJobsRead":            "provision TestStrandedFilesOnBatch",
			"StageJobsStart":           "provision TestStrandedFilesOnBatch",
		}
		for _, sid := range rep.Unused[testenv.AgentRole] {
			if where, ok := elsewhere[sid]; ok {
				t.Logf("statement %s allowed nothing here; %s uses it", sid, where)
				continue
			}
			t.Errorf("statement %s of the agent's policies allowed no request of the life cycle: remove it, or add the call", sid)
		}
	})

	t.Run("DockerfileServesStageTasks", func(t *testing.T) {
		df := readDockerfile(t)
		var td *ecs.RegisterTaskDefinitionInput
		for _, c := range lc.calls {
			if in, ok := c.Input.(*ecs.RegisterTaskDefinitionInput); ok {
				td = in
				break
			}
		}
		if td == nil {
			t.Fatal("the lifecycle registered no task definition")
		}
		checkStageTaskUsesImage(t, td, df)
	})
}
