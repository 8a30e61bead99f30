package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// configDirs are the two directories of a config repository.
var configDirs = []string{"workflows", "algorithms"}

// findConfigRepo returns the nearest directory, from dir upwards, that holds
// workflows/ and algorithms/: the checkout's root when the demo is run
// anywhere inside it.
func findConfigRepo(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if isConfigRepo(d) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no workflows/ and algorithms/ in %s or above it: run the demo inside the cloudpipe checkout, or pass --repo DIR", dir)
		}
	}
}

func isConfigRepo(dir string) bool {
	for _, sub := range configDirs {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// makeRepo creates a Git repository at dst, on branch main, whose first
// commit holds src's workflows/ and algorithms/, every algorithm's image
// replaced by image unless it is "", and returns that commit. It is
// written with go-git, so the demo needs no git installed; people then
// commit to it with whatever they like.
func makeRepo(src, dst, image string) (string, error) {
	if !isConfigRepo(src) {
		return "", fmt.Errorf("%s has no workflows/ and algorithms/ directories", src)
	}
	for _, sub := range configDirs {
		if err := copyTree(filepath.Join(src, sub), filepath.Join(dst, sub)); err != nil {
			return "", err
		}
	}
	if image != "" {
		if err := setImages(filepath.Join(dst, "algorithms"), image); err != nil {
			return "", err
		}
	}
	r, err := git.PlainInitWithOptions(dst, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return "", fmt.Errorf("create repository %s: %w", dst, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return "", fmt.Errorf("open work tree %s: %w", dst, err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		return "", fmt.Errorf("add files to %s: %w", dst, err)
	}
	sig := &object.Signature{Name: "cloudpipe demo", Email: "demo@cloudpipe.invalid", When: time.Now()}
	h, err := wt.Commit("Example workflows and algorithms", &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		return "", fmt.Errorf("commit in %s: %w", dst, err)
	}
	return h.String(), nil
}

// copyTree copies the regular files under src to dst, keeping the layout.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case !d.Type().IsRegular():
			return nil // symbolic links and the like are not config
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, out.Close()) }()
	_, err = io.Copy(out, in)
	return err
}

// setImages sets the image (container_name) of every algorithm file in dir.
func setImages(dir, image string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var alg map[string]json.RawMessage
		if err := json.Unmarshal(b, &alg); err != nil {
			return fmt.Errorf("--algorithm-image: %s: %w", f, err)
		}
		if alg["container_name"], err = json.Marshal(image); err != nil {
			return err
		}
		if b, err = json.MarshalIndent(alg, "", "  "); err != nil {
			return err
		}
		if err := os.WriteFile(f, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
