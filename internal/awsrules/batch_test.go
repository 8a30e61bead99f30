package awsrules_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

// batchARN is a Batch ARN in kumo's account and us-east-1.
func batchARN(resource string) string {
	return "arn:aws:batch:us-east-1:" + kumoAccount + ":" + resource
}

// wantDenied fails t unless err is IAM's denial of action on resource,
// as Batch answers it (403 AccessDeniedException).
func wantDenied(t *testing.T, err error, action, resource string) {
	t.Helper()
	wantRefused(t, err, http.StatusForbidden, "AccessDeniedException", "")
	if err != nil && !strings.Contains(err.Error(), "is not authorized to perform: "+action+" on resource: "+resource+" ") {
		t.Errorf("denial %v does not name %s on %s", err, action, resource)
	}
}

// registerJobDefinition registers a job definition of one container with
// the execution and task roles given (none for "").
func registerJobDefinition(t *testing.T, client *batch.Client, name string, tags map[string]string, exec, taskRole string) error {
	t.Helper()
	task := batchtypes.EcsTaskProperties{Containers: []batchtypes.TaskContainerProperties{{Name: aws.String("algo"), Image: aws.String("alpine")}}}
	if exec != "" {
		task.ExecutionRoleArn = aws.String(exec)
	}
	if taskRole != "" {
		task.TaskRoleArn = aws.String(taskRole)
	}
	_, err := client.RegisterJobDefinition(t.Context(), &batch.RegisterJobDefinitionInput{
		JobDefinitionName: aws.String(name), Type: batchtypes.JobDefinitionTypeContainer, Tags: tags,
		EcsProperties: &batchtypes.EcsProperties{TaskProperties: []batchtypes.EcsTaskProperties{task}},
	})
	return err
}

