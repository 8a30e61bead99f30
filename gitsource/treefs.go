package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FS returns the files of a commit as a read-only file system, so the
// workflow loader reads a commit exactly like a directory. commit is a full
// hash or any revision go-git resolves (short hash, branch, pull/1/head).
//
// The result implements fs.ReadDirFS, fs.ReadFileFS, fs.StatFS and
// fs.ReadLinkFS. Files are read whole into memory when opened (the config
// files are small). Symbolic links are followed when they stay inside the
// tree; one that leaves it does not exist. A submodule is an empty directory.
// Every entry's ModTime is the commit's committer time: Git keeps no file
// times. Errors: ErrCommitNotFound, or ctx.Err().
func (s *Source) FS(ctx context.Context, commit string) (fs.FS, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.commit(commit)
	if err != nil {
		return nil, err
	}
	root, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", commit, err)
	}
	return &treeFS{src: s, root: root, modTime: c.Committer.When}, nil
}

// maxSymlinks bounds link resolution, like Linux's MAXSYMLINKS, so a cycle ends.
const maxSymlinks = 40

var (
	errIsDir        = errors.New("is a directory")
	errNotDir       = errors.New("not a directory")
	errNotLink      = errors.New("not a symbolic link")
	errTooManyLinks = errors.New("too many levels of symbolic links")
)

// treeFS is a commit's tree. Every method takes src.mu around its object
// reads, because the repository's storage is shared and not concurrency-safe.
type treeFS struct {
	src     *Source
	root    *object.Tree
	modTime time.Time
	// trees caches decoded subtrees: every file of workflows/ is looked up
	// through the same directory tree, and decoding its thousand entries
	// again for each file made reading a large repository quadratic.
	// Guarded by src.mu, like every other access.
	trees map[plumbing.Hash]*object.Tree
}

// tree returns the decoded tree h; src.mu is held.
func (f *treeFS) tree(h plumbing.Hash) (*object.Tree, error) {
	if t, ok := f.trees[h]; ok {
		return t, nil
	}
	t, err := f.src.repo.TreeObject(h)
	if err != nil {
		return nil, err
	}
	if f.trees == nil {
		f.trees = map[plumbing.Hash]*object.Tree{}
	}
	f.trees[h] = t
	return t, nil
}

var (
	_ fs.ReadDirFS   = (*treeFS)(nil)
	_ fs.ReadFileFS  = (*treeFS)(nil)
	_ fs.StatFS      = (*treeFS)(nil)
	_ fs.ReadLinkFS  = (*treeFS)(nil)
	_ fs.ReadDirFile = (*dirFile)(nil)
	_ io.ReaderAt    = (*file)(nil)
	_ io.Seeker      = (*file)(nil)
)

// node is one resolved tree entry.
type node struct {
	name string
	mode filemode.FileMode
	hash plumbing.Hash
	tree *object.Tree // set for a directory; nil for a submodule, which is shown empty
}

func (n node) isDir() bool { return n.mode == filemode.Dir || n.mode == filemode.Submodule }

