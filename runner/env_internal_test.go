package runner

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
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
	if err := runCommand(context.Background(), []string{"sh", "-c", script}, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "id=AKIAUSERKEY ours=none") {
		t.Errorf("the command printed %q, want the key under AWS_ACCESS_KEY_ID only", out.String())
	}
}
