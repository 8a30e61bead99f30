package lambda_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/lambda"
)

// provisionerEnv is the environment provision/lambda.go gives a stage function.
func provisionerEnv() map[string]string {
	return map[string]string{
		"CLOUDPIPE_QUEUE_URL":        "http://localhost:4566/000000000000/cp-wf-0",
		"CLOUDPIPE_DLQ_URL":          "http://localhost:4566/000000000000/cp-wf-0-dlq",
		"CLOUDPIPE_CLUSTER":          "cloudpipe",
		"CLOUDPIPE_TASK_DEFINITION":  "arn:aws:ecs:us-east-1:000000000000:task-definition/cp-wf-0:3",
		"CLOUDPIPE_SUBNETS":          "subnet-1, subnet-2",
		"CLOUDPIPE_SECURITY_GROUPS":  "sg-1",
		"CLOUDPIPE_ASSIGN_PUBLIC_IP": "true",
		"CLOUDPIPE_MAX_TASKS":        "4",
		"CLOUDPIPE_CONTAINER":        "sort-lines",
		"CLOUDPIPE_WORKFLOW":         "wf",
		"CLOUDPIPE_STAGE":            "0",
	}
}

func TestConfigFromEnv(t *testing.T) {
	want := lambda.Config{FunctionEnv: contract.FunctionEnv{
		QueueURL:       "http://localhost:4566/000000000000/cp-wf-0",
		DLQURL:         "http://localhost:4566/000000000000/cp-wf-0-dlq",
		Cluster:        "cloudpipe",
		TaskDefinition: "arn:aws:ecs:us-east-1:000000000000:task-definition/cp-wf-0:3",
		Subnets:        []string{"subnet-1", "subnet-2"},
		SecurityGroups: []string{"sg-1"},
		AssignPublicIP: true,
		MaxTasks:       4,
		Container:      "sort-lines",
		Workflow:       "wf",
		Stage:          0,
	}}
	env := provisionerEnv()
	got, err := lambda.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ConfigFromEnv = %+v, %v\nwant %+v", got, err, want)
	}

	tests := []struct {
		name    string
		change  map[string]string
		wantErr []string // each must appear in the error
		check   func(lambda.Config) bool
	}{
		{name: "defaults", change: map[string]string{"CLOUDPIPE_MAX_TASKS": "", "CLOUDPIPE_ASSIGN_PUBLIC_IP": "", "CLOUDPIPE_SECURITY_GROUPS": "", "CLOUDPIPE_STAGE": ""},
			check: func(c lambda.Config) bool {
				return c.MaxTasks == contract.DefaultMaxTasks && !c.AssignPublicIP && c.SecurityGroups == nil && c.Stage == 0
			}},
		{name: "family:revision", change: map[string]string{"CLOUDPIPE_TASK_DEFINITION": "cp-wf-0:3"},
			check: func(c lambda.Config) bool { return c.TaskDefinition == "cp-wf-0:3" }},
		{name: "stage 2", change: map[string]string{"CLOUDPIPE_STAGE": "2"},
			check: func(c lambda.Config) bool { return c.Stage == 2 }},
		{name: "all missing", change: map[string]string{"CLOUDPIPE_QUEUE_URL": "", "CLOUDPIPE_DLQ_URL": "", "CLOUDPIPE_CLUSTER": "", "CLOUDPIPE_TASK_DEFINITION": "", "CLOUDPIPE_SUBNETS": " , "},
			wantErr: []string{"CLOUDPIPE_QUEUE_URL is not set", "CLOUDPIPE_DLQ_URL is not set", "CLOUDPIPE_CLUSTER is not set", "CLOUDPIPE_TASK_DEFINITION is not set", "CLOUDPIPE_SUBNETS is not set"}},
		{name: "malformed", change: map[string]string{"CLOUDPIPE_MAX_TASKS": "0", "CLOUDPIPE_ASSIGN_PUBLIC_IP": "maybe", "CLOUDPIPE_STAGE": "-1", "CLOUDPIPE_TASK_DEFINITION": "arn:aws:ecs:us-east-1:1:task-definition/a/b"},
			wantErr: []string{`CLOUDPIPE_MAX_TASKS="0"`, `CLOUDPIPE_ASSIGN_PUBLIC_IP="maybe"`, `CLOUDPIPE_STAGE="-1"`, "CLOUDPIPE_TASK_DEFINITION="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := provisionerEnv()
			for k, v := range tt.change {
				env[k] = v
			}
			got, err := lambda.ConfigFromEnv(func(k string) string { return env[k] })
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ConfigFromEnv(%v) = %+v, want an error", tt.change, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil || !tt.check(got) {
				t.Errorf("ConfigFromEnv(%v) = %+v, %v", tt.change, got, err)
			}
		})
	}
}
