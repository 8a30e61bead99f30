package workflow_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/workflow"
)

const (
	seedWorkflowFile  = "workflows/single-run.json"
	seedAlgorithmFile = "algorithms/change123-s3.json"
)

// readSeed returns the seed's files as they are in testdata/seed.
func readSeed(tb testing.TB) (wf, alg []byte) {
	tb.Helper()
	wf, err := os.ReadFile(filepath.Join("testdata", "seed", seedWorkflowFile))
	if err != nil {
		tb.Fatal(err)
	}
	alg, err = os.ReadFile(filepath.Join("testdata", "seed", seedAlgorithmFile))
	if err != nil {
		tb.Fatal(err)
	}
	return wf, alg
}

// fixedSeed is the seed workflow with a real-looking account id: valid.
func fixedSeed(tb testing.TB) (wf, alg []byte) {
	tb.Helper()
	wf, alg = readSeed(tb)
	fixed := strings.Replace(string(wf), "your-aws-account-id", "123456789012", 1)
	return []byte(fixed), alg
}

// baseWorkflow is a valid workflow for the seed algorithm, as a value tests
// can change before encoding it.
func baseWorkflow() map[string]any {
	return map[string]any{
		"input_s3_name":  "container-clouds-input",
		"output_s3_name": "container-clouds-output",
		"key_pair":       "wyx-cci",
		"account_id":     "123456789012",
		"region":         "us-east-1",
		"process": map[string]any{
			"type": "single_run",
			"algorithms": []any{map[string]any{
				"name": "change123-s3", "port": []any{}, "variables": map[string]any{"TEST_ENV": "blah"},
			}},
		},
	}
}

// baseAlgorithm is the seed algorithm as a value.
func baseAlgorithm(tb testing.TB) map[string]any {
	tb.Helper()
	_, alg := readSeed(tb)
	var m map[string]any
	if err := json.Unmarshal(alg, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func step0(w map[string]any) map[string]any {
	return w["process"].(map[string]any)["algorithms"].([]any)[0].(map[string]any)
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkProblems fails unless got has exactly one problem per want, in order,
// each containing its want string ("path: message part").
func checkProblems(t *testing.T, input []byte, got workflow.Problems, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.Contains(got[i].String(), want[i])
	}
	if !ok {
		t.Errorf("input:\n%s\ngot %d problems:\n%v\nwant %d, containing:\n%s", input, len(got), got.Error(), len(want), strings.Join(want, "\n"))
	}
}

// repo builds a config repository from path -> content.
func repo(files map[string][]byte) fstest.MapFS {
	fsys := fstest.MapFS{}
	for p, data := range files {
		fsys[p] = &fstest.MapFile{Data: data}
	}
	return fsys
}
