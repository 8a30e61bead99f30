package workflow_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// wrapped is the seed algorithm as the original wrap command saved it:
// container_name rewritten to <user>/<name> and the eight injected
// variables appended (cmd/agent/testdata/wrapped holds the file byte for
// byte as wrap wrote it).
func wrapped(tb testing.TB) map[string]any {
	tb.Helper()
	a := baseAlgorithm(tb)
	a["container_name"] = "wangyx2005/" + a["name"].(string)
	a["instance_type"] = "t2.micro" // wrap's choice for an empty one
	decls := a["user_specified_environment_variables"].([]any)
	for _, v := range workflow.InjectedVariables {
		decls = append(decls, map[string]any{"name": v.Name, "required": v.Name != "LOG_LVL"})
	}
	a["user_specified_environment_variables"] = decls
	return a
}

// loadNotes loads files and returns the config, the errors, and the notes
// as "path: message" strings of the file.
func loadNotes(t *testing.T, files map[string][]byte) (*workflow.Config, workflow.Problems) {
	t.Helper()
	cfg, errs := workflow.Load(repo(files))
	for _, n := range cfg.Notes {
		if !n.IsNote() {
			t.Errorf("Config.Notes holds an error: %v", n)
		}
	}
	for _, p := range errs {
		if p.IsNote() {
			t.Errorf("Load's problems hold a note: %v", p)
		}
	}
	return cfg, errs
}

// TestAlgorithmNotes: what the original format allowed is a note, never an
// error; the algorithm loads, with the defaults in place.
func TestAlgorithmNotes(t *testing.T) {
	set := func(k string, v any) func(map[string]any) {
		return func(a map[string]any) { a[k] = v }
	}
	decls := func(vs ...map[string]any) func(map[string]any) {
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		return set("user_specified_environment_variables", list)
	}
	tests := []struct {
		name    string
		change  func(map[string]any)
		notes   []string // "path: message part", in file order
		wantCPU workflow.VCPU
	}{
		{"seed", func(map[string]any) {}, []string{"executable_path: executable_path and system are ignored"}, 1},
		{"the original example: CPU {} and no instance_type", func(a map[string]any) {
			a["CPU"] = map[string]any{}
			delete(a, "instance_type")
		}, []string{"CPU: CPU {} means not set: the task gets the default, 1 vCPU", "executable_path: executable_path and system are ignored"}, 1},
		{"CPU missing", func(a map[string]any) { delete(a, "CPU") }, []string{
			// A missing field's note is on the whole object.
			": note: CPU: CPU is not set: the task gets the default, 1 vCPU", "executable_path and system are ignored"}, 1},
		{"CPU set", set("CPU", 0.5), []string{"executable_path and system are ignored"}, 0.5},
		{"nothing ignored", func(a map[string]any) {
			a["system"], a["executable_path"], a["instance_type"] = "", " ", ""
		}, nil, 1},
		{"an instance_type smaller than the algorithm only sets a floor", func(a map[string]any) {
			a["instance_type"], a["memory"] = "t2.micro", map[string]any{"minimal": 64, "suggested": 2048}
		}, []string{"executable_path: executable_path and system are ignored",
			"instance_type: instance type t2.micro (1 vCPU, 1024 MiB) is smaller than CPU 1 and memory.suggested 2048 MiB: the stage runs on Fargate sized to the algorithm's own figures"}, 1},
		{"only system", func(a map[string]any) { delete(a, "executable_path") }, []string{"system: system is ignored"}, 1},
		{"required access keys dropped", decls(
			map[string]any{"name": "AWS_ACCESS_KEY_ID", "required": true},
			map[string]any{"name": "AWS_SECRET_ACCESS_KEY", "required": true}),
			[]string{"executable_path and system are ignored",
				"user_specified_environment_variables[0].name: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are dropped: cloudpipe passes no access keys; the algorithm's AWS calls use the stage's task role, or the keys of the workflow's task_credentials_secret"}, 1},
		{"one required key", decls(
			map[string]any{"name": "AWS_ACCESS_KEY_ID"},
			map[string]any{"name": "AWS_SECRET_ACCESS_KEY", "required": true}),
			[]string{"executable_path and system are ignored", "user_specified_environment_variables[1].name: AWS_SECRET_ACCESS_KEY is dropped"}, 1},
		{"optional keys: nothing dropped", decls(map[string]any{"name": "AWS_ACCESS_KEY_ID", "required": false}),
			[]string{"executable_path and system are ignored"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := baseAlgorithm(t)
			tt.change(a)
			data := mustJSON(t, a)
			cfg, errs := loadNotes(t, map[string][]byte{seedAlgorithmFile: data})
			if len(errs) > 0 {
				t.Fatalf("input:\n%s\nerrors: %v", data, errs)
			}
			checkProblems(t, data, cfg.Notes, tt.notes)
			for _, n := range cfg.Notes {
				if !strings.Contains(n.String(), ": note: ") {
					t.Errorf("note %q does not say it is one", n)
				}
			}
			alg := cfg.Algorithms["change123-s3"]
			if alg == nil {
				t.Fatal("algorithm not loaded")
			}
			if alg.CPU != tt.wantCPU {
				t.Errorf("CPU = %v, want %v", alg.CPU, tt.wantCPU)
			}
			// ParseAlgorithm returns errors only: notes never fail it.
			if a, ps := workflow.ParseAlgorithm(seedAlgorithmFile, data); a == nil || len(ps) > 0 {
				t.Errorf("ParseAlgorithm = %v, %v", a, ps)
			}
		})
	}
}

