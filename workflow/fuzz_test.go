package workflow_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

const (
	fuzzWorkflowFile  = "workflows/fuzz.json"
	fuzzAlgorithmFile = "algorithms/change123-s3.json"
)

// fuzzSeeds returns the JSON files of testdata (the seed and every golden
// case), split into workflow and algorithm files, plus a few hand-made
// variants the golden cases do not spell.
func fuzzSeeds(f *testing.F) (workflows, algorithms [][]byte) {
	f.Helper()
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(filepath.ToSlash(p), "/algorithms/") {
			algorithms = append(algorithms, data)
		} else {
			workflows = append(workflows, data)
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	wf, _ := fixedSeed(f)
	for _, s := range []string{
		strings.Replace(string(wf), `"port": []`, `"port": [9090, {"port": 9090, "protocol": "tcp"}]`, 1),
		strings.Replace(string(wf), `"key_pair"`, `"secrets": {"TEST_ENV": "`+arn+`:k::"}, "retain_buckets": false, "max_tasks": 3, "suspend": true, "key_pair"`, 1),
		strings.Replace(string(wf), `"wyx-cci"`, `"\u003c\ud83d\ude00\ud800\u2028"`, 1),
		`{"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		`{"region": "us-east-1", "region": "us-east-1"}`,
		"{\"key_pair\": \"\xff\"}",
	} {
		workflows = append(workflows, []byte(s))
	}
	return workflows, algorithms
}

// checkPositions checks what every problem must satisfy, whatever the input:
// a file, a position inside that file's bytes or none, and no decode failure
// after the schema pass accepted a file (that would be a gap between the
// schema and the Go types).
func checkPositions(t *testing.T, ps workflow.Problems, inputs map[string][]byte) {
	t.Helper()
	for _, p := range ps {
		if p.File == "" {
			t.Errorf("problem without a file: %v", p)
		}
		if p.Msg == "" {
			t.Errorf("problem without a message: %v", p)
		}
		if strings.Contains(p.Msg, "cannot decode the file") {
			t.Errorf("schema pass accepted what encoding/json refused: %v", p)
		}
		if p.Line == 0 {
			if p.Col != 0 || p.Path != "" {
				t.Errorf("problem without a line has a column or path: %#v", p)
			}
			continue
		}
		data, ok := inputs[p.File]
		if !ok {
			t.Errorf("position in a file that is not an input: %v", p)
			continue
		}
		lines := bytes.Split(data, []byte("\n"))
		if p.Line < 1 || p.Line > len(lines) || p.Col < 1 || p.Col > len(lines[p.Line-1])+1 {
			t.Errorf("position %d:%d outside the input (%d lines): %v", p.Line, p.Col, len(lines), p)
		}
	}
	if !sortedProblems(ps) {
		t.Errorf("problems not sorted:\n%v", ps)
	}
}

func sortedProblems(ps workflow.Problems) bool {
	for i := 1; i < len(ps); i++ {
		a, b := ps[i-1], ps[i]
		if a.File != b.File {
			if a.File > b.File {
				return false
			}
			continue
		}
		if a.Line > b.Line || a.Line == b.Line && a.Col > b.Col {
			return false
		}
	}
	return true
}

// FuzzParseWorkflow: no input panics; problems are well placed; a valid
// workflow, re-encoded with json.Marshal, parses back to the same value.
func FuzzParseWorkflow(f *testing.F) {
	workflows, _ := fuzzSeeds(f)
	for _, w := range workflows {
		f.Add(w)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, ps := workflow.ParseWorkflow(fuzzWorkflowFile, data)
		checkPositions(t, ps, map[string][]byte{fuzzWorkflowFile: data})
		if (w == nil) == (len(ps) == 0) {
			t.Fatalf("workflow %v with %d problems", w, len(ps))
		}
		if w == nil {
			return
		}
		again := reparse(t, w, func(b []byte) (any, workflow.Problems) { return workflow.ParseWorkflow(fuzzWorkflowFile, b) })
		if again != nil && !reflect.DeepEqual(again, w) {
			t.Fatalf("re-encoded workflow parses differently:\n%+v\n%+v", w, again)
		}
	})
}

// FuzzParseAlgorithm is FuzzParseWorkflow for algorithm files.
func FuzzParseAlgorithm(f *testing.F) {
	_, algorithms := fuzzSeeds(f)
	for _, a := range algorithms {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, ps := workflow.ParseAlgorithm(fuzzAlgorithmFile, data)
		checkPositions(t, ps, map[string][]byte{fuzzAlgorithmFile: data})
		if (a == nil) == (len(ps) == 0) {
			t.Fatalf("algorithm %v with %d problems", a, len(ps))
		}
		if a == nil {
			return
		}
		again := reparse(t, a, func(b []byte) (any, workflow.Problems) { return workflow.ParseAlgorithm(fuzzAlgorithmFile, b) })
		if again != nil && !reflect.DeepEqual(again, a) {
			t.Fatalf("re-encoded algorithm parses differently:\n%+v\n%+v", a, again)
		}
	})
}

// reparse encodes v with json.Marshal and parses it again, which must
// succeed. It returns nil when the encoding is over the size limit: escaping
// (json.Marshal writes "<" as \u003c) can make a valid file near 1 MiB grow
// past it, and then the property cannot hold.
func reparse[T any](t *testing.T, v *T, parse func([]byte) (any, workflow.Problems)) *T {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if len(enc) > 1<<20 {
		return nil
	}
	got, ps := parse(enc)
	if len(ps) > 0 {
		t.Fatalf("re-encoded value is invalid:\n%s\n%v", enc, ps)
	}
	return got.(*T)
}

// FuzzLoad: a fuzzed workflow next to a fuzzed algorithm. Besides the
// per-file properties, a valid workflow re-encoded with json.Marshal (and its
// algorithm too) loads again with the same spec hash.
func FuzzLoad(f *testing.F) {
	workflows, algorithms := fuzzSeeds(f)
	_, seedAlg := readSeed(f)
	for _, w := range workflows {
		f.Add(w, seedAlg)
	}
	wf, _ := fixedSeed(f)
	for _, a := range algorithms {
		f.Add(wf, a)
	}
	f.Fuzz(func(t *testing.T, wfData, algData []byte) {
		inputs := map[string][]byte{fuzzWorkflowFile: wfData, fuzzAlgorithmFile: algData}
		cfg, ps := workflow.Load(repo(inputs))
		checkPositions(t, ps, inputs)
		for _, p := range ps {
			if p.File == fuzzWorkflowFile && len(cfg.Workflows) > 0 {
				t.Fatalf("workflow with a problem is in Config.Workflows: %v", p)
			}
			if p.File == fuzzAlgorithmFile && len(cfg.Algorithms) > 0 {
				t.Fatalf("algorithm with a problem is in Config.Algorithms: %v", p)
			}
		}
		if len(cfg.Workflows) == 0 {
			return
		}
		w := cfg.Workflows[0]
		if w.SpecHash == "" || len(w.Stages) != len(w.Process.Algorithms) {
			t.Fatalf("valid workflow without hash or stages: %+v", w)
		}
		wfEnc, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		algEnc, err := json.Marshal(cfg.Algorithms["change123-s3"])
		if err != nil {
			t.Fatal(err)
		}
		if len(wfEnc) > 1<<20 || len(algEnc) > 1<<20 {
			return // see reparse
		}
		for name, files := range map[string]map[string][]byte{
			"workflow re-encoded":               {fuzzWorkflowFile: wfEnc, fuzzAlgorithmFile: algData},
			"workflow and algorithm re-encoded": {fuzzWorkflowFile: wfEnc, fuzzAlgorithmFile: algEnc},
		} {
			cfg2, ps2 := workflow.Load(repo(files))
			if len(ps2) > 0 || len(cfg2.Workflows) != 1 {
				t.Fatalf("%s: invalid:\n%s\n%v", name, wfEnc, ps2)
			}
			if got := cfg2.Workflows[0].SpecHash; got != w.SpecHash {
				t.Fatalf("%s: spec hash %s, was %s", name, got, w.SpecHash)
			}
		}
	})
}
