// Package sync is cloudpipe's reconciler: it loads the desired pipelines from a
// config repository at a commit, compares them with the inventory of what the
// agent owns, plans creates, updates and deletes, and applies the plan with
// bounded concurrency, each workflow's failure its own.
//
// The package shadows the standard library's sync: import it as pipesync
// where both are needed.
package sync

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// Desired is the state a config repository asks for at one commit.
type Desired struct {
	Commit    string               // commit the files were read at; "" for a plain directory
	Workflows []*workflow.Workflow // valid workflows, sorted by name
	// Invalid maps the name of each workflow whose file exists but has
	// problems to those problems. Such a workflow is never deleted or
	// changed: the deployed version is kept until the file is fixed.
	Invalid  map[string]workflow.Problems
	Problems workflow.Problems // every problem of every file
}

// LoadDesired reads and validates the config repository in fsys, offline:
// an instance type missing from the workflow package's table is a problem.
func LoadDesired(fsys fs.FS, commit string) *Desired {
	d, _ := loadDesired(fsys, commit, nil) // no lookup, no error
	return d
}

// loadDesired is LoadDesired asking lookup about instance types the table
// lacks; its error is the lookup's (AWS could not be asked).
func loadDesired(fsys fs.FS, commit string, lookup workflow.InstanceTypeLookup) (*Desired, error) {
	cfg, problems, err := workflow.LoadWith(fsys, workflow.LoadOptions{InstanceTypes: lookup})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", commitLabel(commit), err)
	}
	d := &Desired{
		Commit:    commit,
		Workflows: cfg.Workflows,
		Invalid:   map[string]workflow.Problems{},
		Problems:  problems,
	}
	for _, p := range problems {
		if name, ok := workflowName(p.File); ok {
			d.Invalid[name] = append(d.Invalid[name], p)
		}
	}
	// A workflow whose own file is clean can still be invalid through another
	// file (a broken algorithm it names); Load reports that problem in the
	// workflow's file too, so it is already in Invalid and not in Workflows.
	sort.Slice(d.Workflows, func(i, j int) bool { return d.Workflows[i].Name < d.Workflows[j].Name })
	return d, nil
}

// workflowName returns <name> for a path workflows/<name>.json.
func workflowName(file string) (string, bool) {
	dir, base := path.Split(file)
	if dir != "workflows/" || !strings.HasSuffix(base, ".json") {
		return "", false
	}
	return strings.TrimSuffix(base, ".json"), true
}