// TestBatchSubmitJobIsAuthorizedOnItsQueueAndDefinition: SubmitJob needs
// batch:SubmitJob on the job queue and on the job definition's revision (a
// bare name is its newest ACTIVE revision, so a policy naming the
// definition without one does not match), tagging the new job needs
// batch:TagResource, and a job's tags decide aws:ResourceTag conditions.
func TestBatchSubmitJobIsAuthorizedOnItsQueueAndDefinition(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	queue, def := name+"-q", name+"-d"
	_, operator, tester := iamProxy(t, doc(
		`{"Sid":"Submit","Effect":"Allow","Action":"batch:SubmitJob","Resource":["`+batchARN("job-queue/"+queue)+`","`+batchARN("job-definition/"+def+":*")+`"]}`,
		`{"Sid":"NoRevision","Effect":"Allow","Action":"batch:SubmitJob","Resource":"`+batchARN("job-definition/"+name+"-bare")+`"}`,
		`{"Sid":"Pinned","Effect":"Allow","Action":"batch:SubmitJob","Resource":"`+batchARN("job-definition/"+name+"-pinned:1")+`"}`,
		`{"Sid":"Stop","Effect":"Allow","Action":"batch:TerminateJob","Resource":"`+batchARN("job/*")+`",`+
			`"Condition":{"StringEquals":{"aws:ResourceTag/cloudpipe:managed":"true"}}}`))
	admin := batch.NewFromConfig(operator)
	for _, d := range []string{def, name + "-other", name + "-bare", name + "-pinned", name + "-pinned"} {
		if err := registerJobDefinition(t, admin, d, nil, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	client := batch.NewFromConfig(tester)
	submit := func(queue, def string, tags map[string]string) (*batch.SubmitJobOutput, error) {
		return client.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String(name), JobQueue: aws.String(queue),
			JobDefinition: aws.String(def), Tags: tags})
	}
	if _, err := submit(queue, def, nil); err != nil {
		t.Fatalf("submit to the queue and definition the policy names: %v", err)
	}
	if _, err := submit(batchARN("job-queue/"+queue), batchARN("job-definition/"+def+":1"), nil); err != nil {
		t.Fatalf("submit by ARN: %v", err)
	}
	_, err := submit(queue+"-other", def, nil)
	wantDenied(t, err, "batch:SubmitJob", batchARN("job-queue/"+queue+"-other"))
	_, err = submit(queue, name+"-other", nil)
	wantDenied(t, err, "batch:SubmitJob", batchARN("job-definition/"+name+"-other:1"))
	_, err = submit(queue, name+"-bare", nil)
	wantDenied(t, err, "batch:SubmitJob", batchARN("job-definition/"+name+"-bare:1"))
	// A revision named is the one authorized; a bare name is the newest.
	if _, err := submit(queue, name+"-pinned:1", nil); err != nil {
		t.Errorf("submit the revision the policy names: %v", err)
	}
	_, err = submit(queue, name+"-pinned", nil)
	wantDenied(t, err, "batch:SubmitJob", batchARN("job-definition/"+name+"-pinned:2"))
	_, err = submit(queue, def, map[string]string{"cloudpipe:managed": "true"})
	wantDenied(t, err, "batch:TagResource", batchARN("job/*"))

	// The operator's jobs, one tagged: only that one may be terminated.
	tagged, err := admin.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String(name), JobQueue: aws.String(queue),
		JobDefinition: aws.String(def), Tags: map[string]string{"cloudpipe:managed": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	untagged, err := admin.SubmitJob(ctx, &batch.SubmitJobInput{JobName: aws.String(name), JobQueue: aws.String(queue), JobDefinition: aws.String(def)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.TerminateJob(ctx, &batch.TerminateJobInput{JobId: tagged.JobId, Reason: aws.String("test")}); err != nil {
		t.Errorf("terminate the tagged job: %v", err)
	}
	_, err = client.TerminateJob(ctx, &batch.TerminateJobInput{JobId: untagged.JobId, Reason: aws.String("test")})
	wantDenied(t, err, "batch:TerminateJob", batchARN("job/"+aws.ToString(untagged.JobId)))
}

// TestBatchJobDefinitionPassesItsRoles: registering a job definition passes
// its execution and task roles to Batch (iam:PassRole, for
// batch.amazonaws.com), and tagging it needs batch:TagResource.
func TestBatchJobDefinitionPassesItsRoles(t *testing.T) {
	name := testenv.UniqueName(t)
	exec := "arn:aws:iam::" + kumoAccount + ":role/" + name + "-exec"
	task := "arn:aws:iam::" + kumoAccount + ":role/" + name + "-task"
	_, _, tester := iamProxy(t, doc(
		`{"Sid":"Register","Effect":"Allow","Action":"batch:RegisterJobDefinition","Resource":"`+batchARN("job-definition/"+name)+`"}`,
		`{"Sid":"Pass","Effect":"Allow","Action":"iam:PassRole","Resource":"`+task+`",`+
			`"Condition":{"StringEquals":{"iam:PassedToService":"batch.amazonaws.com"}}}`))
	client := batch.NewFromConfig(tester)
	if err := registerJobDefinition(t, client, name, nil, "", task); err != nil {
		t.Fatalf("register with the task role the policy may pass: %v", err)
	}
	wantDenied(t, registerJobDefinition(t, client, name, nil, exec, task), "iam:PassRole", exec)
	wantDenied(t, registerJobDefinition(t, client, name, map[string]string{"cloudpipe:managed": "true"}, "", task),
		"batch:TagResource", batchARN("job-definition/"+name+":*"))
}

// TestBatchComputeEnvironmentPassesItsInstanceRole: a compute environment
// passes its service role and the role in its instance profile to Batch.
func TestBatchComputeEnvironmentPassesItsInstanceRole(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	profile := testenv.InstanceProfile(t, name)
	instanceRole := "arn:aws:iam::" + kumoAccount + ":role/" + profile
	create := func(cfg aws.Config) error {
		_, err := batch.NewFromConfig(cfg).CreateComputeEnvironment(ctx, &batch.CreateComputeEnvironmentInput{
			ComputeEnvironmentName: aws.String(name), Type: batchtypes.CETypeManaged,
			ComputeResources: &batchtypes.ComputeResource{Type: batchtypes.CRTypeEc2, MaxvCpus: aws.Int32(4),
				InstanceTypes: []string{"g4dn.xlarge"}, Subnets: []string{"subnet-1"},
				InstanceRole: aws.String("arn:aws:iam::" + kumoAccount + ":instance-profile/" + profile)},
		})
		return err
	}
	statement := `{"Sid":"Create","Effect":"Allow","Action":"batch:CreateComputeEnvironment","Resource":"` + batchARN("compute-environment/"+name) + `"}`
	_, _, denied := iamProxy(t, doc(statement))
	wantDenied(t, create(denied), "iam:PassRole", instanceRole)
	_, _, allowed := iamProxy(t, doc(statement,
		`{"Sid":"Pass","Effect":"Allow","Action":"iam:PassRole","Resource":"`+instanceRole+`"}`))
	if err := create(allowed); err != nil {
		t.Errorf("create with the instance role the policy may pass: %v", err)
	}
}

// TestBatchJobQueueIsAuthorizedOnItsEnvironments: creating a job queue is
// authorized on the queue and on each compute environment it names, once
// each.
func TestBatchJobQueueIsAuthorizedOnItsEnvironments(t *testing.T) {
	name := testenv.UniqueName(t)
	p, _, tester := iamProxy(t, doc(
		`{"Sid":"Create","Effect":"Allow","Action":"batch:CreateJobQueue","Resource":["`+
			batchARN("job-queue/"+name)+`","`+batchARN("compute-environment/"+name+"-1")+`"]}`))
	create := func(envs ...string) error {
		var order []batchtypes.ComputeEnvironmentOrder
		for i, e := range envs {
			order = append(order, batchtypes.ComputeEnvironmentOrder{ComputeEnvironment: aws.String(e), Order: aws.Int32(int32(i + 1))})
		}
		_, err := batch.NewFromConfig(tester).CreateJobQueue(t.Context(), &batch.CreateJobQueueInput{
			JobQueueName: aws.String(name), Priority: aws.Int32(1), ComputeEnvironmentOrder: order})
		return err
	}
	wantDenied(t, create(name+"-1", batchARN("compute-environment/"+name+"-2")), "batch:CreateJobQueue", batchARN("compute-environment/"+name+"-2"))
	if err := create(name + "-1"); err != nil {
		t.Fatalf("create with the environment the policy names: %v", err)
	}
	if got := p.Report().Principals["tester"].Authorized; got != 4 {
		t.Errorf("%d authorizations allowed, want 4: the queue and the first environment, twice", got)
	}
}

// TestInstanceProfilesAndPublicParameters: what bootstrap will need for
// Batch's instances: an instance profile is authorized as itself, adding a
// role to it passes the role (iam:PassRole), and an AWS public parameter
// (the ECS GPU AMI's ID, which tests put into kumo, which has none) is
// authorized on its account-less ARN, a parameter of the account on its
// own.
func TestInstanceProfilesAndPublicParameters(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	role := "arn:aws:iam::" + kumoAccount + ":role/" + name
	amiParam := "/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/recommended/image_id"
	_, operator, tester := iamProxy(t, doc(
		`{"Sid":"Profile","Effect":"Allow","Action":["iam:CreateInstanceProfile","iam:AddRoleToInstanceProfile","iam:GetInstanceProfile"],`+
			`"Resource":"arn:aws:iam::`+kumoAccount+`:instance-profile/`+name+`"}`,
		`{"Sid":"Pass","Effect":"Allow","Action":"iam:PassRole","Resource":"`+role+`",`+
			`"Condition":{"StringEquals":{"iam:PassedToService":"ec2.amazonaws.com"}}}`,
		`{"Sid":"AMI","Effect":"Allow","Action":"ssm:GetParameter","Resource":"arn:aws:ssm:*::parameter/aws/service/ecs/*"}`))
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	admin := iam.NewFromConfig(operator)
	for _, r := range []string{name, name + "-other"} {
		if _, err := admin.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(r), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
			t.Fatal(err)
		}
	}
	client := iam.NewFromConfig(tester)
	if _, err := client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil {
		t.Fatalf("create the instance profile the policy names: %v", err)
	}
	_, err := client.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name + "-other")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	_, err = client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String(name + "-other")})
	wantRefused(t, err, http.StatusForbidden, "AccessDenied", "")
	if err != nil && !strings.Contains(err.Error(), "iam:PassRole on resource: "+role+"-other") {
		t.Errorf("denial %v does not name iam:PassRole on the role", err)
	}
	if _, err := client.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String(name)}); err != nil {
		t.Fatalf("add the role the policy may pass: %v", err)
	}
	if out, err := client.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil ||
		len(out.InstanceProfile.Roles) != 1 || aws.ToString(out.InstanceProfile.Roles[0].Arn) != role {
		t.Errorf("GetInstanceProfile: %+v %v, want the role, in the account", out, err)
	}

	if _, err := ssm.NewFromConfig(operator).PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(amiParam),
		Value: aws.String("ami-0123456789abcdef0"), Type: ssmtypes.ParameterTypeString, Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if out, err := ssm.NewFromConfig(tester).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(amiParam)}); err != nil ||
		aws.ToString(out.Parameter.Value) != "ami-0123456789abcdef0" {
		t.Errorf("the GPU AMI's public parameter: %+v %v", out, err)
	}
	_, err = ssm.NewFromConfig(tester).GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/" + name)})
	wantRefused(t, err, http.StatusBadRequest, "AccessDeniedException", "")
	if err != nil && !strings.Contains(err.Error(), "ssm:GetParameter on resource: arn:aws:ssm:us-east-1:"+kumoAccount+":parameter/"+name) {
		t.Errorf("denial %v does not name the account's parameter", err)
	}
}

