package provision

import (
	"slices"
	"strings"
	"testing"
)

func TestPoliciesEqual(t *testing.T) {
	want := policyDocument{Version: policyVersion, Statement: []policyStatement{{
		Effect: "Allow", Action: stringList{"s3:GetObject", "s3:PutObject"}, Resource: stringList{"arn:aws:s3:::b/*"},
		Condition: map[string]map[string]stringList{"StringEquals": {"k": {"v"}}},
	}}}
	tests := []struct {
		name, have string
		want       bool
	}{
		{"same text", want.String(), true},
		{"url-encoded, as AWS returns", "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%5B%22s3%3APutObject%22%2C%22s3%3AGetObject%22%5D%2C%22Resource%22%3A%5B%22arn%3Aaws%3As3%3A%3A%3Ab%2F*%22%5D%2C%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22k%22%3A%22v%22%7D%7D%7D%5D%7D", true},
		{"reordered and reformatted", `{"Statement":[{"Resource":"arn:aws:s3:::b/*","Action":["s3:PutObject","s3:GetObject"],"Effect":"Allow","Condition":{"StringEquals":{"k":["v"]}}}],"Version":"2012-10-17"}`, true},
		{"other resource", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::c/*","Condition":{"StringEquals":{"k":"v"}}}]}`, false},
		{"missing condition", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::b/*"}]}`, false},
		{"not json", `nope`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := policiesEqual(tt.have, want); got != tt.want {
				t.Errorf("policiesEqual(%s) = %v, want %v", tt.have, got, tt.want)
			}
		})
	}
}

func TestSecretAndRepositoryARNs(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf":                      "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf:password::":           "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf:password:AWSCURRENT:": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
	} {
		if got := secretARN(in); got != want {
			t.Errorf("secretARN(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/algo:1.2":  "arn:aws:ecr:eu-west-1:123456789012:repository/team/algo",
		"123456789012.dkr.ecr.us-east-1.amazonaws.com/algo@sha256:ab": "arn:aws:ecr:us-east-1:123456789012:repository/algo",
		"public.ecr.aws/docker/library/alpine:3":                      "",
		"alpine:3":                                                    "",
		"ghcr.io/cloudpipe/agent:latest":                              "",
	} {
		got, ok := ecrRepositoryARN(in, "aws")
		if got != want || ok != (want != "") {
			t.Errorf("ecrRepositoryARN(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestDataKeyGrants: the roles get the customer managed keys their stage's
// data uses, each only through its service, and nothing when there are
// none: then the policies are what they were before keys were granted,
// byte for byte, so no deployed stage gets a spurious policy write.
func TestDataKeyGrants(t *testing.T) {
	const (
		inKey     = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-1111-1111-111111111111"
		outKey    = "arn:aws:kms:us-east-1:123456789012:key/22222222-2222-2222-2222-222222222222"
		secretKey = "arn:aws:kms:us-east-1:123456789012:key/33333333-3333-3333-3333-333333333333"
		euKey     = "arn:aws:kms:eu-west-1:123456789012:key/44444444-4444-4444-4444-444444444444"
		extraKey  = "arn:aws:kms:us-east-1:123456789012:key/55555555-5555-5555-5555-555555555555"
		cnKey     = "arn:aws-cn:kms:cn-north-1:123456789012:key/66666666-6666-6666-6666-666666666666"
		s3Via     = "s3.us-east-1.amazonaws.com"
		smVia     = "secretsmanager.us-east-1.amazonaws.com"
	)
	tests := []struct {
		name       string
		keys       func(*stageARNs)
		task, exec []string // the KMS statements, as kmsGrants prints them
	}{
		{"no keys", func(*stageARNs) {}, nil, nil},
		{"input key", func(a *stageARNs) { a.InputKey = inKey }, []string{
			"DecryptData: kms:Decrypt on " + inKey + " via " + s3Via}, nil},
		{"output key: a multipart upload decrypts too", func(a *stageARNs) { a.OutputKey = outKey }, []string{
			"DecryptData: kms:Decrypt on " + outKey + " via " + s3Via,
			"EncryptResults: kms:GenerateDataKey on " + outKey + " via " + s3Via}, nil},
		{"both buckets, two keys", func(a *stageARNs) { a.InputKey, a.OutputKey = inKey, outKey }, []string{
			"DecryptData: kms:Decrypt on " + inKey + "," + outKey + " via " + s3Via,
			"EncryptResults: kms:GenerateDataKey on " + outKey + " via " + s3Via}, nil},
		{"both buckets, one key", func(a *stageARNs) { a.InputKey, a.OutputKey = inKey, inKey }, []string{
			"DecryptData: kms:Decrypt on " + inKey + " via " + s3Via,
			"EncryptResults: kms:GenerateDataKey on " + inKey + " via " + s3Via}, nil},
		{"secret keys, one in another region", func(a *stageARNs) { a.SecretKeys = []string{secretKey, euKey} }, nil, []string{
			"SecretKeys: kms:Decrypt on " + secretKey + "," + euKey + " via secretsmanager.eu-west-1.amazonaws.com," + smVia}},
		{"workflow keys: both ways, both services", func(a *stageARNs) { a.WorkflowKeys = []string{extraKey} }, []string{
			"WorkflowKeys: kms:Decrypt,kms:GenerateDataKey on " + extraKey + " via " + s3Via + "," + smVia}, nil},
		{"china", func(a *stageARNs) { a.InputKey = cnKey }, []string{
			"DecryptData: kms:Decrypt on " + cnKey + " via s3.cn-north-1.amazonaws.com.cn"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sampleStageARNs()
			tt.keys(&a)
			task, exec := taskPolicy(a), execPolicy(a)
			if got := kmsGrants(task); !slices.Equal(got, tt.task) {
				t.Errorf("task role's KMS grants:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.task, "\n"))
			}
			if got := kmsGrants(exec); !slices.Equal(got, tt.exec) {
				t.Errorf("execution role's KMS grants:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.exec, "\n"))
			}
			// The rest of each policy is what a stage without keys gets.
			if len(tt.task) == 0 && task.String() != taskPolicyWithoutKeys {
				t.Errorf("task policy without task-role keys:\n%s\nwant, as before keys were granted:\n%s", task, taskPolicyWithoutKeys)
			}
			if len(tt.exec) == 0 && execPolicy(a).String() != execPolicyWithoutKeys {
				t.Errorf("execution policy without secret keys:\n%s\nwant, as before keys were granted:\n%s", exec, execPolicyWithoutKeys)
			}
		})
	}
}

// The policies of sampleStageARNs as the agent wrote them before it granted
// KMS keys.
const (
	taskPolicyWithoutKeys = `{"Version":"2012-10-17","Statement":[{"Sid":"ReadInput","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::lab-in","arn:aws:s3:::lab-in/*"]},{"Sid":"WriteOutput","Effect":"Allow","Action":["s3:PutObject","s3:AbortMultipartUpload"],"Resource":"arn:aws:s3:::lab-out/*"},{"Sid":"WriteRunRecords","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::cloudpipe-state-x/runs/wf/*"},{"Sid":"Queue","Effect":"Allow","Action":["sqs:ReceiveMessage","sqs:DeleteMessage","sqs:ChangeMessageVisibility","sqs:GetQueueAttributes"],"Resource":"arn:aws:sqs:us-east-1:123456789012:cp-wf-0"}]}`
	execPolicyWithoutKeys = `{"Version":"2012-10-17","Statement":[{"Sid":"Logs","Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents"],"Resource":"arn:aws:logs:us-east-1:123456789012:log-group:/cloudpipe/wf:log-stream:stage-0/*"},{"Sid":"Secrets","Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":["arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf","arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf-??????"]},{"Sid":"EcrAuth","Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},{"Sid":"EcrPull","Effect":"Allow","Action":["ecr:BatchCheckLayerAvailability","ecr:GetDownloadUrlForLayer","ecr:BatchGetImage"],"Resource":"arn:aws:ecr:us-east-1:123456789012:repository/algo"}]}`
)

func sampleStageARNs() stageARNs {
	return stageARNs{Region: "us-east-1", Account: "123456789012", Cluster: "cloudpipe", Family: "cp-wf-0",
		QueueARN: "arn:aws:sqs:us-east-1:123456789012:cp-wf-0", DLQARN: "arn:aws:sqs:us-east-1:123456789012:cp-wf-0-dlq",
		ExecRoleARN: "arn:aws:iam::123456789012:role/cp-wf-0-exec", TaskRoleARN: "arn:aws:iam::123456789012:role/cp-wf-0-task",
		InputBucket: "lab-in", OutputBucket: "lab-out", StateBucket: "cloudpipe-state-x", Workflow: "wf", Stage: 0,
		SecretARNs: []string{"arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"},
		Images:     []string{"123456789012.dkr.ecr.us-east-1.amazonaws.com/algo:1", "ghcr.io/cloudpipe/agent:1"}}
}

// kmsGrants prints a policy's statements of KMS actions as "Sid: actions on
// resources via services", every statement's condition being only
// kms:ViaService (anything else fails the format).
func kmsGrants(d policyDocument) []string {
	var out []string
	for _, s := range d.Statement {
		if !slices.ContainsFunc(s.Action, func(a string) bool { return strings.HasPrefix(a, "kms:") }) {
			continue
		}
		via := "?"
		if len(s.Condition) == 1 && len(s.Condition["StringEquals"]) == 1 {
			via = strings.Join(s.Condition["StringEquals"]["kms:ViaService"], ",")
		}
		out = append(out, s.Sid+": "+strings.Join(s.Action, ",")+" on "+strings.Join(s.Resource, ",")+" via "+via)
	}
	return out
}
