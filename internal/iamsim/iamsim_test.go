package iamsim_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/iamsim"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
)

const (
	account = "123456789012"
	role    = "arn:aws:iam::" + account + ":role/cp-wf-0-lambda"
	session = "arn:aws:sts::" + account + ":assumed-role/cp-wf-0-lambda/fn"
)

func startEvaluator(t *testing.T) *iamsim.Evaluator {
	t.Helper()
	cache, err := testenv.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	e, err := iamsim.Start(t.Context(), cache)
	if err != nil {
		t.Fatalf("the IAM evaluator is required (Node.js, and the npm registry once): %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func policy(statements ...string) json.RawMessage {
	return json.RawMessage(`{"Version":"2012-10-17","Statement":[` + strings.Join(statements, ",") + `]}`)
}

// TestEvaluate holds the evaluator to IAM's rules on the kinds of request
// cloudpipe's principals send: each case is one IAM rule, from
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
// and the Service Authorization Reference of each service.
func TestEvaluate(t *testing.T) {
	e := startEvaluator(t)
	queue := "arn:aws:sqs:us-east-1:" + account + ":cp-wf-0"
	cluster := "arn:aws:ecs:us-east-1:" + account + ":cluster/cloudpipe"
	sendToQueue := policy(`{"Effect":"Allow","Action":"sqs:SendMessage","Resource":"` + queue + `"}`)
	runs := policy(`{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::state/runs/wf/*"}`)
	listOnCluster := policy(`{"Effect":"Allow","Action":"ecs:ListTasks","Resource":"*","Condition":{"ArnEquals":{"ecs:cluster":"` + cluster + `"}}}`)
	listOnInstances := policy(`{"Effect":"Allow","Action":"ecs:ListTasks","Resource":"arn:aws:ecs:us-east-1:` + account + `:container-instance/cloudpipe/*"}`)
	passToECS := policy(`{"Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::` + account + `:role/cp-wf-0-task",
		"Condition":{"StringEquals":{"iam:PassedToService":"ecs-tasks.amazonaws.com"}}}`)
	tests := []struct {
		name string
		req  iamsim.Request
		want iamsim.Decision
	}{
		{"allowed on the queue named", iamsim.Request{Principal: session, Policies: []json.RawMessage{sendToQueue},
			Action: "sqs:SendMessage", Resource: queue}, iamsim.Allowed},
		{"not on another queue", iamsim.Request{Principal: session, Policies: []json.RawMessage{sendToQueue},
			Action: "sqs:SendMessage", Resource: queue + "-dlq"}, iamsim.ImplicitlyDenied},
		{"nor another action", iamsim.Request{Principal: session, Policies: []json.RawMessage{sendToQueue},
			Action: "sqs:DeleteQueue", Resource: queue}, iamsim.ImplicitlyDenied},
		{"a key under the prefix", iamsim.Request{Principal: role, Policies: []json.RawMessage{runs},
			Action: "s3:PutObject", Resource: "arn:aws:s3:::state/runs/wf/0/x.json"}, iamsim.Allowed},
		{"not another workflow's key", iamsim.Request{Principal: role, Policies: []json.RawMessage{runs},
			Action: "s3:PutObject", Resource: "arn:aws:s3:::state/runs/other/0/x.json"}, iamsim.ImplicitlyDenied},
		{"an explicit deny wins", iamsim.Request{Principal: role, Policies: []json.RawMessage{sendToQueue,
			policy(`{"Effect":"Deny","Action":"sqs:*","Resource":"*"}`)},
			Action: "sqs:SendMessage", Resource: queue}, iamsim.ExplicitlyDenied},
		{"ListTasks on * within the cluster", iamsim.Request{Principal: session, Policies: []json.RawMessage{listOnCluster},
			Action: "ecs:ListTasks", Resource: "*", Context: map[string]any{"ecs:cluster": cluster}}, iamsim.Allowed},
		{"ListTasks on another cluster", iamsim.Request{Principal: session, Policies: []json.RawMessage{listOnCluster},
			Action: "ecs:ListTasks", Resource: "*", Context: map[string]any{"ecs:cluster": cluster + "-other"}}, iamsim.ImplicitlyDenied},
		// Without a container-instance filter ListTasks is authorized on the
		// literal "*", which a policy on container instances does not cover
		// (the simulator alone would match "*" as a pattern and allow it).
		{"ListTasks on * is not a container instance", iamsim.Request{Principal: session, Policies: []json.RawMessage{listOnInstances},
			Action: "ecs:ListTasks", Resource: "*", Context: map[string]any{"ecs:cluster": cluster}}, iamsim.ImplicitlyDenied},
		{"PassRole to ECS tasks", iamsim.Request{Principal: session, Policies: []json.RawMessage{passToECS},
			Action: "iam:PassRole", Resource: "arn:aws:iam::" + account + ":role/cp-wf-0-task",
			Context: map[string]any{"iam:PassedToService": "ecs-tasks.amazonaws.com"}}, iamsim.Allowed},
		{"PassRole to another service", iamsim.Request{Principal: session, Policies: []json.RawMessage{passToECS},
			Action: "iam:PassRole", Resource: "arn:aws:iam::" + account + ":role/cp-wf-0-task",
			Context: map[string]any{"iam:PassedToService": "lambda.amazonaws.com"}}, iamsim.ImplicitlyDenied},
		{"no policy, no access", iamsim.Request{Principal: role, Action: "sqs:SendMessage", Resource: queue}, iamsim.ImplicitlyDenied},
	}
	// Twice: the second round is answered from memory, and must still tell
	// apart requests that differ in one field only (resource, action,
	// policies, context).
	for _, round := range []string{"asked", "remembered"} {
		for _, tt := range tests {
			t.Run(round+"/"+tt.name, func(t *testing.T) {
				got, err := e.Evaluate(tt.req)
				if err != nil {
					t.Fatal(err)
				}
				if got.Decision != tt.want {
					t.Errorf("%s on %s: %s (%s), want %s", tt.req.Action, tt.req.Resource, got.Decision, got.Reason, tt.want)
				}
			})
		}
		if n := e.Evaluations(); n != len(tests) {
			t.Errorf("after the %s round the evaluator decided %d requests, want %d (one per distinct request)", round, n, len(tests))
		}
	}
}

// TestEvaluateRefusesWhatIAMCannotEvaluate: an unknown action is an error,
// not a silent denial, so a typo in the layer's table shows.
func TestEvaluateRefusesWhatIAMCannotEvaluate(t *testing.T) {
	e := startEvaluator(t)
	_, err := e.Evaluate(iamsim.Request{Principal: role, Action: "sqs:SendMessages", Resource: "arn:aws:sqs:us-east-1:" + account + ":q"})
	if err == nil || !strings.Contains(err.Error(), "sqs:SendMessages") {
		t.Fatalf("unknown action: %v, want an error naming it", err)
	}
}

// TestGrantsNameTheAllowingStatements: an allowed request says which
// statements allowed it, so a whole run can report statements it never used.
func TestGrantsNameTheAllowingStatements(t *testing.T) {
	e := startEvaluator(t)
	queue := "arn:aws:sqs:us-east-1:" + account + ":cp-wf-0"
	pols := []json.RawMessage{
		policy(`{"Sid":"Unused","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}`,
			`{"Sid":"Send","Effect":"Allow","Action":"sqs:SendMessage","Resource":"`+queue+`"}`),
	}
	got, err := e.Evaluate(iamsim.Request{Principal: role, Policies: pols, Action: "sqs:SendMessage", Resource: queue})
	if err != nil {
		t.Fatal(err)
	}
	want := []iamsim.Grant{{Policy: 0, Index: 2, Sid: "Send"}}
	if got.Decision != iamsim.Allowed || len(got.Grants) != 1 || got.Grants[0] != want[0] {
		t.Errorf("grants %+v (%s), want %+v", got.Grants, got.Decision, want)
	}
	denied, err := e.Evaluate(iamsim.Request{Principal: role, Policies: pols, Action: "sqs:DeleteQueue", Resource: queue})
	if err != nil {
		t.Fatal(err)
	}
	if len(denied.Grants) != 0 {
		t.Errorf("a denied request has grants %+v", denied.Grants)
	}
}

// TestDescribe reads the Service Authorization Reference as data: the
// action's spelling, its resource types and their ARN formats.
func TestDescribe(t *testing.T) {
	e := startEvaluator(t)
	tests := []struct {
		action, want, resourceType, arn string
		required                        bool
	}{
		{"s3:listbucket", "s3:ListBucket", "bucket", "arn:${Partition}:s3:::${BucketName}", false},
		{"sqs:SendMessage", "sqs:SendMessage", "queue", "arn:${Partition}:sqs:${Region}:${Account}:${QueueName}", true},
		{"ecs:RunTask", "ecs:RunTask", "task-definition", "arn:${Partition}:ecs:${Region}:${Account}:task-definition/${TaskDefinitionFamilyName}:${TaskDefinitionRevisionNumber}", true},
	}
	for _, tt := range tests {
		a, err := e.Describe(tt.action)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != tt.want {
			t.Errorf("%s: named %q, want %q", tt.action, a.Name, tt.want)
		}
		i := slices.IndexFunc(a.ResourceTypes, func(r iamsim.ResourceType) bool { return r.Name == tt.resourceType })
		if i < 0 {
			t.Errorf("%s: resource types %+v lack %s", tt.action, a.ResourceTypes, tt.resourceType)
			continue
		}
		if r := a.ResourceTypes[i]; r.ARN != tt.arn || r.Required != tt.required {
			t.Errorf("%s: %+v, want ARN %s required %v", tt.action, r, tt.arn, tt.required)
		}
	}
	if _, err := e.Describe("sqs:SendMessages"); err == nil {
		t.Error("describe of an unknown action: no error")
	}
	if a, err := e.Describe("sts:GetCallerIdentity"); err != nil || len(a.ResourceTypes) != 0 {
		t.Errorf("sts:GetCallerIdentity: %+v %v, want no resource types", a, err)
	}
}
