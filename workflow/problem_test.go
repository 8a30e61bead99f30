package workflow_test

import (
	"errors"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

func TestProblemString(t *testing.T) {
	tests := []struct {
		name string
		p    workflow.Problem
		want string
	}{
		{"full", workflow.Problem{File: "workflows/foo.json", Line: 7, Col: 15, Path: "process.algorithms[0].variables", Msg: "TEST_ENV is required by algorithm change123-s3"},
			"workflows/foo.json:7:15: process.algorithms[0].variables: TEST_ENV is required by algorithm change123-s3"},
		{"no position", workflow.Problem{File: "workflows/Foo.json", Path: "x", Msg: "m"}, "workflows/Foo.json: x: m"},
		{"whole file", workflow.Problem{File: "workflows/foo.json", Line: 1, Col: 1, Msg: "m"}, "workflows/foo.json:1:1: m"},
		{"whole file no position", workflow.Problem{File: "algorithms/a.json", Msg: "the file is empty"}, "algorithms/a.json: the file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProblemsError(t *testing.T) {
	ps := workflow.Problems{
		{File: "a.json", Line: 1, Col: 2, Msg: "one"},
		{File: "b.json", Msg: "two"},
	}
	var err error = ps
	if got, want := err.Error(), "a.json:1:2: one\nb.json: two"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var as workflow.Problems
	if !errors.As(err, &as) || len(as) != 2 {
		t.Errorf("errors.As(Problems) = %v", as)
	}
}

func TestProblemsSorted(t *testing.T) {
	wf, alg := fixedSeed(t)
	bad := []byte(`{"region": 1, "input_s3_name": 2}`)
	_, ps := workflow.Load(repo(map[string][]byte{
		"workflows/b.json":   bad,
		"workflows/a.json":   bad,
		"workflows/c.json":   wf,
		"algorithms/x.json":  []byte("[]"),
		seedAlgorithmFile:    alg,
		"workflows/Bad.json": wf,
	}))
	for i := 1; i < len(ps); i++ {
		a, b := ps[i-1], ps[i]
		if a.File > b.File || a.File == b.File && (a.Line > b.Line || a.Line == b.Line && a.Col > b.Col) {
			t.Errorf("problems not sorted at %d:\n%s\n%s", i, a, b)
		}
	}
	if len(ps) < 8 {
		t.Errorf("want problems from every bad file, got:\n%v", ps)
	}
}
