package workflow_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestLoadSeed: the seed, unchanged, has exactly one problem, the placeholder
// account id; with a real id it loads clean. Both on os.DirFS and MapFS.
func TestLoadSeed(t *testing.T) {
	wf, alg := readSeed(t)
	for name, fsys := range map[string]fs.FS{
		"DirFS":  os.DirFS(filepath.Join("testdata", "seed")),
		"MapFS":  repo(map[string][]byte{seedWorkflowFile: wf, seedAlgorithmFile: alg, "README.md": []byte("x")}),
		"copied": copyToDir(t, map[string][]byte{seedWorkflowFile: wf, seedAlgorithmFile: alg}),
	} {
		t.Run(name, func(t *testing.T) {
			cfg, ps := workflow.Load(fsys)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got %d:\n%v", len(ps), ps)
			}
			p := ps[0]
			if p.File != seedWorkflowFile || p.Path != "account_id" || p.Line != 5 || p.Col != 19 {
				t.Errorf("problem at %s:%d:%d %s, want %s:5:19 account_id", p.File, p.Line, p.Col, p.Path, seedWorkflowFile)
			}
			for _, s := range []string{"account_id", "12-digit", "drop the field", "credentials"} {
				if !strings.Contains(p.Msg, s) {
					t.Errorf("message %q does not mention %q", p.Msg, s)
				}
			}
			if len(cfg.Workflows) != 0 {
				t.Errorf("Workflows = %v, want none: the only workflow is invalid", cfg.Workflows)
			}
			if cfg.Algorithms["change123-s3"] == nil {
				t.Errorf("Algorithms = %v, want change123-s3", cfg.Algorithms)
			}
		})
	}

	fixed, _ := fixedSeed(t)
	cfg, ps := workflow.Load(repo(map[string][]byte{seedWorkflowFile: fixed, seedAlgorithmFile: alg}))
	if len(ps) > 0 {
		t.Fatalf("fixed seed: %v", ps)
	}
	if len(cfg.Workflows) != 1 {
		t.Fatalf("Workflows = %v, want single-run", cfg.Workflows)
	}
	w := cfg.Workflows[0]
	if w.Name != "single-run" || w.File != seedWorkflowFile {
		t.Errorf("Name, File = %q, %q", w.Name, w.File)
	}
	if len(w.Stages) != 1 || w.Stages[0].Index != 0 || w.Stages[0].Algorithm != cfg.Algorithms["change123-s3"] ||
		!reflect.DeepEqual(w.Stages[0].Step, w.Process.Algorithms[0]) {
		t.Errorf("Stages = %+v", w.Stages)
	}
	if len(w.SpecHash) != 64 || strings.Trim(w.SpecHash, "0123456789abcdef") != "" {
		t.Errorf("SpecHash = %q, want 64 hex digits", w.SpecHash)
	}
}

// copyToDir writes files into a temporary directory and returns it as an
// os.DirFS.
func copyToDir(t *testing.T, files map[string][]byte) fs.FS {
	t.Helper()
	dir := t.TempDir()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return os.DirFS(dir)
}