// lookup resolves name, following symbolic links in the directories on the
// way, and in the last element too when follow is set; src.mu is held.
func (f *treeFS) lookup(op, name string, follow bool) (node, error) {
	if !fs.ValidPath(name) {
		return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	notExist := &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	root := node{mode: filemode.Dir, hash: f.root.Hash, tree: f.root}
	cur, curPath := root, "."
	var parts []string
	if name != "." {
		parts = strings.Split(name, "/")
	}
	hops := 0
	for i := 0; i < len(parts); i++ {
		if cur.tree == nil {
			return node{}, notExist // a file, or a submodule, in the middle of the path
		}
		e := entry(cur.tree, parts[i])
		if e == nil {
			return node{}, notExist
		}
		last := i == len(parts)-1
		if e.Mode == filemode.Symlink && (!last || follow) {
			if hops++; hops > maxSymlinks {
				return node{}, &fs.PathError{Op: op, Path: name, Err: errTooManyLinks}
			}
			target, err := f.blob(e.Hash)
			if err != nil {
				return node{}, &fs.PathError{Op: op, Path: name, Err: err}
			}
			t := string(target)
			if path.IsAbs(t) {
				return node{}, notExist // points outside the tree
			}
			rest := path.Join(append([]string{curPath, t}, parts[i+1:]...)...)
			if rest == ".." || strings.HasPrefix(rest, "../") {
				return node{}, notExist // climbs out of the tree
			}
			parts = nil
			if rest != "." {
				parts = strings.Split(rest, "/")
			}
			cur, curPath, i = root, ".", -1
			continue
		}
		n := node{name: e.Name, mode: e.Mode, hash: e.Hash}
		if e.Mode == filemode.Dir {
			t, err := f.tree(e.Hash)
			if err != nil {
				return node{}, &fs.PathError{Op: op, Path: name, Err: err}
			}
			n.tree = t
		}
		cur, curPath = n, path.Join(curPath, e.Name)
	}
	// Like os.Stat, a followed link keeps the name it was looked up by.
	cur.name = path.Base(name)
	return cur, nil
}

func entry(t *object.Tree, name string) *object.TreeEntry {
	for i := range t.Entries {
		if t.Entries[i].Name == name {
			return &t.Entries[i]
		}
	}
	return nil
}

// blob reads a blob whole; src.mu is held.
func (f *treeFS) blob(h plumbing.Hash) ([]byte, error) {
	b, err := f.src.repo.BlobObject(h)
	if err != nil {
		return nil, err
	}
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := bytes.NewBuffer(make([]byte, 0, b.Size))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// info describes n without following it; src.mu is held.
func (f *treeFS) info(n node) (fileInfo, error) {
	mode, err := n.mode.ToOSFileMode()
	if err != nil {
		return fileInfo{}, err
	}
	fi := fileInfo{name: n.name, mode: mode, modTime: f.modTime}
	if !n.isDir() {
		b, err := f.src.repo.BlobObject(n.hash)
		if err != nil {
			return fileInfo{}, err
		}
		fi.size = b.Size
	}
	return fi, nil
}

// entries lists a directory sorted by name, as fs.ReadDir promises (Git
// sorts a directory "a" as "a/", after "a.json"); src.mu is held.
func (f *treeFS) entries(n node) []fs.DirEntry {
	if n.tree == nil {
		return []fs.DirEntry{}
	}
	list := make([]fs.DirEntry, 0, len(n.tree.Entries))
	for _, e := range n.tree.Entries {
		list = append(list, dirEntry{fsys: f, e: e})
	}
	slices.SortFunc(list, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return list
}

// Open implements fs.FS.
func (f *treeFS) Open(name string) (fs.File, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("open", name, true)
	if err != nil {
		return nil, err
	}
	fi, err := f.info(n)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if n.isDir() {
		return &dirFile{path: name, info: fi, entries: f.entries(n)}, nil
	}
	data, err := f.blob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{info: fi, Reader: bytes.NewReader(data)}, nil
}

// ReadFile implements fs.ReadFileFS.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("readfile", name, true)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errIsDir}
	}
	data, err := f.blob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return data, nil
}

// ReadDir implements fs.ReadDirFS.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	return f.entries(n), nil
}

// Stat implements fs.StatFS; it follows symbolic links.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) { return f.stat("stat", name, true) }

// Lstat implements fs.ReadLinkFS; it describes a symbolic link itself.
func (f *treeFS) Lstat(name string) (fs.FileInfo, error) { return f.stat("lstat", name, false) }

func (f *treeFS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup(op, name, follow)
	if err != nil {
		return nil, err
	}
	fi, err := f.info(n)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return fi, nil
}

// ReadLink implements fs.ReadLinkFS.
func (f *treeFS) ReadLink(name string) (string, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	if n.mode != filemode.Symlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errNotLink}
	}
	target, err := f.blob(n.hash)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(target), nil
}

// fileInfo implements fs.FileInfo.
type fileInfo struct {
	name    string
	size    int64
	mode    fs.FileMode
	modTime time.Time
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return fi.size }
func (fi fileInfo) Mode() fs.FileMode  { return fi.mode }
func (fi fileInfo) ModTime() time.Time { return fi.modTime }
func (fi fileInfo) IsDir() bool        { return fi.mode.IsDir() }
func (fi fileInfo) Sys() any           { return nil }

// dirEntry implements fs.DirEntry; Info reads the blob's size only when asked.
type dirEntry struct {
	fsys *treeFS
	e    object.TreeEntry
}

func (d dirEntry) Name() string { return d.e.Name }
func (d dirEntry) IsDir() bool  { return d.e.Mode == filemode.Dir || d.e.Mode == filemode.Submodule }

func (d dirEntry) Type() fs.FileMode {
	m, _ := d.e.Mode.ToOSFileMode() // an unknown mode reads as a regular file
	return m.Type()
}

func (d dirEntry) Info() (fs.FileInfo, error) {
	d.fsys.src.mu.Lock()
	defer d.fsys.src.mu.Unlock()
	return d.fsys.info(node{name: d.e.Name, mode: d.e.Mode, hash: d.e.Hash})
}

func (d dirEntry) String() string { return fs.FormatDirEntry(d) }

// file is an open regular file (or followed link), held in memory.
type file struct {
	info fileInfo
	*bytes.Reader
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Close() error               { return nil }

// dirFile is an open directory.
type dirFile struct {
	path    string
	info    fileInfo
	entries []fs.DirEntry
	offset  int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }

func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errIsDir}
}

// ReadDir implements fs.ReadDirFile.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.offset:]
	if n <= 0 {
		d.offset = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.offset += n
	return rest[:n], nil
}

// Resolve returns the full hash of the commit rev names (a hash, a short
// hash, a branch, pull/1/head...). Errors: ErrCommitNotFound, or ctx.Err().
func (s *Source) Resolve(ctx context.Context, rev string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.commit(rev)
	if err != nil {
		return "", err
	}
	return c.Hash.String(), nil
}