// TestBatchRolesArePassedToBatch: the caller of RegisterJobDefinition and
// CreateComputeEnvironment passes the job's roles and the instance
// profile's role to Batch (iam:PassedToService batch.amazonaws.com), as
// Batch's guide shows for a job role; Batch's service-linked role then
// passes them on to ECS and EC2 with its own permissions
// (BatchServiceRolePolicy allows iam:PassRole to ec2.amazonaws.com,
// ecs.amazonaws.com and ecs-tasks.amazonaws.com). So a caller allowed to
// pass the roles only to where they end up, ECS tasks or EC2, as ECS's
// RegisterTaskDefinition or an instance profile would need, is refused.
// https://docs.aws.amazon.com/batch/latest/userguide/iam-example-job-def.html
// https://docs.aws.amazon.com/aws-managed-policy/latest/reference/BatchServiceRolePolicy.html
func TestBatchRolesArePassedToBatch(t *testing.T) {
	ctx := t.Context()
	name := testenv.UniqueName(t)
	task := "arn:aws:iam::" + kumoAccount + ":role/" + name + "-task"
	profile := testenv.InstanceProfile(t, name)
	instanceRole := "arn:aws:iam::" + kumoAccount + ":role/" + profile
	allow := `{"Sid":"Batch","Effect":"Allow","Action":["batch:RegisterJobDefinition","batch:CreateComputeEnvironment"],"Resource":"*"}`
	passTo := func(service string) string {
		return `{"Sid":"Pass","Effect":"Allow","Action":"iam:PassRole","Resource":["` + task + `","` + instanceRole + `"],` +
			`"Condition":{"StringEquals":{"iam:PassedToService":"` + service + `"}}}`
	}
	for i, tc := range []struct {
		service string
		allowed bool
	}{
		{"batch.amazonaws.com", true},
		{"ecs-tasks.amazonaws.com", false},
		{"ec2.amazonaws.com", false},
		{"ecs.amazonaws.com", false},
	} {
		_, _, tester := iamProxy(t, doc(allow, passTo(tc.service)))
		client := batch.NewFromConfig(tester)
		errDef := registerJobDefinition(t, client, name, nil, "", task)
		_, errCE := client.CreateComputeEnvironment(ctx, &batch.CreateComputeEnvironmentInput{
			ComputeEnvironmentName: aws.String(name + "-" + strconv.Itoa(i)), Type: batchtypes.CETypeManaged,
			ComputeResources: &batchtypes.ComputeResource{Type: batchtypes.CRTypeEc2, MaxvCpus: aws.Int32(4),
				InstanceTypes: []string{"g4dn.xlarge"}, Subnets: []string{"subnet-1"},
				InstanceRole: aws.String("arn:aws:iam::" + kumoAccount + ":instance-profile/" + profile)},
		})
		if tc.allowed {
			if errDef != nil || errCE != nil {
				t.Errorf("roles passed to %s: register %v, create compute environment %v; want both allowed", tc.service, errDef, errCE)
			}
			continue
		}
		wantDenied(t, errDef, "iam:PassRole", task)
		wantDenied(t, errCE, "iam:PassRole", instanceRole)
	}
}
