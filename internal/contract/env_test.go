package contract_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// getenv reads env as os.Getenv reads the process's environment.
func getenv(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

func TestFunctionEnvRoundTrip(t *testing.T) {
	full := contract.FunctionEnv{
		QueueURL:       "http://localhost:4566/000000000000/cp-wf-0",
		DLQURL:         "http://localhost:4566/000000000000/cp-wf-0-dlq",
		Cluster:        "cloudpipe",
		TaskDefinition: "arn:aws:ecs:us-east-1:000000000000:task-definition/cp-wf-0:3",
		Subnets:        []string{"subnet-1", "subnet-2"},
		SecurityGroups: []string{"sg-1", "sg-2"},
		AssignPublicIP: true,
		MaxTasks:       4,
		Container:      "sort-lines",
		Workflow:       "wf",
		Stage:          2,
	}
	minimal := contract.FunctionEnv{ // optional values empty
		QueueURL: "q", DLQURL: "d", Cluster: "c", TaskDefinition: "td:1",
		Subnets: []string{"subnet-1"}, MaxTasks: 1,
	}
	// A stage on AWS Batch: queue and definition, no cluster, task
	// definition or network needed.
	onBatch := contract.FunctionEnv{
		QueueURL: "q", DLQURL: "d", MaxTasks: 2,
		JobQueue:      "arn:aws:batch:us-east-1:000000000000:job-queue/cp-batch-g5-xlarge-ec2",
		JobDefinition: "arn:aws:batch:us-east-1:000000000000:job-definition/cp-wf-0:1",
	}
	if _, set := minimal.Env()[contract.EnvJobQueue]; set {
		t.Errorf("a Fargate stage's environment names %s", contract.EnvJobQueue)
	}
	for _, want := range []contract.FunctionEnv{full, minimal, onBatch} {
		env := want.Env()
		got, err := contract.ReadFunctionEnv(getenv(env))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ReadFunctionEnv(%v) = %+v, %v\nwant %+v", env, got, err, want)
		}
	}
}

func TestRunnerEnvRoundTrip(t *testing.T) {
	full := contract.RunnerEnv{
		QueueURL: "http://localhost:4566/000000000000/cp-wf-0", InputBucket: "in", OutputBucket: "out",
		RunCommand: "sort -o $output $input", InputPath: "/tmp/in/", OutputPath: "/tmp/out/result.txt",
		Algorithm: "sort-lines", StateBucket: "state", StateRegion: "us-east-1", Workflow: "wf", Stage: 3,
		WaitTime: 5 * time.Second, IdleTimeout: 90 * time.Second, Visibility: 12 * time.Hour,
		RetryDelay: time.Millisecond, TempDir: "/scratch",
	}
	provisioned := full // what the provisioner writes: no tuning
	provisioned.WaitTime, provisioned.IdleTimeout, provisioned.Visibility, provisioned.RetryDelay, provisioned.TempDir = 0, 0, 0, 0, ""
	tests := []struct {
		name string
		env  contract.RunnerEnv
		vars int // how many variables Env writes
	}{
		{"full", full, 16},
		{"provisioned", provisioned, 11},
		{"empty", contract.RunnerEnv{}, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env.Env()
			if len(env) != tt.vars {
				t.Errorf("Env() wrote %d variables, want %d: %v", len(env), tt.vars, env)
			}
			got, err := contract.ReadRunnerEnv(getenv(env))
			if err != nil || got != tt.env {
				t.Errorf("ReadRunnerEnv(%v) = %+v, %v\nwant %+v", env, got, err, tt.env)
			}
		})
	}
}

