package runner

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestAlgorithmEnviron: the task-credentials secret's keys reach the
// algorithm under the standard names, replace any keys (and session token)
// the container had, and leave the runner's own view untouched when the
// workflow has no such secret.
func TestAlgorithmEnviron(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"no secret: unchanged",
			[]string{"PATH=/bin", "MODE=fast", "AWS_REGION=eu-west-1"},
			[]string{"PATH=/bin", "MODE=fast", "AWS_REGION=eu-west-1"}},
		{"secret keys under the standard names",
			[]string{"PATH=/bin", "CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID=AKIAUSER", "CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY=usersecret"},
			[]string{"PATH=/bin", "AWS_ACCESS_KEY_ID=AKIAUSER", "AWS_SECRET_ACCESS_KEY=usersecret"}},
		{"secret keys replace other keys and their session token",
			[]string{"AWS_ACCESS_KEY_ID=ASIAROLE", "AWS_SECRET_ACCESS_KEY=rolesecret", "AWS_SESSION_TOKEN=tok",
				"CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID=AKIAUSER", "CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY=usersecret"},
			[]string{"AWS_ACCESS_KEY_ID=AKIAUSER", "AWS_SECRET_ACCESS_KEY=usersecret"}},
		{"empty secret values give nothing",
			[]string{"AWS_ACCESS_KEY_ID=ASIAROLE", "CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID="},
			[]string{"AWS_ACCESS_KEY_ID=ASIAROLE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := algorithmEnviron(tt.environ); !slices.Equal(got, tt.want) {
				t.Errorf("algorithmEnviron(%q)\n= %q\nwant %q", tt.environ, got, tt.want)
			}
		})
	}
}

// TestCommandGetsSecretKeys runs a real process: it sees the secret's keys
// under the standard names, and cloudpipe's names not at all.
func TestCommandGetsSecretKeys(t *testing.T) {
	t.Setenv("CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID", "AKIAUSERKEY")
	t.Setenv("CLOUDPIPE_ALGORITHM_AWS_SECRET_ACCESS_KEY", "user-secret")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	script := `echo "id=$AWS_ACCESS_KEY_ID ours=${CLOUDPIPE_ALGORITHM_AWS_ACCESS_KEY_ID:-none}"`
	if err := runCommand(context.Background(), []string{"sh", "-c", script}, algorithmEnviron(os.Environ()), log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "id=AKIAUSERKEY ours=none") {
		t.Errorf("the command printed %q, want the key under AWS_ACCESS_KEY_ID only", out.String())
	}
}

// TestWithDefaults: the original runtime's variables are added where the
// environment lacks them; a value already there (a workflow's variable,
// ECS's AWS_DEFAULT_REGION) wins, and an empty one counts as unset.
func TestWithDefaults(t *testing.T) {
	defaults := map[string]string{"NAME": "sort-lines", "LOG_LVL": "WARNING", "sqs": ""}
	tests := []struct {
		name    string
		environ []string
		want    []string
	}{
		{"added, sorted, after the rest", []string{"PATH=/bin"}, []string{"PATH=/bin", "LOG_LVL=WARNING", "NAME=sort-lines"}},
		{"a value there wins", []string{"NAME=mine", "PATH=/bin"}, []string{"NAME=mine", "PATH=/bin", "LOG_LVL=WARNING"}},
		{"an empty one is replaced", []string{"NAME=", "LOG_LVL=DEBUG"}, []string{"LOG_LVL=DEBUG", "NAME=sort-lines"}},
		{"an empty default adds nothing", []string{"sqs="}, []string{"LOG_LVL=WARNING", "NAME=sort-lines"}},
		{"names are case-sensitive", []string{"name=x"}, []string{"name=x", "LOG_LVL=WARNING", "NAME=sort-lines"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withDefaults(tt.environ, defaults); !slices.Equal(got, tt.want) {
				t.Errorf("withDefaults(%q)\n= %q\nwant %q", tt.environ, got, tt.want)
			}
		})
	}
}

// TestLegacyEnv: the runner sets, with their old meanings, every variable
// the original wrap injected except the access keys, which it never sets:
// the same names as the workflow package's list.
func TestLegacyEnv(t *testing.T) {
	c := Config{RunnerEnv: contract.RunnerEnv{
		QueueURL: "https://sqs.eu-west-1.amazonaws.com/123456789012/cp-wf-0", OutputBucket: "wf-out", Algorithm: "sort-lines",
	}}
	got := legacyEnv(c, "eu-west-1")
	want := map[string]string{
		"NAME": "sort-lines", "output_s3_name": "wf-out", "sqs": c.QueueURL,
		"AWS_DEFAULT_REGION": "eu-west-1", "AWS_DEFAULT_OUTPUT": "json", "LOG_LVL": "WARNING",
	}
	if !maps.Equal(got, want) {
		t.Errorf("legacyEnv = %v\nwant %v", got, want)
	}
	var names []string
	for _, v := range workflow.InjectedVariables {
		if !v.Credential {
			names = append(names, v.Name)
		}
	}
	slices.Sort(names)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, names) {
		t.Errorf("the runner sets %q; workflow.InjectedVariables without the keys are %q", keys, names)
	}
}
