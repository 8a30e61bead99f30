package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// The fixture testdata/import/cloud_pipe is a ~/.cloud_pipe directory as the
// original project left it: algorithms/<name>_info.json as its wrap wrote
// them (the eight injected variables, one with "CPU": {}), and a task file
// of credentials whose values are fake and must never come out again.
const (
	importOld    = "testdata/import/cloud_pipe"
	fakeKeyID    = "FAKE-IMPORT-KEY-ID-NOT-REAL"
	fakeKeyValue = "fake-import-secret-value-never-print"
)

var importWorkflows = []string{"testdata/import/workflows/single-run.json", "testdata/import/workflows/word-count.json"}

func importRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = dispatch(t.Context(), append([]string{"import"}, args...), envOf(nil), streams{&out, &errOut})
	return code, out.String(), errOut.String()
}

// treeOf returns every regular file under dir by slash path, with its content.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err // directories and links are not files
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestImport imports the fixture, compares the report with
// testdata/import/report.golden (-update rewrites it), checks what the files
// say and that the result validates, and that the credentials of the task
// file appear nowhere.
func TestImport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "repo")
	code, stdout, stderr := importRun(t, append([]string{"--from", importOld, "--out", out}, importWorkflows...)...)
	if code != exitOK {
		t.Fatalf("import: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	got := strings.ReplaceAll(stdout+"-- stderr --\n"+stderr, out, "$OUT")
	golden := filepath.Join("testdata", "import", "report.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if want, err := os.ReadFile(golden); err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	} else if got != string(want) {
		t.Errorf("import report differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}

	tree := treeOf(t, out)
	wantFiles := []string{"algorithms/change123-s3.json", "algorithms/word-count.json", "workflows/single-run.json", "workflows/word-count.json"}
	if names := slices.Sorted(func(yield func(string) bool) {
		for k := range tree {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(names, wantFiles) {
		t.Errorf("files written: %q, want %q", names, wantFiles)
	}
	for name, data := range tree {
		for _, fake := range []string{fakeKeyID, fakeKeyValue} {
			if strings.Contains(data, fake) {
				t.Errorf("%s holds a credential value of the task file", name)
			}
		}
	}
	for _, fake := range []string{fakeKeyID, fakeKeyValue} {
		if strings.Contains(stdout, fake) || strings.Contains(stderr, fake) {
			t.Error("the report prints a credential value of the task file")
		}
	}

	a, problems := workflow.ParseAlgorithm("algorithms/change123-s3.json", []byte(tree["algorithms/change123-s3.json"]))
	if len(problems) > 0 {
		t.Fatalf("imported algorithm: %v", problems)
	}
	var vars []string
	for _, v := range a.UserSpecifiedEnvironmentVariables {
		vars = append(vars, v.Name)
	}
	if !slices.Equal(vars, []string{"TEST_ENV"}) || a.ContainerName != "wangyx2005/change123-s3" {
		t.Errorf("imported algorithm: variables %q, container_name %q; want only TEST_ENV, the image kept", vars, a.ContainerName)
	}
	for file, wantID := range map[string]string{"workflows/single-run.json": "", "workflows/word-count.json": "123456789012"} {
		w, problems := workflow.ParseWorkflow(file, []byte(tree[file]))
		if len(problems) > 0 {
			t.Fatalf("%s: %v", file, problems)
		}
		if w.AccountID != wantID {
			t.Errorf("%s: account_id %q, want %q", file, w.AccountID, wantID)
		}
	}

	code, vout, verr := validateRun(t, out)
	if code != exitOK {
		t.Errorf("validate of the imported repository: exit %d\n%s%s", code, vout, verr)
	}
}

// TestImportRefusesToOverwrite: a second import into the same directory, or
// one into a directory that holds any one of its files, writes nothing.
func TestImportRefusesToOverwrite(t *testing.T) {
	t.Run("second import", func(t *testing.T) {
		out := t.TempDir()
		args := append([]string{"--from", importOld, "--out", out}, importWorkflows...)
		if code, _, stderr := importRun(t, args...); code != exitOK {
			t.Fatalf("first import: exit %d: %s", code, stderr)
		}
		before := treeOf(t, out)
		code, stdout, stderr := importRun(t, args...)
		if code != exitFailure || !strings.Contains(stderr, "nothing was written") || stdout != "" {
			t.Errorf("second import: exit %d, stdout %q, stderr %q; want exit 1 and nothing written", code, stdout, stderr)
		}
		if after := treeOf(t, out); !mapsEqual(before, after) {
			t.Error("the second import changed the directory")
		}
	})
	t.Run("one file exists", func(t *testing.T) {
		out := t.TempDir()
		mine := filepath.Join(out, "workflows", "word-count.json")
		if err := os.MkdirAll(filepath.Dir(mine), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := importRun(t, append([]string{"--from", importOld, "--out", out}, importWorkflows...)...)
		if code != exitFailure || !strings.Contains(stderr, "workflows/word-count.json") {
			t.Errorf("exit %d, stderr %q; want exit 1 naming workflows/word-count.json", code, stderr)
		}
		if tree := treeOf(t, out); len(tree) != 1 || tree["workflows/word-count.json"] != "mine" {
			t.Errorf("files after the refused import: %v; want only the one that was there", tree)
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestImportRefusesHostileNames: a name that could lead a write out of the
// target directory, or a link inside it that does, stops the import before
// anything is written, inside or outside.
func TestImportRefusesHostileNames(t *testing.T) {
	alg := func(name string) string {
		return `{"container_name": "u/x", "input_file_path": "/", "output_file_path": "/", "run_command": "x $input",
			"name": ` + name + `, "memory": {"minimal": 1, "suggested": 2}, "CPU": 1}`
	}
	tests := []struct {
		name     string
		algFiles map[string]string // in OLD/algorithms
		workflow string            // base name of a workflow file given
		link     bool              // DIR/algorithms is a link to a directory outside DIR
		code     int
	}{
		{name: "dot-dot file name", algFiles: map[string]string{".._info.json": alg(`".."`)}, code: exitFailure},
		{name: "name field leads out", algFiles: map[string]string{"x_info.json": alg(`"../../escape"`)}, code: exitFailure},
		{name: "workflow name with a space", workflow: "my pipe.json", code: exitFailure},
		{name: "link out of DIR", algFiles: map[string]string{"x_info.json": alg(`"x"`)}, link: true, code: exitFailure},
		{name: "not a workflow file", workflow: "notes.txt", code: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			old := filepath.Join(base, "old")
			if err := os.MkdirAll(filepath.Join(old, "algorithms"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range tt.algFiles {
				if err := os.WriteFile(filepath.Join(old, "algorithms", name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(base, "out")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{out, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.link {
				if err := os.Symlink(outside, filepath.Join(out, "algorithms")); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"--from", old, "--out", out}
			if tt.workflow != "" {
				wf := filepath.Join(base, tt.workflow)
				src, err := os.ReadFile(importWorkflows[1])
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(wf, src, 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, wf)
			}
			code, stdout, stderr := importRun(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stdout %q, stderr %q", code, tt.code, stdout, stderr)
			}
			want := map[string]bool{}
			for name := range tt.algFiles {
				want["old/algorithms/"+name] = true
			}
			if tt.workflow != "" {
				want[tt.workflow] = true
			}
			for name := range treeOf(t, base) {
				if !want[name] {
					t.Errorf("%s written, inside or outside DIR, despite the refusal", name)
				}
			}
		})
	}
}
