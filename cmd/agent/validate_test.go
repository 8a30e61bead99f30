package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// validateRun runs `agent validate` in-process.
func validateRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(t.Context(), append([]string{"validate"}, args...), envOf(nil), streams{&out, &errOut})
	return code, out.String(), errOut.String()
}

// TestValidateGolden compares the whole result of `agent validate` (exit code,
// stdout, stderr) with testdata/validate/NAME.golden; -update rewrites them.
func TestValidateGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"seed", []string{"testdata/seed"}},
		{"seed-file", []string{"testdata/seed/workflows/single-run.json"}},
		{"seed-json", []string{"--json", "testdata/seed"}},
		{"wrapped", []string{"testdata/wrapped"}},
		{"wrapped-strict", []string{"--strict", "testdata/wrapped"}},
		{"wrapped-json", []string{"--json", "testdata/wrapped"}},
		{"bad-repo", []string{"testdata/bad"}},
		{"bad-repo-json", []string{"testdata/bad", "--json"}},
		{"bad-one-file", []string{"testdata/bad/workflows/reference.json"}},
		{"bad-two-files", []string{"testdata/bad/workflows/bucket.json", "testdata/bad/algorithms/double.json"}},
		{"bad-algorithms-dir", []string{"testdata/bad/algorithms"}},
		{"good-file", []string{"testdata/bad/workflows/good.json"}},
		{"two-repos", []string{"testdata/seed", "testdata/bad/workflows/bucket.json"}},
		{"no-path", nil},
		{"missing-path", []string{"testdata/seed/workflows/nope.json"}},
		{"not-a-repo", []string{"testdata"}},
		{"not-in-repo", []string{"main.go"}},
		{"help", []string{"--help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := validateRun(t, tt.args...)
			cmdline := strings.Join(append([]string{"$ agent validate"}, tt.args...), " ")
			got := fmt.Sprintf("%s\nexit %d\n-- stdout --\n%s-- stderr --\n%s", cmdline, code, stdout, stderr)
			golden := filepath.Join("testdata", "validate", tt.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("agent validate %q differs from %s:\n got:\n%s\nwant:\n%s", tt.args, golden, got, want)
			}
		})
	}
}