func TestReadEnvForms(t *testing.T) {
	fn, err := contract.ReadFunctionEnv(getenv(map[string]string{
		contract.EnvQueueURL: " q ", contract.EnvDLQURL: "d", contract.EnvCluster: "c", contract.EnvTaskDefinition: "td",
		contract.EnvSubnets: " subnet-1, ,subnet-2 ", contract.EnvSecurityGroups: " , ", contract.EnvAssignPublicIP: "1",
	}))
	want := contract.FunctionEnv{QueueURL: "q", DLQURL: "d", Cluster: "c", TaskDefinition: "td",
		Subnets: []string{"subnet-1", "subnet-2"}, AssignPublicIP: true, MaxTasks: contract.DefaultMaxTasks}
	if err != nil || !reflect.DeepEqual(fn, want) {
		t.Errorf("ReadFunctionEnv = %+v, %v\nwant %+v", fn, err, want)
	}
	run, err := contract.ReadRunnerEnv(getenv(map[string]string{
		contract.EnvWaitTime: "5", contract.EnvIdleTimeout: "1m30s", contract.EnvVisibilityTimeout: "0", contract.EnvStage: " 7 ",
	}))
	if err != nil || run.WaitTime != 5*time.Second || run.IdleTimeout != 90*time.Second || run.Visibility != 0 || run.Stage != 7 {
		t.Errorf("ReadRunnerEnv = %+v, %v", run, err)
	}
}

func TestReadEnvRejects(t *testing.T) {
	validFunction := contract.FunctionEnv{QueueURL: "q", DLQURL: "d", Cluster: "c", TaskDefinition: "td:1",
		Subnets: []string{"s"}, MaxTasks: 1}.Env()
	tests := []struct {
		name    string
		read    func(func(string) string) error
		base    map[string]string
		change  map[string]string
		wantErr []string // each must appear in the error
	}{
		{"function: missing", readFunction, validFunction,
			map[string]string{contract.EnvQueueURL: "", contract.EnvDLQURL: " ", contract.EnvCluster: "", contract.EnvTaskDefinition: "", contract.EnvSubnets: " , "},
			[]string{"CLOUDPIPE_QUEUE_URL is not set", "CLOUDPIPE_DLQ_URL is not set", "CLOUDPIPE_CLUSTER is not set",
				"CLOUDPIPE_TASK_DEFINITION is not set", "CLOUDPIPE_SUBNETS is not set"}},
		{"function: malformed", readFunction, validFunction,
			map[string]string{contract.EnvMaxTasks: "0", contract.EnvAssignPublicIP: "maybe", contract.EnvStage: "-1"},
			[]string{`CLOUDPIPE_MAX_TASKS="0" is not a positive integer`, `CLOUDPIPE_ASSIGN_PUBLIC_IP="maybe" is not a boolean`,
				`CLOUDPIPE_STAGE="-1" is not a stage index`}},
		{"function: not numbers", readFunction, validFunction,
			map[string]string{contract.EnvMaxTasks: "many", contract.EnvStage: "first"},
			[]string{`CLOUDPIPE_MAX_TASKS="many"`, `CLOUDPIPE_STAGE="first"`}},
		{"runner: malformed", readRunner, map[string]string{},
			map[string]string{contract.EnvWaitTime: "soon", contract.EnvIdleTimeout: "-5", contract.EnvVisibilityTimeout: "-1s",
				contract.EnvRetryDelay: "1 hour", contract.EnvStage: "x"},
			[]string{`CLOUDPIPE_WAIT_TIME="soon": not a duration`, `CLOUDPIPE_IDLE_TIMEOUT="-5": negative duration`,
				`CLOUDPIPE_VISIBILITY_TIMEOUT="-1s": negative duration`, `CLOUDPIPE_RETRY_DELAY="1 hour"`, `CLOUDPIPE_STAGE="x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tt.base {
				env[k] = v
			}
			for k, v := range tt.change {
				env[k] = v
			}
			err := tt.read(getenv(env))
			if err == nil {
				t.Fatalf("reading %v gave no error", tt.change)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func readFunction(getenv func(string) string) error {
	_, err := contract.ReadFunctionEnv(getenv)
	return err
}

func readRunner(getenv func(string) string) error {
	_, err := contract.ReadRunnerEnv(getenv)
	return err
}
