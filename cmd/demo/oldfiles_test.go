package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestDemoOldRuntimeVariables deploys an algorithm saved as the original
// wrap command saved it (algorithms/<name>_info.json, the eight injected
// variables, a workflow that gives none of them) and runs a file through
// it: the algorithm writes $NAME and $output_s3_name into its result, and
// they hold what the original runtime gave them, the algorithm's name and
// the stage's output bucket.
func TestDemoOldRuntimeVariables(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (AWS emulator, handlers, runners): not in -short")
	}
	bin := demoBinary(t)
	seq := runSeq.Add(1)
	wf, out := fmt.Sprintf("old-wrap-%d", seq), fmt.Sprintf("cloudpipe-old-wrap-%d-out", seq)
	decls := []map[string]any{}
	for _, v := range workflow.InjectedVariables {
		decls = append(decls, map[string]any{"name": v.Name, "required": v.Name != "LOG_LVL"})
	}
	// No shell parses run_command: sh gets the script as one argument,
	// its spaces written as ${IFS}.
	alg := map[string]any{
		"CPU": 1, "container_name": "wangyx2005/echo-old", "executable_path": "/bin/sh", "instance_type": "t2.micro",
		"input_file_path": "/tmp/in/", "output_file_path": "/tmp/out/", "memory": map[string]int{"minimal": 64, "suggested": 128},
		"name": "echo-old", "port": []any{}, "system": "ubuntu", "user_specified_environment_variables": decls,
		"run_command": `sh -c echo${IFS}"$NAME"${IFS}"${output_s3_name}">"$1" sh $output $input`,
	}
	flow := map[string]any{
		"input_s3_name": fmt.Sprintf("cloudpipe-old-wrap-%d-in", seq), "output_s3_name": out, "key_pair": "wyx-cci", "region": region,
		"process": map[string]any{"type": "single_run", "algorithms": []any{map[string]any{"name": "echo-old", "port": []any{}}}},
	}
	repo := t.TempDir()
	for file, v := range map[string]any{"algorithms/echo-old_info.json": alg, "workflows/" + wf + ".json": flow} {
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(repo, filepath.Dir(file)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	upload := filepath.Join(t.TempDir(), fmt.Sprintf("old-%d.txt", seq))
	if err := os.WriteFile(upload, sampleText, 0o644); err != nil {
		t.Fatal(err)
	}
	dl := t.TempDir()
	var stdout, stderr syncBuffer
	o := demoOptions(t, repo, bin, seq, &stderr)
	o.workflow, o.upload, o.download, o.once = wf, upload, dl, true
	err := run(t.Context(), o, &stdout)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), tail(stderr.String(), 60))
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dl, wf, "Result-echo-old-"+filepath.Base(upload)))
	if err != nil {
		t.Fatalf("result not downloaded: %v", err)
	}
	if want := "echo-old " + out + "\n"; string(got) != want {
		t.Errorf("the algorithm wrote %q, want %q", got, want)
	}
}
