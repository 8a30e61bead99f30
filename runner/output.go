package runner

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// output says where a run's result will be found after its command:
//
//   - run_command names $output: $output is <output dir>/Result-<ALGORITHM>-<file>
//     when output_file_path is a directory, else output_file_path itself;
//     the result is what the command left there (a directory is zipped);
//   - no $output, output_file_path a file: that file (or directory);
//   - no $output, output_file_path a directory: the entries of that
//     directory that the command created or changed, zipped together.
type output struct {
	path    string               // $output, or output_file_path without $output: the result itself
	dir     string               // output directory whose new entries are the result
	before  map[string]time.Time // dir's entries before the command, with their modification times
	exclude string               // the input file, when it lies in dir
}

// prepareOutput works out the run's output (see output) and removes a
// stale result at its path, so that a command that writes nothing cannot
// pass off an old file as its result.
func (w *worker) prepareOutput(name, in string) (*output, error) {
	dirOut := isDirPath(w.c.OutputPath)
	if !usesOutput(w.c.RunCommand) && dirOut {
		dir := filepath.Clean(w.c.OutputPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		before, err := modTimes(dir)
		if err != nil {
			return nil, err
		}
		o := &output{dir: dir, before: before}
		if filepath.Dir(in) == dir {
			o.exclude = filepath.Base(in)
		}
		return o, nil
	}
	p := filepath.Clean(w.c.OutputPath)
	if dirOut {
		p = filepath.Join(p, "Result-"+w.c.Algorithm+"-"+name)
	}
	if p == in {
		return nil, errors.New("the output path is the input file")
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(p); err != nil {
		return nil, err
	}
	return &output{path: p}, nil
}

// modTimes lists the entries of dir with their modification times.
func modTimes(dir string) (map[string]time.Time, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := make(map[string]time.Time, len(entries))
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			m[e.Name()] = fi.ModTime()
		}
	}
	return m, nil
}

// changed lists the entries of the output directory that the command
// created or modified, the input file left out.
func (o *output) changed() []string {
	now, err := modTimes(o.dir)
	if err != nil {
		return nil
	}
	var names []string
	for name, mt := range now {
		if was, ok := o.before[name]; (!ok || !was.Equal(mt)) && name != o.exclude {
			names = append(names, name)
		}
	}
	return names
}

// created lists what the run made and must remove: the result path, or the
// new entries of the output directory (entries that existed before are
// kept, even if the command changed them).
func (o *output) created() []string {
	if o.dir == "" {
		return nil // o.path is removed by the caller
	}
	var paths []string
	for _, name := range o.changed() {
		if _, existed := o.before[name]; !existed {
			paths = append(paths, filepath.Join(o.dir, name))
		}
	}
	return paths
}

// collect returns the file to upload: the result file itself, or a zip
// archive of a directory result built in tempDir (zipped is true; the
// caller removes it).
func (o *output) collect(tempDir string) (src string, zipped bool, err error) {
	if o.dir != "" {
		names := o.changed()
		if len(names) == 0 {
			return "", false, errors.New("the command left nothing in the output directory")
		}
		z, err := zipEntries(tempDir, o.dir, names)
		return z, true, err
	}
	fi, err := os.Stat(o.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false, errors.New("the command left no output file")
	case err != nil:
		return "", false, fmt.Errorf("cannot read the output: %w", err)
	case fi.Mode().IsRegular():
		return o.path, false, nil
	case fi.IsDir():
		entries, err := os.ReadDir(o.path)
		if err != nil {
			return "", false, fmt.Errorf("cannot read the output directory: %w", err)
		}
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		z, err := zipEntries(tempDir, o.path, names)
		return z, true, err
	default:
		return "", false, errors.New("the output is neither a file nor a directory")
	}
}

// zipEntries writes a zip archive of the named entries of root (recursing
// into directories) to a new file in tempDir and returns its path. Files
// are streamed into the archive, never held in memory. Names in the archive
// are relative to root; symbolic links and special files are left out, so
// the archive holds nothing from outside the output.
func zipEntries(tempDir, root string, names []string) (path string, err error) {
	f, err := os.CreateTemp(tempDir, "cloudpipe-result-*.zip")
	if err != nil {
		return "", fmt.Errorf("cannot create the archive: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("cannot write the archive: %w", cerr)
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	buf := bufio.NewWriterSize(f, 1<<16)
	zw := zip.NewWriter(buf)
	for _, name := range names {
		err := filepath.WalkDir(filepath.Join(root, name), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			return addToZip(zw, p, filepath.ToSlash(rel), d)
		})
		if err != nil {
			return "", fmt.Errorf("cannot archive the output: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("cannot write the archive: %w", err)
	}
	if err := buf.Flush(); err != nil {
		return "", fmt.Errorf("cannot write the archive: %w", err)
	}
	return f.Name(), nil
}

// addToZip adds one file or directory entry.
func addToZip(zw *zip.Writer, p, rel string, d fs.DirEntry) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	h, err := zip.FileInfoHeader(fi)
	if err != nil {
		return err
	}
	h.Name = rel
	if d.IsDir() {
		h.Name += "/"
		_, err := zw.CreateHeader(h)
		return err
	}
	h.Method = zip.Deflate
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	src, err := os.Open(p)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(w, src)
	return err
}