// TestLoadLayout: what Load reads and what it ignores, the same on MapFS and
// os.DirFS.
func TestLoadLayout(t *testing.T) {
	wf, alg := fixedSeed(t)
	bad := []byte("{")
	tests := []struct {
		name      string
		files     map[string][]byte
		workflows []string
		problems  []string // files with problems
	}{
		{"empty repository", map[string][]byte{"README.md": []byte("hi")}, nil, nil},
		{"algorithms only", map[string][]byte{seedAlgorithmFile: alg}, nil, nil},
		{"workflows only", map[string][]byte{seedWorkflowFile: wf}, nil, []string{seedWorkflowFile}},
		{"ignored files", map[string][]byte{
			seedWorkflowFile: wf, seedAlgorithmFile: alg,
			"workflows/notes.txt":          bad,
			"workflows/old.json.bak":       bad,
			"workflows/UPPER.JSON":         bad,
			"workflows/sub/x.json":         bad,
			"algorithms/drafts/a.json":     bad,
			"algorithms/README.md":         bad,
			"other/workflows/x.json":       bad,
			"workflow.json":                bad,
			"workflows/dir.json/foo.json":  bad,
			"algorithms/dir.json/foo.json": bad,
		}, []string{"single-run"}, nil},
		{"sorted by name", map[string][]byte{
			"workflows/zeta.json":  bytes.ReplaceAll(wf, []byte("container-clouds"), []byte("zeta")),
			"workflows/alpha.json": bytes.ReplaceAll(wf, []byte("container-clouds"), []byte("alpha")),
			"workflows/mid.json":   bytes.ReplaceAll(wf, []byte("container-clouds"), []byte("mid")),
			seedAlgorithmFile:      alg,
		}, []string{"alpha", "mid", "zeta"}, nil},
		{"one bad file hides nothing", map[string][]byte{
			"workflows/good.json": wf, "workflows/bad.json": bad, seedAlgorithmFile: alg, "algorithms/broken.json": bad,
		}, []string{"good"}, []string{"algorithms/broken.json", "workflows/bad.json"}},
	}
	for _, tt := range tests {
		for kind, fsys := range map[string]fs.FS{"MapFS": repo(tt.files), "DirFS": copyToDir(t, tt.files)} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				cfg, ps := workflow.Load(fsys)
				var names []string
				for _, w := range cfg.Workflows {
					names = append(names, w.Name)
				}
				if !reflect.DeepEqual(names, tt.workflows) {
					t.Errorf("workflows = %v, want %v", names, tt.workflows)
				}
				files := map[string]bool{}
				for _, p := range ps {
					files[p.File] = true
				}
				var got []string
				for _, p := range ps {
					if files[p.File] {
						got = append(got, p.File)
						delete(files, p.File)
					}
				}
				if !reflect.DeepEqual(got, tt.problems) {
					t.Errorf("problems in %v, want in %v:\n%v", got, tt.problems, ps)
				}
			})
		}
	}
}

// TestLoadSpecialFiles: files Load must not read, and read errors.
func TestLoadSpecialFiles(t *testing.T) {
	wf, alg := fixedSeed(t)
	tests := []struct {
		name string
		fsys fs.FS
		want []string
	}{
		{"named pipe", fstest.MapFS{
			seedAlgorithmFile:  {Data: alg},
			"workflows/p.json": {Mode: fs.ModeNamedPipe},
		}, []string{"workflows/p.json: is not a regular file: replace it with a JSON file or remove it"}},
		{"over 1 MiB by size", fstest.MapFS{
			seedAlgorithmFile:    {Data: alg},
			"workflows/big.json": {Data: make([]byte, 1<<20+1)},
		}, []string{"workflows/big.json: the file is 1048577 bytes; workflow and algorithm files are limited to 1048576 bytes (1 MiB)"}},
		{"exactly 1 MiB is read", fstest.MapFS{
			seedAlgorithmFile:    {Data: alg},
			"workflows/big.json": {Data: append(append([]byte{}, wf...), bytes.Repeat([]byte{' '}, 1<<20-len(wf))...)},
		}, nil},
		{"unreadable file", failingFS{fstest.MapFS{
			seedAlgorithmFile:  {Data: alg},
			"workflows/w.json": {Data: wf},
		}, "workflows/w.json"}, []string{"workflows/w.json: cannot read the file: open workflows/w.json: permission denied"}},
		{"unreadable algorithm", failingFS{fstest.MapFS{
			seedAlgorithmFile:  {Data: alg},
			"workflows/w.json": {Data: wf},
		}, seedAlgorithmFile}, []string{
			seedAlgorithmFile + ": cannot read the file: open algorithms/change123-s3.json: permission denied",
			`workflows/w.json:13:25: process.algorithms[0].name: algorithm "change123-s3" is invalid: fix the problems reported for algorithms/change123-s3.json first`}},
		{"algorithm over 1 MiB", fstest.MapFS{
			"algorithms/change123-s3.json": {Data: make([]byte, 1<<20+1)},
			"workflows/w.json":             {Data: wf},
		}, []string{
			"algorithms/change123-s3.json: the file is 1048577 bytes",
			`workflows/w.json:13:25: process.algorithms[0].name: algorithm "change123-s3" is invalid: fix the problems reported for algorithms/change123-s3.json first`}},
		{"workflows is a file", fstest.MapFS{"workflows": {Data: []byte("x")}}, []string{"workflows: cannot read the directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := workflow.Load(tt.fsys)
			checkProblems(t, nil, ps, tt.want)
		})
	}
}

