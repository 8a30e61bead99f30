package workflow_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// TestMemory: hostile files of about 1 MiB are handled with bounded memory.
// The assertion is on bytes allocated by Load (runtime.MemStats.TotalAlloc),
// which must stay under 10 times the file's size, including reading it.
func TestMemory(t *testing.T) {
	const size = 1 << 20
	// fill repeats unit after prefix up to size bytes, then adds suffix.
	fill := func(prefix, unit, suffix string) string {
		n := (size - len(prefix) - len(suffix)) / len(unit)
		return prefix + strings.Repeat(unit, n) + suffix
	}
	vars := func(n, valueLen int) string {
		var b strings.Builder
		b.WriteString(`{"input_s3_name": "in-bucket", "output_s3_name": "out-bucket", "region": "us-east-1", "process": {"type": "single_run", "algorithms": [{"name": "a", "variables": {`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"V%d": "%s"`, i, strings.Repeat("v", valueLen))
		}
		b.WriteString("}}]}}")
		return b.String()
	}
	tests := []struct {
		name string
		data string
		want string // part of a problem
	}{
		{"deep nesting", fill(`{"process": `, "[", ""), "nested more than 32 levels deep"},
		{"deep nesting of objects", fill(`{"x": `, `{"a":`, ""), "nested more than 32 levels deep"},
		{"huge string", fill(`{"key_pair": "`, "x", `"}`), "key_pair: is"},
		{"huge escaped string", fill(`{"key_pair": "`, `\u00e9`, `"}`), "key_pair: is"},
		{"huge key", fill(`{"`, "k", `": 1}`), "unknown field"},
		{"huge number", fill(`{"max_tasks": `, "1", `}`), "digit number"},
		{"many numbers", fill(`{"x": [`, "0,", `0]}`), "unknown field"},
		{"many keys", fill(`{"x": {`, `"a":0,`, `"a":0}}`), "unknown field"},
		{"many unknown fields", fill(`{`, `"a":0,`, `"a":0}`), "unknown field"},
		{"many variables", fill(`{"process": {"algorithms": [{"variables": {`, `"A": "",`, `"A": ""}}]}}`), "duplicate key"},
		{"many distinct variables", vars(80000, 0), "has more than 200 variables"},
		{"many steps", fill(`{"process": {"algorithms": [`, `{"name":"a"},`, `{"name":"a"}]}}`), "required field is missing"},
		{"many empty objects", fill(`{"x": [`, "{},", "{}]}"), "unknown field"},
		{"biggest valid variables", vars(30, 32<<10), "unknown algorithm"},
		{"many problems after decoding", manySteps(20, 199, 250), "more than 50 problems"},
		{"unclosed string", fill(`{"key_pair": "`, "x", ""), "string not closed"},
		{"over the limit", fill(`{"key_pair": "`, "x", `"}`) + "    ", "limited to 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.data)
			if len(data) > size+8 || len(data) < size/2 {
				t.Fatalf("test input is %d bytes, want about 1 MiB", len(data))
			}
			_, alg := readSeed(t)
			fsys := fstest.MapFS{"workflows/w.json": {Data: data}, seedAlgorithmFile: {Data: alg}}
			var ps workflow.Problems
			alloc := allocated(func() { _, ps = workflow.Load(fsys) })
			if !strings.Contains(ps.Error(), tt.want) {
				t.Fatalf("problems:\n%.2000s\nwant one containing %q", ps.Error(), tt.want)
			}
			ratio := float64(alloc) / float64(len(data))
			t.Logf("%d bytes allocated for %d bytes of input: %.2fx", alloc, len(data), ratio)
			if ratio > 10 {
				t.Errorf("Load allocated %d bytes for a %d-byte file (%.1fx), want at most 10x", alloc, len(data), ratio)
			}
		})
	}
}

// allocated returns the bytes allocated while f runs, the least of three runs
// (other goroutines of the test binary can allocate meanwhile).
func allocated(f func()) uint64 {
	best := ^uint64(0)
	for range 3 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		best = min(best, after.TotalAlloc-before.TotalAlloc)
	}
	return best
}

// manySteps is a sequence_run of the seed algorithm with many undeclared
// variables per step: a valid shape with thousands of semantic problems.
func manySteps(steps, vars, valueLen int) string {
	var b strings.Builder
	b.WriteString(`{"input_s3_name": "in-bucket", "output_s3_name": "out-bucket", "region": "us-east-1", "process": {"type": "sequence_run", "algorithms": [`)
	for s := range steps {
		if s > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name": "change123-s3", "variables": {"TEST_ENV": "x"`)
		for i := range vars {
			fmt.Fprintf(&b, `, "V%d": "%s"`, i, strings.Repeat("v", valueLen))
		}
		b.WriteString("}}")
	}
	b.WriteString("]}}")
	return b.String()
}