// TestCPUDefaultHash: {} and a missing CPU are the default, so writing the
// default out redeploys nothing, and changing it does.
func TestCPUDefaultHash(t *testing.T) {
	wf := mustJSON(t, baseWorkflow())
	hash := func(cpu any, present bool) string {
		a := baseAlgorithm(t)
		if present {
			a["CPU"] = cpu
		} else {
			delete(a, "CPU")
		}
		cfg, errs := workflow.Load(repo(map[string][]byte{seedWorkflowFile: wf, seedAlgorithmFile: mustJSON(t, a)}))
		if len(errs) > 0 || len(cfg.Workflows) != 1 {
			t.Fatalf("CPU %v: %v", cpu, errs)
		}
		return cfg.Workflows[0].SpecHash
	}
	one, empty, missing, two := hash(1, true), hash(map[string]any{}, true), hash(nil, false), hash(2, true)
	if one != empty || one != missing {
		t.Errorf("CPU 1, {} and missing hash %s, %s, %s: want one hash", one, empty, missing)
	}
	if one == two {
		t.Error("CPU 2 hashes like CPU 1")
	}
}

// TestWrapFileName: algorithms/<name>_info.json, as the original wrap saved
// it, holds algorithm <name>; a <name>.json beside it is a conflict.
func TestWrapFileName(t *testing.T) {
	alg := func(name string) []byte {
		a := wrapped(t)
		a["name"] = name
		return mustJSON(t, a)
	}
	wf := baseWorkflow()
	step0(wf)["name"] = "sorter"
	workflowFile := mustJSON(t, wf)
	tests := []struct {
		name   string
		files  map[string][]byte
		loaded []string // algorithms in Config.Algorithms
		errs   []string
	}{
		{"wrap's file", map[string][]byte{"algorithms/sorter_info.json": alg("sorter")}, []string{"sorter"}, nil},
		{"a name ending in _info", map[string][]byte{"algorithms/sorter_info.json": alg("sorter_info")}, []string{"sorter_info"}, nil},
		{"another name", map[string][]byte{"algorithms/sorter_info.json": alg("other")}, nil, []string{
			`algorithms/sorter_info.json:11:11: name: name "other" does not match the file name: set it to "sorter" (the original wrap saved algorithm NAME as NAME_info.json), or rename the file to algorithms/other.json`}},
		{"no name", map[string][]byte{"algorithms/sorter_info.json": alg("")}, nil, []string{
			`name: name is empty: set it to "sorter", the file name without _info.json`}},
		{"both files", map[string][]byte{"algorithms/sorter_info.json": alg("sorter"), "algorithms/sorter.json": alg("sorter")}, nil, []string{
			`algorithms/sorter.json:11:11: name: algorithm "sorter" is defined by both algorithms/sorter.json and algorithms/sorter_info.json: keep one of the two files`,
			`algorithms/sorter_info.json:11:11: name: algorithm "sorter" is defined by both algorithms/sorter_info.json and algorithms/sorter.json: keep one of the two files`}},
		{"both files, the workflow told", map[string][]byte{"algorithms/sorter_info.json": alg("sorter"), "algorithms/sorter.json": alg("sorter"), seedWorkflowFile: workflowFile}, nil, []string{
			`algorithms/sorter.json:11:11: name: algorithm "sorter" is defined by both`,
			`algorithms/sorter_info.json:11:11: name: algorithm "sorter" is defined by both`,
			`workflows/single-run.json:9:17: process.algorithms[0].name: algorithm "sorter" is invalid: fix the problems reported for algorithms/sorter`}},
		{"an invalid wrap file, the workflow told", map[string][]byte{"algorithms/sorter_info.json": []byte("{"), seedWorkflowFile: workflowFile}, nil, []string{
			`algorithms/sorter_info.json`,
			`process.algorithms[0].name: algorithm "sorter" is invalid: fix the problems reported for algorithms/sorter_info.json first`}},
		{"x.json and x_info.json of other names", map[string][]byte{"algorithms/sorter_info.json": alg("sorter_info"), "algorithms/sorter.json": alg("sorter")}, []string{"sorter", "sorter_info"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, errs := loadNotes(t, tt.files)
			checkProblems(t, nil, errs, tt.errs)
			var loaded []string
			for n := range cfg.Algorithms {
				loaded = append(loaded, n)
			}
			slices.Sort(loaded)
			if !slices.Equal(loaded, tt.loaded) {
				t.Errorf("algorithms loaded: %q, want %q", loaded, tt.loaded)
			}
		})
	}
}

