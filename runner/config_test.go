package runner_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/runner"
)

// containerEnv is the environment provision/ecs.go gives the algorithm
// container, plus a workflow variable.
func containerEnv() map[string]string {
	return map[string]string{
		"TEST_ENV":                "blah",
		"CLOUDPIPE_QUEUE_URL":     "http://localhost:4566/000000000000/cp-wf-0",
		"CLOUDPIPE_INPUT_BUCKET":  "in-bucket",
		"CLOUDPIPE_OUTPUT_BUCKET": "out-bucket",
		"CLOUDPIPE_RUN_COMMAND":   "sort -o $output $input",
		"CLOUDPIPE_INPUT_PATH":    "/tmp/in/",
		"CLOUDPIPE_OUTPUT_PATH":   "/tmp/out/",
		"CLOUDPIPE_ALGORITHM":     "sort-lines",
		"CLOUDPIPE_STATE_BUCKET":  "cloudpipe-state-000000000000-us-east-1",
		"CLOUDPIPE_WORKFLOW":      "wf",
		"CLOUDPIPE_STAGE":         "0",
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := containerEnv()
	got, err := runner.ConfigFromEnv(func(k string) string { return env[k] })
	want := runner.Config{RunnerEnv: contract.RunnerEnv{
		QueueURL: "http://localhost:4566/000000000000/cp-wf-0", InputBucket: "in-bucket", OutputBucket: "out-bucket",
		RunCommand: "sort -o $output $input", InputPath: "/tmp/in/", OutputPath: "/tmp/out/", Algorithm: "sort-lines",
		StateBucket: "cloudpipe-state-000000000000-us-east-1", Workflow: "wf",
	}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ConfigFromEnv = %+v, %v\nwant %+v", got, err, want)
	}

	tests := []struct {
		name    string
		change  map[string]string
		wantErr []string
		check   func(runner.Config) bool
	}{
		{name: "durations", change: map[string]string{"CLOUDPIPE_WAIT_TIME": "5", "CLOUDPIPE_IDLE_TIMEOUT": "90s",
			"CLOUDPIPE_VISIBILITY_TIMEOUT": "1m", "CLOUDPIPE_RETRY_DELAY": "0s", "CLOUDPIPE_STAGE": "3"},
			check: func(c runner.Config) bool {
				return c.WaitTime == 5*time.Second && c.IdleTimeout == 90*time.Second && c.Visibility == time.Minute && c.Stage == 3
			}},
		{name: "no state bucket, no workflow", change: map[string]string{"CLOUDPIPE_STATE_BUCKET": "", "CLOUDPIPE_WORKFLOW": ""},
			check: func(c runner.Config) bool { return c.StateBucket == "" }},
		{name: "missing", change: map[string]string{"CLOUDPIPE_QUEUE_URL": "", "CLOUDPIPE_OUTPUT_BUCKET": " ", "CLOUDPIPE_RUN_COMMAND": "",
			"CLOUDPIPE_INPUT_PATH": "", "CLOUDPIPE_OUTPUT_PATH": "", "CLOUDPIPE_ALGORITHM": "", "CLOUDPIPE_WORKFLOW": ""},
			wantErr: []string{"CLOUDPIPE_QUEUE_URL is not set", "CLOUDPIPE_OUTPUT_BUCKET is not set", "CLOUDPIPE_RUN_COMMAND is not set",
				"CLOUDPIPE_INPUT_PATH is not set", "CLOUDPIPE_OUTPUT_PATH is not set", "CLOUDPIPE_ALGORITHM is not set", "CLOUDPIPE_WORKFLOW is not set"}},
		{name: "malformed", change: map[string]string{"CLOUDPIPE_WAIT_TIME": "30s", "CLOUDPIPE_IDLE_TIMEOUT": "soon",
			"CLOUDPIPE_VISIBILITY_TIMEOUT": "-5", "CLOUDPIPE_STAGE": "x", "CLOUDPIPE_ALGORITHM": "a/b"},
			wantErr: []string{"CLOUDPIPE_WAIT_TIME", `CLOUDPIPE_IDLE_TIMEOUT="soon"`, `CLOUDPIPE_VISIBILITY_TIMEOUT="-5"`,
				`CLOUDPIPE_STAGE="x"`, `CLOUDPIPE_ALGORITHM="a/b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := containerEnv()
			for k, v := range tt.change {
				env[k] = v
			}
			got, err := runner.ConfigFromEnv(func(k string) string { return env[k] })
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
