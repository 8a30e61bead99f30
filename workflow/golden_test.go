package workflow_test

import (
	"bufio"
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/workflow"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/invalid")

// TestGolden loads each testdata/invalid/<case>/ directory as a config
// repository and compares the problems, one "file:line:col: path: message"
// line each, with <case>/expected.golden. Run with -update to rewrite the
// golden files, then review the diff.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "invalid", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no golden cases under testdata/invalid")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			fsys := caseFS(t, dir)
			_, probs := workflow.Load(fsys)
			if len(probs) == 0 {
				t.Fatalf("%s: no problems; every case under testdata/invalid must have some", dir)
			}
			var got bytes.Buffer
			for _, p := range probs {
				got.WriteString(p.String())
				got.WriteByte('\n')
			}
			golden := filepath.Join(dir, "expected.golden")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got.String() != string(want) {
				t.Errorf("problems differ from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", golden, got.String(), want)
			}
		})
	}
}

// caseFS reads a golden case directory into a MapFS (so the test also
// covers Load on fstest.MapFS) and adds the files listed in generate.txt,
// "PATH SIZE" per line: files too large to keep in the repository.
func caseFS(t *testing.T, dir string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "expected.golden" || p == "generate.txt" {
			return err
		}
		data, err := fs.ReadFile(os.DirFS(dir), p)
		fsys[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := os.Open(filepath.Join(dir, "generate.txt"))
	if os.IsNotExist(err) {
		return fsys
	}
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	sc := bufio.NewScanner(gen)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, size, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n < 2 {
			t.Fatalf("generate.txt: bad line %q", line)
		}
		fsys[name] = &fstest.MapFile{Data: paddedObject(n)}
	}
	return fsys
}

// paddedObject is "{" + spaces + "}", n bytes long: valid JSON of any size.
func paddedObject(n int) []byte {
	b := bytes.Repeat([]byte{' '}, n)
	b[0], b[n-1] = '{', '}'
	return b
}
