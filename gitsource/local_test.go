package gitsource_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cloudpipe/cloudpipe/gitsource"
)

func openLocal(t *testing.T, dir string, branch string) *gitsource.Source {
	t.Helper()
	src, err := gitsource.Open(t.Context(), gitsource.Options{URL: dir, Branch: branch})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return src
}

// localRepo is a working repository with workflows, an executable, a
// symbolic link and a nested directory.
func localRepo(t *testing.T) (dir, head string) {
	t.Helper()
	dir = newWorkRepo(t)
	commit(t, dir, map[string]string{
		"workflows/a.json":         workflowJSON("in-a", "out-a"),
		"workflows/b.json":         workflowJSON("in-b", "out-b"),
		"workflows/b/notes.txt":    "a directory named like a file sorts differently in Git\n",
		"workflows/b.json.example": "{}\n",
		"algorithms/echo.json":     `{"name": "echo"}` + "\n",
		"scripts/run.sh":           "#!/bin/sh\necho hi\n",
	}, "init")
	if err := os.Chmod(filepath.Join(dir, "scripts/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.json", filepath.Join(dir, "workflows/link.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../workflows", filepath.Join(dir, "algorithms/wf")); err != nil {
		t.Fatal(err)
	}
	head = commit(t, dir, nil, "links and modes")
	return dir, head
}

func TestLocalHead(t *testing.T) {
	dir, head := localRepo(t)
	src := openLocal(t, dir, "")
	got, err := src.Head(t.Context())
	if err != nil || got != head {
		t.Fatalf("Head = %q, %v; want %q", got, err, head)
	}

	// The ref is read on every call, so a new commit is seen at once.
	next := commit(t, dir, map[string]string{"workflows/c.json": workflowJSON("in-c", "out-c")}, "c")
	if got, err := src.Head(t.Context()); err != nil || got != next {
		t.Fatalf("Head after commit = %q, %v; want %q", got, err, next)
	}
	if err := src.Fetch(t.Context()); err != nil {
		t.Fatalf("Fetch on a local repository: %v", err)
	}

	_, err = openLocal(t, dir, "release").Head(t.Context())
	if !errors.Is(err, gitsource.ErrBranchNotFound) || !strings.Contains(err.Error(), "release") {
		t.Fatalf("Head of a missing branch: %v; want ErrBranchNotFound naming the branch", err)
	}
}

func TestLocalBareRepository(t *testing.T) {
	dir, head := localRepo(t)
	bare := filepath.Join(t.TempDir(), "bare.git")
	git(t, dir, "clone", "-q", "--bare", dir, bare)
	src := openLocal(t, bare, "main")
	if got, err := src.Head(t.Context()); err != nil || got != head {
		t.Fatalf("Head = %q, %v; want %q", got, err, head)
	}
	fsys, err := src.FS(t.Context(), head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadFile(fsys, "workflows/a.json"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenNotARepository(t *testing.T) {
	_, err := gitsource.Open(t.Context(), gitsource.Options{URL: t.TempDir()})
	if !errors.Is(err, gitsource.ErrRepositoryNotFound) {
		t.Fatalf("Open(empty dir) = %v; want ErrRepositoryNotFound", err)
	}
}

// TestLocalFSMatchesCheckout walks the commit's tree and the working
// directory side by side: same entries, same types, same contents.
func TestLocalFSMatchesCheckout(t *testing.T) {
	dir, head := localRepo(t)
	fsys, err := openLocal(t, dir, "main").FS(t.Context(), head)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		path string
		typ  fs.FileMode
		data string
	}
	walk := func(fsys fs.FS) []entry {
		t.Helper()
		var got []entry
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Name() == ".git" {
				return fs.SkipDir
			}
			e := entry{path: p, typ: d.Type()}
			if d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0 {
				if data, err := fs.ReadFile(fsys, p); err == nil {
					e.data = string(data) // a link that leaves the tree reads as missing in both
				}
			}
			got = append(got, e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	got, want := walk(fsys), walk(os.DirFS(dir))
	if !slices.Equal(got, want) {
		t.Errorf("tree walk differs from checkout\n got: %v\nwant: %v", got, want)
	}

	// ReadDir answers sorted by name, like os.ReadDir, not in Git's order.
	names := func(es []fs.DirEntry) (n []string) {
		for _, e := range es {
			n = append(n, e.Name())
		}
		return n
	}
	gotDir, err := fs.ReadDir(fsys, "workflows")
	if err != nil {
		t.Fatal(err)
	}
	wantDir, _ := os.ReadDir(filepath.Join(dir, "workflows"))
	if !slices.Equal(names(gotDir), names(wantDir)) {
		t.Errorf("ReadDir(workflows) = %v; want %v", names(gotDir), names(wantDir))
	}

	// A link followed, a directory link followed, a link read, modes kept.
	if data, err := fs.ReadFile(fsys, "algorithms/wf/link.json"); err != nil || string(data) != workflowJSON("in-a", "out-a") {
		t.Errorf("ReadFile through two links = %q, %v", data, err)
	}
	if target, err := fs.ReadLink(fsys, "workflows/link.json"); err != nil || target != "a.json" {
		t.Errorf("ReadLink = %q, %v", target, err)
	}
	if fi, err := fs.Stat(fsys, "scripts/run.sh"); err != nil || fi.Mode() != 0o755 || fi.Size() != int64(len("#!/bin/sh\necho hi\n")) {
		t.Errorf("Stat(run.sh) = %v, %v; want mode 0755 and its size", fi, err)
	}
	if fi, err := fs.Lstat(fsys, "workflows/link.json"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(link) = %v, %v; want a symlink", fi, err)
	}
	if fi, err := fs.Stat(fsys, "workflows/link.json"); err != nil || !fi.Mode().IsRegular() || fi.Name() != "link.json" {
		t.Errorf("Stat(link) = %v, %v; want the target's regular file under the link's name", fi, err)
	}
}

func TestLocalFSErrors(t *testing.T) {
	dir, _ := localRepo(t)
	if err := os.Symlink("../../outside", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop", filepath.Join(dir, "loop")); err != nil {
		t.Fatal(err)
	}
	head := commit(t, dir, nil, "a link out of the tree, a link cycle")
	src := openLocal(t, dir, "main")
	fsys, err := src.FS(t.Context(), head)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want error  // matched with errors.Is
		text string // or, for an error without a sentinel, found in the message
	}{
		{"missing file", func() error { _, err := fs.ReadFile(fsys, "workflows/nope.json"); return err }, fs.ErrNotExist, ""},
		{"file as directory", func() error { _, err := fs.ReadFile(fsys, "workflows/a.json/x"); return err }, fs.ErrNotExist, ""},
		{"link out of the tree", func() error { _, err := fs.Stat(fsys, "escape"); return err }, fs.ErrNotExist, ""},
		{"link cycle", func() error { _, err := fsys.Open("loop"); return err }, nil, "too many levels of symbolic links"},
		{"invalid path", func() error { _, err := fsys.Open("/etc/passwd"); return err }, fs.ErrInvalid, ""},
		{"dot-dot path", func() error { _, err := fsys.Open("workflows/../README"); return err }, fs.ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %v; want %v %q", err, tt.want, tt.text)
			}
		})
	}
	if _, err := fs.ReadFile(fsys, "workflows"); err == nil {
		t.Error("ReadFile(directory) succeeded")
	}
	if _, err := fs.ReadDir(fsys, "workflows/a.json"); err == nil {
		t.Error("ReadDir(file) succeeded")
	}

	for _, rev := range []string{"0123456789abcdef0123456789abcdef01234567", "no-such-branch", "deadbeef"} {
		if _, err := src.FS(t.Context(), rev); !errors.Is(err, gitsource.ErrCommitNotFound) {
			t.Errorf("FS(%s) = %v; want ErrCommitNotFound", rev, err)
		}
	}
	// A short hash and a branch name resolve too.
	for _, rev := range []string{head[:10], "main"} {
		if _, err := src.FS(t.Context(), rev); err != nil {
			t.Errorf("FS(%s): %v", rev, err)
		}
	}
}

// TestFSConformance runs the standard library's fs.FS checker over a commit.
func TestFSConformance(t *testing.T) {
	dir, head := localRepo(t)
	fsys, err := openLocal(t, dir, "main").FS(t.Context(), head)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "workflows/a.json", "workflows/b/notes.txt", "scripts/run.sh", "algorithms/echo.json"); err != nil {
		t.Fatal(err)
	}
}

func TestLocalPullRequests(t *testing.T) {
	dir, head := localRepo(t)
	git(t, dir, "update-ref", "refs/pull/10/head", head)
	git(t, dir, "update-ref", "refs/pull/2/head", head+"~1")
	git(t, dir, "update-ref", "refs/pull/feature/head", head) // not a pull request number
	src := openLocal(t, dir, "main")
	prs, err := src.PullRequests(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	parent := git(t, dir, "rev-parse", head+"~1")
	want := []gitsource.PullRequest{{Number: 2, Head: parent}, {Number: 10, Head: head}}
	if !slices.Equal(prs, want) {
		t.Fatalf("PullRequests = %v; want %v", prs, want)
	}
	st, err := src.Refs(t.Context())
	if err != nil || st.Head != head || !slices.Equal(st.PullRequests, want) {
		t.Fatalf("Refs = %+v, %v", st, err)
	}
}

func TestChangedFiles(t *testing.T) {
	dir := newWorkRepo(t)
	c1 := commit(t, dir, map[string]string{
		"workflows/a.json": workflowJSON("in-a", "out-a"),
		"workflows/b.json": workflowJSON("in-b", "out-b"),
		"README.md":        "x\n",
	}, "one")
	c2 := commit(t, dir, map[string]string{
		"workflows/a.json": workflowJSON("in-a", "out-a2"), // modified
		"workflows/b.json": "",                             // deleted
		"workflows/c.json": workflowJSON("in-c", "out-c"),  // added
	}, "two")
	src := openLocal(t, dir, "main")
	tests := []struct {
		from, to string
		want     []string
	}{
		{c1, c2, []string{"workflows/a.json", "workflows/b.json", "workflows/c.json"}},
		{c2, c1, []string{"workflows/a.json", "workflows/b.json", "workflows/c.json"}},
		{c2, c2, nil},
		{"", c1, []string{"README.md", "workflows/a.json", "workflows/b.json"}},
	}
	for _, tt := range tests {
		got, err := src.ChangedFiles(t.Context(), tt.from, tt.to)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ChangedFiles(%.7s, %.7s) = %v, %v; want %v", tt.from, tt.to, got, err, tt.want)
		}
	}
	if _, err := src.ChangedFiles(t.Context(), c1, "0123456789abcdef0123456789abcdef01234567"); !errors.Is(err, gitsource.ErrCommitNotFound) {
		t.Errorf("ChangedFiles to an unknown commit: %v; want ErrCommitNotFound", err)
	}
}

func TestFileReadAfterOpen(t *testing.T) {
	dir, head := localRepo(t)
	fsys, err := openLocal(t, dir, "main").FS(t.Context(), head)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open("workflows/b.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil || buf.String() != workflowJSON("in-b", "out-b") {
		t.Fatalf("read = %q, %v", buf.String(), err)
	}
}