// TestValidateSeed holds the promise of the README: the original project's
// files work unchanged except for the placeholder account id.
func TestValidateSeed(t *testing.T) {
	code, stdout, _ := validateRun(t, "--json", "testdata/seed")
	if code != exitFailure {
		t.Fatalf("seed: exit %d, want %d", code, exitFailure)
	}
	var all workflow.Problems
	if err := json.Unmarshal([]byte(stdout), &all); err != nil {
		t.Fatalf("--json output is not a problem list: %v\n%s", err, stdout)
	}
	if ps := all.Errors(); len(ps) != 1 || ps[0].File != "workflows/single-run.json" || !strings.Contains(ps[0].Path+ps[0].Msg, "account_id") {
		t.Fatalf("seed problems = %+v, want exactly one about account_id in workflows/single-run.json", ps)
	}

	// With a real account id and nothing else changed, the seed is valid.
	dir := t.TempDir()
	for _, f := range []string{"workflows/single-run.json", "algorithms/change123-s3.json"} {
		data, err := os.ReadFile(filepath.Join("testdata/seed", f))
		if err != nil {
			t.Fatal(err)
		}
		data = bytes.ReplaceAll(data, []byte(`"your-aws-account-id"`), []byte(`"123456789012"`))
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := validateRun(t, dir)
	if code != exitOK {
		t.Fatalf("seed with a real account id: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// What remains are notes: the fields the original runtime used and
	// Fargate does not.
	want := "algorithms/change123-s3.json:3:5: note: system: system and executable_path are ignored: the image runs unmodified, started by run_command\n" +
		"workflows/single-run.json:4:5: note: key_pair: key_pair is ignored: stages run on Fargate, there is no instance to log in to\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if want := "ok: 1 workflow, 1 algorithm; 2 notes\n"; stderr != want {
		t.Errorf("summary = %q, want %q", stderr, want)
	}
}

// TestValidateJSONClean checks that a clean run prints an empty JSON array,
// not null, so consumers can always decode a list.
func TestValidateJSONClean(t *testing.T) {
	code, stdout, _ := validateRun(t, "--json", "testdata/bad/workflows/good.json")
	if code != exitOK {
		t.Fatalf("exit %d, want 0", code)
	}
	if strings.TrimSpace(stdout) != "[]" {
		t.Errorf("--json on a clean file printed %q, want []", stdout)
	}
}

// TestValidateRepository validates this repository: its examples are the
// local demo's content and what a newcomer copies, so they must pass with
// no note either (--strict counts notes as problems).
func TestValidateRepository(t *testing.T) {
	code, stdout, stderr := validateRun(t, "--strict", "../..")
	if code != exitOK || stdout != "" {
		t.Fatalf("agent validate --strict ../..: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.HasPrefix(stderr, "ok: ") {
		t.Errorf("summary = %q, want ok: ...", stderr)
	}
}

// TestValidateFiltering checks that naming files reports only their problems
// while the repository around them still resolves references.
func TestValidateFiltering(t *testing.T) {
	_, all, _ := validateRun(t, "testdata/bad")
	_, one, _ := validateRun(t, "testdata/bad/workflows/reference.json")
	if one == "" {
		t.Fatal("reference.json reported no problems")
	}
	for _, line := range strings.Split(strings.TrimSpace(one), "\n") {
		if !strings.HasPrefix(line, "workflows/reference.json:") {
			t.Errorf("problem outside the named file: %s", line)
		}
		if !strings.Contains(all, line) {
			t.Errorf("problem %q is not among the repository's:\n%s", line, all)
		}
	}
}

// TestValidateWrapped: the files an old cloud_pipe user has, as they are
// (testdata/wrapped: an algorithm exactly as the original wrap saved it,
// algorithms/<name>_info.json with container_name <user>/<name> and the
// eight injected variables, and the user guide's workflow without the
// placeholder account id), pass with notes only; --strict fails on them;
// --json marks each entry's level.
func TestValidateWrapped(t *testing.T) {
	code, stdout, stderr := validateRun(t, "testdata/wrapped")
	if code != exitOK || stderr != "ok: 1 workflow, 1 algorithm; 3 notes\n" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 notes:\n%s", stdout)
	}
	for _, l := range lines {
		if !strings.Contains(l, ": note: ") {
			t.Errorf("not a note: %s", l)
		}
	}
	for _, want := range []string{
		"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are dropped",
		"executable_path and system are ignored",
		"key_pair is ignored",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no note says %q:\n%s", want, stdout)
		}
	}

	code, stdout, stderr = validateRun(t, "--strict", "testdata/wrapped")
	if code != exitFailure || strings.Contains(stdout, ": note: ") || len(strings.Split(strings.TrimSpace(stdout), "\n")) != 3 ||
		stderr != "3 problems in 2 files; 0 workflows and 0 algorithms valid\n" {
		t.Errorf("--strict: exit %d, want 1 and the notes as problems\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var envOut, envErr bytes.Buffer
	if code := dispatch(t.Context(), []string{"validate", "testdata/wrapped"}, envOf(map[string]string{"CLOUDPIPE_STRICT": "true"}), streams{&envOut, &envErr}); code != exitFailure {
		t.Errorf("CLOUDPIPE_STRICT=true: exit %d, want 1", code)
	}

	for _, tc := range []struct {
		args  []string
		level string
	}{{[]string{"--json", "testdata/wrapped"}, "note"}, {[]string{"--json", "--strict", "testdata/wrapped"}, "error"}} {
		_, stdout, _ := validateRun(t, tc.args...)
		var entries []map[string]any
		if err := json.Unmarshal([]byte(stdout), &entries); err != nil {
			t.Fatalf("%q: %v\n%s", tc.args, err, stdout)
		}
		if len(entries) != 3 {
			t.Errorf("%q: %d entries, want 3", tc.args, len(entries))
		}
		for _, e := range entries {
			if e["level"] != tc.level {
				t.Errorf("%q: entry %v, want level %q", tc.args, e, tc.level)
			}
		}
	}
}