// TestWrappedAlgorithmInWorkflow: a workflow using an algorithm saved by
// the original wrap needs none of the eight injected variables; the
// dropped keys are a note of the workflow (it changes what the pipeline
// does), unless it maps keys from a secret; a workflow's own value for a
// variable the old setup-pipe set is noted; the rest is not.
func TestWrappedAlgorithmInWorkflow(t *testing.T) {
	const (
		algFile  = "algorithms/change123-s3_info.json"
		credNote = "algorithms/change123-s3_info.json:47:7: note: user_specified_environment_variables[6].name: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are dropped"
	)
	algData := mustJSON(t, wrapped(t))
	tests := []struct {
		name      string
		change    func(w map[string]any)
		workflow  []string // Workflow.Notes
		fileNotes []string // notes of the workflow file in Config.Notes
	}{
		{"the guide's workflow", func(map[string]any) {}, []string{credNote}, []string{"key_pair: key_pair is ignored"}},
		{"task_credentials_secret gives keys", func(w map[string]any) {
			w["task_credentials_secret"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf"
		}, nil, []string{"key_pair: key_pair is ignored"}},
		{"keys under secrets", func(w map[string]any) {
			w["secrets"] = map[string]any{
				"AWS_ACCESS_KEY_ID":     "arn:aws:secretsmanager:us-east-1:123456789012:secret:id-AbCdEf",
				"AWS_SECRET_ACCESS_KEY": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key-AbCdEf",
			}
		}, nil, []string{"key_pair: key_pair is ignored"}},
		{"the workflow's NAME and sqs", func(w map[string]any) {
			delete(w, "key_pair")
			vars := step0(w)["variables"].(map[string]any)
			vars["NAME"], vars["sqs"] = "mine", "my-queue"
			vars["LOG_LVL"], vars["AWS_DEFAULT_OUTPUT"] = "DEBUG", "text" // always the user's to set: no note
		}, []string{
			credNote,
			"process.algorithms[0].variables.NAME: NAME is set by the runner to the algorithm's name when a workflow leaves it out (the original setup-pipe always set it): this value replaces that",
			"process.algorithms[0].variables.sqs: sqs is set by the runner to the URL of the stage's work queue",
		}, []string{"variables.NAME: NAME is set by the runner", "variables.sqs: sqs is set by the runner"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := baseWorkflow()
			tt.change(w)
			wf := mustJSON(t, w)
			cfg, errs := loadNotes(t, map[string][]byte{seedWorkflowFile: wf, algFile: algData})
			if len(errs) > 0 || len(cfg.Workflows) != 1 {
				t.Fatalf("workflow:\n%s\nerrors: %v", wf, errs)
			}
			got := cfg.Workflows[0]
			checkProblems(t, wf, got.Notes, tt.workflow)
			var fileNotes workflow.Problems
			for _, n := range cfg.Notes {
				if n.File == seedWorkflowFile {
					fileNotes = append(fileNotes, n)
				}
			}
			checkProblems(t, wf, fileNotes, tt.fileNotes)
			for _, v := range got.Stages[0].Algorithm.UserSpecifiedEnvironmentVariables {
				_, injected := workflow.Injected(v.Name)
				if v.Required == injected {
					t.Errorf("%s: required %v after loading; only TEST_ENV stays required", v.Name, v.Required)
				}
			}
		})
	}
}

// TestProblemLevel: a note prints as one and says so in JSON; an error made
// without a level is an error in JSON too.
func TestProblemLevel(t *testing.T) {
	e := workflow.Problem{File: "workflows/a.json", Line: 2, Col: 3, Path: "region", Msg: "bad"}
	n := workflow.Problem{File: "workflows/a.json", Line: 4, Col: 5, Path: "key_pair", Level: workflow.LevelNote, Msg: "ignored"}
	if got, want := n.String(), "workflows/a.json:4:5: note: key_pair: ignored"; got != want {
		t.Errorf("note prints %q, want %q", got, want)
	}
	if got, want := e.String(), "workflows/a.json:2:3: region: bad"; got != want {
		t.Errorf("error prints %q, want %q", got, want)
	}
	for _, tc := range []struct {
		p    workflow.Problem
		want string
	}{{e, "error"}, {n, "note"}} {
		b, err := json.Marshal(tc.p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["level"] != tc.want || m["message"] != tc.p.Msg || m["line"] != float64(tc.p.Line) {
			t.Errorf("JSON of %v = %s, want level %q and the other fields", tc.p, b, tc.want)
		}
	}
	ps := workflow.Problems{e, n}
	if errs, notes := ps.Errors(), ps.Notes(); len(errs) != 1 || errs[0] != e || len(notes) != 1 || notes[0] != n {
		t.Errorf("Errors() = %v, Notes() = %v", errs, notes)
	}
}