// failingFS fails to open one file, as a permission problem would.
type failingFS struct {
	fs.FS
	fail string
}

func (f failingFS) Open(name string) (fs.File, error) {
	if name == f.fail {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f.FS.Open(name)
}

// TestLoadCrossFile covers the rules between files.
func TestLoadCrossFile(t *testing.T) {
	wf, alg := fixedSeed(t)
	other := func(prefix string) []byte { return bytes.ReplaceAll(wf, []byte("container-clouds"), []byte(prefix)) }
	tests := []struct {
		name      string
		files     map[string][]byte
		workflows []string
		want      []string
	}{
		{"distinct buckets", map[string][]byte{"workflows/a.json": other("a"), "workflows/b.json": other("b"), seedAlgorithmFile: alg},
			[]string{"a", "b"}, nil},
		{"same input bucket", map[string][]byte{"workflows/a.json": wf, "workflows/b.json": bytes.Replace(wf, []byte("container-clouds-output"), []byte("b-out"), 1), "workflows/c.json": other("c"), seedAlgorithmFile: alg},
			[]string{"c"}, []string{
				`workflows/a.json:2:22: input_s3_name: bucket "container-clouds-input" is also used by workflows/b.json (input_s3_name): a bucket belongs to one workflow, choose another name`,
				`workflows/b.json:2:22: input_s3_name: bucket "container-clouds-input" is also used by workflows/a.json (input_s3_name)`}},
		{"output of one is input of another", map[string][]byte{"workflows/a.json": other("a"), "workflows/b.json": bytes.Replace(other("b"), []byte("b-input"), []byte("a-output"), 1), seedAlgorithmFile: alg},
			nil, []string{
				`workflows/a.json:3:23: output_s3_name: bucket "a-output" is also used by workflows/b.json (input_s3_name)`,
				`workflows/b.json:2:22: input_s3_name: bucket "a-output" is also used by workflows/a.json (output_s3_name)`}},
		{"three claim one bucket", map[string][]byte{"workflows/a.json": other("a"), "workflows/b.json": bytes.Replace(other("b"), []byte("b-input"), []byte("a-input"), 1),
			"workflows/c.json": bytes.Replace(other("c"), []byte("c-output"), []byte("a-input"), 1), seedAlgorithmFile: alg},
			nil, []string{
				`workflows/a.json:2:22: input_s3_name: bucket "a-input" is also used by workflows/b.json (input_s3_name), workflows/c.json (output_s3_name)`,
				`workflows/b.json:2:22: input_s3_name: bucket "a-input" is also used by workflows/a.json (input_s3_name), workflows/c.json (output_s3_name)`,
				`workflows/c.json:3:23: output_s3_name: bucket "a-input" is also used by workflows/a.json (input_s3_name), workflows/b.json (input_s3_name)`}},
		{"bucket clash with an otherwise invalid workflow", map[string][]byte{"workflows/a.json": wf, "workflows/b.json": bytes.Replace(wf, []byte(`"us-east-1"`), []byte(`"nowhere"`), 1), seedAlgorithmFile: alg},
			nil, []string{
				"workflows/a.json:2:22: input_s3_name: bucket \"container-clouds-input\" is also used by workflows/b.json",
				"workflows/a.json:3:23: output_s3_name: bucket \"container-clouds-output\" is also used by workflows/b.json",
				"workflows/b.json:2:22: input_s3_name: bucket \"container-clouds-input\" is also used by workflows/a.json",
				"workflows/b.json:3:23: output_s3_name: bucket \"container-clouds-output\" is also used by workflows/a.json",
				`workflows/b.json:6:14: region: "nowhere" is not an AWS region`}},
		{"unknown algorithm", map[string][]byte{"workflows/w.json": wf, "algorithms/other.json": bytes.Replace(alg, []byte(`"change123-s3"`), []byte(`"other"`), 1)},
			nil, []string{`workflows/w.json:13:25: process.algorithms[0].name: unknown algorithm "change123-s3": expected the file algorithms/change123-s3.json; the algorithms are: other`}},
		{"invalid algorithm", map[string][]byte{"workflows/w.json": wf, seedAlgorithmFile: bytes.Replace(alg, []byte(`"CPU": 1`), []byte(`"CPU": 0`), 1)},
			nil, []string{
				seedAlgorithmFile + ":15:12: CPU: CPU must be a positive number of vCPUs",
				`workflows/w.json:13:25: process.algorithms[0].name: algorithm "change123-s3" is invalid: fix the problems reported for algorithms/change123-s3.json first`}},
		{"algorithm that does not parse", map[string][]byte{"workflows/w.json": wf, seedAlgorithmFile: []byte("{")},
			nil, []string{
				seedAlgorithmFile + `:1:2: unexpected end of file: missing "}"`,
				`workflows/w.json:13:25: process.algorithms[0].name: algorithm "change123-s3" is invalid: fix the problems reported for algorithms/change123-s3.json`}},
		{"algorithm misnamed", map[string][]byte{"workflows/w.json": wf, "algorithms/change.json": alg},
			nil, []string{
				`algorithms/change.json:8:13: name: name "change123-s3" does not match the file name: set it to "change", or rename the file to algorithms/change123-s3.json`,
				`workflows/w.json:13:25: process.algorithms[0].name: unknown algorithm "change123-s3": expected the file algorithms/change123-s3.json; the algorithms are: change`}},
		{"workflow invalid on its own still gets cross-file checks", map[string][]byte{"workflows/w.json": bytes.Replace(wf, []byte(`"TEST_ENV"`), []byte(`"TEST_EMV"`), 1), seedAlgorithmFile: alg, "workflows/x.json": []byte(`{"regoin": 1}`)},
			nil, []string{
				`workflows/w.json:16:17: process.algorithms[0].variables: TEST_ENV is required by algorithm change123-s3: add it under variables`,
				`workflows/w.json:17:21: process.algorithms[0].variables.TEST_EMV: TEST_EMV is not declared by algorithm change123-s3 (did you mean TEST_ENV?); declared: TEST_ENV`,
				`workflows/x.json:1:1: input_s3_name: required field is missing`,
				`workflows/x.json:1:1: output_s3_name: required field is missing`,
				`workflows/x.json:1:1: process: required field is missing`,
				`workflows/x.json:1:1: region: required field is missing`,
				`workflows/x.json:1:2: regoin: unknown field "regoin": did you mean "region"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ps := workflow.Load(repo(tt.files))
			checkProblems(t, nil, ps, tt.want)
			var names []string
			for _, w := range cfg.Workflows {
				names = append(names, w.Name)
			}
			if !reflect.DeepEqual(names, tt.workflows) {
				t.Errorf("workflows = %v, want %v", names, tt.workflows)
			}
		})
	}
}

// TestLoadSequence: a sequence_run resolves one stage per step, in order.
func TestLoadSequence(t *testing.T) {
	_, alg := fixedSeed(t)
	second := []byte(`{"container_name": "img", "input_file_path": "/in", "output_file_path": "/out", "run_command": "run $input", "name": "second",
		"memory": {"minimal": 1, "suggested": 1}, "CPU": 1, "user_specified_environment_variables": [{"name": "DB_PASSWORD", "required": true}]}`)
	w := baseWorkflow()
	w["process"] = map[string]any{"type": "sequence_run", "algorithms": []any{
		map[string]any{"name": "change123-s3", "variables": map[string]any{"TEST_ENV": "x"}},
		map[string]any{"name": "second"},
	}}
	w["secrets"] = map[string]any{"DB_PASSWORD": arn}
	cfg, ps := workflow.Load(repo(map[string][]byte{"workflows/seq.json": mustJSON(t, w), seedAlgorithmFile: alg, "algorithms/second.json": second}))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	st := cfg.Workflows[0].Stages
	if len(st) != 2 || st[0].Algorithm.Name != "change123-s3" || st[1].Algorithm.Name != "second" || st[1].Index != 1 || st[1].Step.Name != "second" {
		t.Errorf("Stages = %+v", st)
	}
}
