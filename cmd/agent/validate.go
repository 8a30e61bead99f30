package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudpipe/cloudpipe/workflow"
)

var validateCommand = &command{
	name:     "validate",
	synopsis: "[--json] [--strict] PATH...",
	summary:  "check workflow and algorithm files offline",
	help: `Validate workflow and algorithm files offline, without AWS or Git access.

PATH is a config repository (a directory holding workflows/ and/or
algorithms/), one of those two directories, or a .json file inside one. The
whole repository is always loaded, so references between files resolve, but
only problems in the named files are reported.

Each problem is one line on stdout,
  file:line:col: json.path: message
with the file relative to its repository. Notes follow the problems, one
line each,
  file:line:col: note: json.path: message
saying what the original cloud_pipe format allowed and cloudpipe reads its
own way (a default, an ignored field, dropped access keys); a file with
notes only is valid and is deployed. A summary goes to stderr. --json prints
one array of both, each entry with its "level", "error" or "note".
Exit status: 0 no problems (notes allowed, unless --strict, which counts
them as problems), 1 problems found, 2 usage error (no PATH, or a PATH that
does not exist or is not in a config repository).`,
	flags: []string{"json", "strict"},
	run:   runValidate,
}

// Directories of a config repository, as in docs/design.md, "The config repository".
const (
	workflowsDir  = "workflows"
	algorithmsDir = "algorithms"
)

// repoTarget is one config repository to load and which of its files the
// command line named.
type repoTarget struct {
	root  string          // absolute path of the repository
	all   bool            // the repository itself was named
	dirs  map[string]bool // "workflows" or "algorithms" was named
	files map[string]bool // repository-relative slash paths that were named
}

// wants reports whether problems in file (repository-relative, as in
// Problem.File) were asked for.
func (t *repoTarget) wants(file string) bool {
	if t.all || t.files[file] {
		return true
	}
	dir, _, ok := strings.Cut(file, "/")
	return ok && t.dirs[dir]
}

func runValidate(_ context.Context, cfg Config, args []string, out streams) error {
	if len(args) == 0 {
		return usagef("no PATH given")
	}
	targets, err := resolveTargets(args)
	if err != nil {
		return err
	}

	var problems, notes []workflow.Problem
	var badFiles, workflows, algorithms int
	for _, t := range targets {
		repo, ps := workflow.Load(os.DirFS(t.root))
		bad := map[string]bool{}
		for _, p := range ps {
			if t.wants(p.File) {
				problems = append(problems, p)
				bad[p.File] = true
			}
		}
		for _, n := range repo.Notes {
			switch {
			case !t.wants(n.File):
			case cfg.Strict:
				n.Level = workflow.LevelError
				problems = append(problems, n)
				bad[n.File] = true
			default:
				notes = append(notes, n)
			}
		}
		badFiles += len(bad)
		if repo == nil {
			continue
		}
		for _, w := range repo.Workflows {
			if t.wants(w.File) && !bad[w.File] {
				workflows++
			}
		}
		for _, a := range repo.Algorithms {
			if t.wants(a.File) && !bad[a.File] {
				algorithms++
			}
		}
	}

	// Under --strict the notes were made problems in their files' places;
	// keep problems in file order.
	if cfg.Strict {
		workflow.Problems(problems).Sort()
	}
	all := make([]workflow.Problem, 0, len(problems)+len(notes)) // never nil: --json prints [] when clean
	all = append(append(all, problems...), notes...)             // problems first, then notes
	if cfg.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(all); err != nil {
			return fmt.Errorf("write problems: %w", err)
		}
	} else {
		for _, p := range all {
			fmt.Fprintln(out.stdout, p.String())
		}
	}

	noted := ""
	if len(notes) > 0 {
		noted = "; " + plural(len(notes), "note")
	}
	if len(problems) == 0 {
		fmt.Fprintf(out.stderr, "ok: %s, %s%s\n", plural(workflows, "workflow"), plural(algorithms, "algorithm"), noted)
		return nil
	}
	fmt.Fprintf(out.stderr, "%s in %s; %s and %s valid%s\n",
		plural(len(problems), "problem"), plural(badFiles, "file"),
		plural(workflows, "workflow"), plural(algorithms, "algorithm"), noted)
	return errReported
}

// resolveTargets maps each PATH to its config repository, merging PATHs of
// the same repository so it is loaded once. Repositories keep the order in
// which they were first named, so output is deterministic.
func resolveTargets(paths []string) ([]*repoTarget, error) {
	var targets []*repoTarget
	byRoot := map[string]*repoTarget{}
	target := func(root string) *repoTarget {
		t := byRoot[root]
		if t == nil {
			t = &repoTarget{root: root, dirs: map[string]bool{}, files: map[string]bool{}}
			byRoot[root] = t
			targets = append(targets, t)
		}
		return t
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, usagef("%s: %v", p, err)
		}
		fi, err := os.Stat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("%s: no such file or directory", p)
		}
		if err != nil {
			return nil, usagef("%v", err)
		}
		name := filepath.Base(abs)
		switch {
		case fi.IsDir() && isConfigDir(name):
			target(filepath.Dir(abs)).dirs[name] = true
		case fi.IsDir():
			if !isDir(filepath.Join(abs, workflowsDir)) && !isDir(filepath.Join(abs, algorithmsDir)) {
				return nil, usagef("%s: not a config repository (no %s/ or %s/ directory)", p, workflowsDir, algorithmsDir)
			}
			target(abs).all = true
		default:
			// A file is checked in the context of its whole repository: a
			// workflow's algorithm lives in another file.
			parent := filepath.Dir(abs)
			if !isConfigDir(filepath.Base(parent)) {
				return nil, usagef("%s: not in a %s/ or %s/ directory", p, workflowsDir, algorithmsDir)
			}
			if filepath.Ext(name) != ".json" {
				return nil, usagef("%s: not a .json file", p)
			}
			target(filepath.Dir(parent)).files[filepath.Base(parent)+"/"+name] = true
		}
	}
	return targets, nil
}

func isConfigDir(name string) bool { return name == workflowsDir || name == algorithmsDir }

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// plural formats a count with its noun: "1 file", "2 files".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
