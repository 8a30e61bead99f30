package deploy_test

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/cloudpipe/cloudpipe/deploy"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/provision"
)

// TestPolicyDocument checks what AWS checks when the policy is created: a
// customer managed policy holds at most 6,144 characters, white space not
// counted.
func TestPolicyDocument(t *testing.T) {
	sids := map[string]string{} // Sid -> file
	for _, file := range append(slices.Clone(deploy.AgentPolicyFiles), "agent-execution-policy.json") {
		for _, s := range loadPolicy(t, file).Statement {
			if other, ok := sids[s.Sid]; ok {
				t.Errorf("Sid %s is in both %s and %s: the AWS rules report unused statements by Sid", s.Sid, other, file)
			}
			sids[s.Sid] = file
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		n := len(bytes.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, data))
		t.Logf("%s: %d characters without white space (limit 6144)", file, n)
		if n > 6144 {
			t.Errorf("%s has %d characters without white space; IAM accepts at most 6144 in a managed policy", file, n)
		}
	}
}

// TestPolicyRefusesForeignResources checks that the policy's scoping does
// its job: requests for resources cloudpipe did not create, or on behalf of
// other services, are denied even though the agent's own are allowed.
func TestPolicyRefusesForeignResources(t *testing.T) {
	managed := "aws:ResourceTag/" + provision.TagManaged
	requestTag := "aws:RequestTag/" + provision.TagManaged
	acct := testenv.Account
	key := "arn:aws:kms:us-east-1:" + acct + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
	tests := []struct {
		name string
		r    authzRequest
		want bool
	}{
		{"delete our role", authzRequest{Action: "iam:DeleteRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-task", Context: map[string]string{managed: "true"}}, true},
		{"delete an untagged role with our name", authzRequest{Action: "iam:DeleteRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-task"}, false},
		{"write a policy on someone else's role", authzRequest{Action: "iam:PutRolePolicy", Resource: "arn:aws:iam::" + acct + ":role/admin", Context: map[string]string{managed: "true"}}, false},
		{"create an untagged role", authzRequest{Action: "iam:CreateRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-task"}, false},
		{"create a role outside cp-*", authzRequest{Action: "iam:CreateRole", Resource: "arn:aws:iam::" + acct + ":role/admin", Context: map[string]string{requestTag: "true"}}, false},
		{"pass a task role to ECS", authzRequest{Action: "iam:PassRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-task", Context: map[string]string{"iam:PassedToService": "ecs-tasks.amazonaws.com"}}, true},
		{"pass a task role to EC2", authzRequest{Action: "iam:PassRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-task", Context: map[string]string{"iam:PassedToService": "ec2.amazonaws.com"}}, false},
		{"pass a task role to Lambda", authzRequest{Action: "iam:PassRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-task", Context: map[string]string{"iam:PassedToService": "lambda.amazonaws.com"}}, false},
		{"pass a Lambda role to Lambda", authzRequest{Action: "iam:PassRole", Resource: "arn:aws:iam::" + acct + ":role/cp-wf-0-lambda", Context: map[string]string{"iam:PassedToService": "lambda.amazonaws.com"}}, true},
		{"let S3 invoke our function", authzRequest{Action: "lambda:AddPermission", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:cp-wf-0", Context: map[string]string{managed: "true", "lambda:Principal": "s3.amazonaws.com"}}, true},
		{"let anyone invoke our function", authzRequest{Action: "lambda:AddPermission", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:cp-wf-0", Context: map[string]string{managed: "true", "lambda:Principal": "*"}}, false},
		{"update someone else's function", authzRequest{Action: "lambda:UpdateFunctionCode", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:billing", Context: map[string]string{managed: "true"}}, false},
		{"send our function's failed events to its DLQ", authzRequest{Action: "lambda:PutFunctionEventInvokeConfig", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:cp-wf-0", Context: map[string]string{managed: "true"}}, true},
		{"redirect the failed events of an untagged function with our name", authzRequest{Action: "lambda:PutFunctionEventInvokeConfig", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:cp-wf-0"}, false},
		{"redirect someone else's failed events", authzRequest{Action: "lambda:PutFunctionEventInvokeConfig", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:billing", Context: map[string]string{managed: "true"}}, false},
		{"remove our function's failure destination", authzRequest{Action: "lambda:DeleteFunctionEventInvokeConfig", Resource: "arn:aws:lambda:us-east-1:" + acct + ":function:cp-wf-0", Context: map[string]string{managed: "true"}}, false},
		{"delete an untagged queue with our name", authzRequest{Action: "sqs:DeleteQueue", Resource: "arn:aws:sqs:us-east-1:" + acct + ":cp-wf-0"}, false},
		{"register an untagged task definition", authzRequest{Action: "ecs:RegisterTaskDefinition", Resource: "*"}, false},
		{"delete the state bucket", authzRequest{Action: "s3:DeleteBucket", Resource: "arn:aws:s3:::cloudpipe-state-" + acct + "-us-east-1"}, false},
		{"store the stage functions' code", authzRequest{Action: "s3:PutObject", Resource: "arn:aws:s3:::cloudpipe-state-" + acct + "-us-east-1/lambda/0a1b.zip"}, true},
		{"read the stage functions' code", authzRequest{Action: "s3:GetObject", Resource: "arn:aws:s3:::cloudpipe-state-" + acct + "-us-east-1/lambda/0a1b.zip"}, true},
		{"write a run record", authzRequest{Action: "s3:PutObject", Resource: "arn:aws:s3:::cloudpipe-state-" + acct + "-us-east-1/runs/wf/0/r.json"}, false},
		{"store code in a user's bucket", authzRequest{Action: "s3:PutObject", Resource: "arn:aws:s3:::lab-input/lambda/0a1b.zip"}, false},
		{"read a workflow's data", authzRequest{Action: "s3:GetObject", Resource: "arn:aws:s3:::lab-input/sample.csv"}, false},
		{"write a workflow's output", authzRequest{Action: "s3:PutObject", Resource: "arn:aws:s3:::lab-output/Result-x"}, false},
		{"read another secret", authzRequest{Action: "secretsmanager:GetSecretValue", Resource: "arn:aws:secretsmanager:us-east-1:" + acct + ":secret:prod/db-AbCdEf"}, false},
		{"delete someone else's log group", authzRequest{Action: "logs:DeleteLogGroup", Resource: "arn:aws:logs:us-east-1:" + acct + ":log-group:/aws/lambda/billing"}, false},
		{"run a task", authzRequest{Action: "ecs:RunTask", Resource: "arn:aws:ecs:us-east-1:" + acct + ":task-definition/cp-wf-0:1"}, false},
		// The agent reads which keys a stage's data uses, never the data.
		{"find a workflow secret's key", authzRequest{Action: "secretsmanager:DescribeSecret", Resource: "arn:aws:secretsmanager:us-east-1:" + acct + ":secret:prod/db-AbCdEf"}, true},
		{"resolve a key's alias", authzRequest{Action: "kms:DescribeKey", Resource: key}, true},
		{"decrypt with a workflow's key", authzRequest{Action: "kms:Decrypt", Resource: key, Context: map[string]string{"kms:ViaService": "s3.us-east-1.amazonaws.com"}}, false},
		{"encrypt with a workflow's key", authzRequest{Action: "kms:GenerateDataKey", Resource: key, Context: map[string]string{"kms:ViaService": "s3.us-east-1.amazonaws.com"}}, false},
		// ECS's service-linked role only, by its role and by the service it
		// is asked for: https://docs.aws.amazon.com/IAM/latest/UserGuide/using-service-linked-roles.html#service-linked-role-permissions
		{"create ECS's service-linked role", authzRequest{Action: "iam:CreateServiceLinkedRole", Resource: "arn:aws:iam::" + acct + ":role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS", Context: map[string]string{"iam:AWSServiceName": "ecs.amazonaws.com"}}, true},
		{"create another service's service-linked role", authzRequest{Action: "iam:CreateServiceLinkedRole", Resource: "arn:aws:iam::" + acct + ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling", Context: map[string]string{"iam:AWSServiceName": "autoscaling.amazonaws.com"}}, false},
		{"create a service-linked role under ECS's name for another service", authzRequest{Action: "iam:CreateServiceLinkedRole", Resource: "arn:aws:iam::" + acct + ":role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS", Context: map[string]string{"iam:AWSServiceName": "elasticbeanstalk.amazonaws.com"}}, false},
		{"read another role", authzRequest{Action: "iam:GetRole", Resource: "arn:aws:iam::" + acct + ":role/admin"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			if got := evaluate(t, tt.r, deploy.AgentPolicyFiles...); got.Allowed != tt.want {
				t.Errorf("%s: allowed = %v (by %q), want %v", tt.r, got.Allowed, got.By, tt.want)
			}
		})
	}
}
