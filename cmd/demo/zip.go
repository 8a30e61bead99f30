package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudpipe/cloudpipe/provision"
)

// lambdaZip returns provision.LambdaZipFromFile(exe): the stage functions'
// code, the demo's own binary, as the agent zips its own. Deflating the
// ~100 MB binary takes 5 to 10 seconds of CPU, the longest step of a warm
// run, while `go run` rebuilds the same bytes each time: so the zip is kept
// in the user's cache directory under the binary's SHA-256, and made again
// only for a new binary. LambdaZipFromFile's output carries no timestamps,
// so a cached zip is byte for byte what it would return.
func lambdaZip(exe string, log *slog.Logger) ([]byte, error) {
	sum, err := provision.FileSHA256(exe)
	if err != nil {
		return nil, fmt.Errorf("read lambda binary: %w", err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		log.Debug("no cache directory, lambda zip not cached", "err", err)
		return provision.LambdaZipFromFile(exe)
	}
	dir := filepath.Join(base, "cloudpipe", "demo")
	name := "lambda-" + sum[:16] + ".zip"
	if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
		return b, nil
	}
	b, err := provision.LambdaZipFromFile(exe)
	if err != nil {
		return nil, err
	}
	// Caching is an optimisation: a failure is only logged.
	if err := storeZip(dir, name, b); err != nil {
		log.Debug("lambda zip not cached", "err", err)
	}
	return b, nil
}

// storeZip writes b as dir/name, atomically (a concurrent demo reads a whole
// zip or none), and removes the zips of older binaries, which are tens of
// megabytes each.
func storeZip(dir, name string, b []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "tmp-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %v %v", f.Name(), werr, cerr)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		os.Remove(f.Name())
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "lambda-*.zip"))
	for _, p := range old {
		if filepath.Base(p) != name && strings.HasPrefix(filepath.Base(p), "lambda-") {
			os.Remove(p)
		}
	}
	return nil
}
