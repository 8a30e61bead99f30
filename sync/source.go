package sync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// Repo is where desired state comes from: a Git repository (local or remote)
// read at a commit of the tracked branch, or a plain directory read as it is.
type Repo struct {
	git   *gitsource.Source // nil for a plain directory
	dir   string            // the plain directory
	types InstanceTypes     // nil: instance types are checked offline
}

// OpenRepo opens o.URL. A local directory that holds no Git repository is
// read as a plain directory (its "commit" is the empty string).
func OpenRepo(ctx context.Context, o gitsource.Options) (*Repo, error) {
	src, err := gitsource.Open(ctx, o)
	if errors.Is(err, gitsource.ErrRepositoryNotFound) {
		if fi, serr := os.Stat(o.URL); serr == nil && fi.IsDir() {
			return &Repo{dir: o.URL}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return &Repo{git: src}, nil
}

// UseInstanceTypes makes every later Load ask it about instance types the
// workflow package's table lacks, instead of calling them unknown. Call it
// before the first Load.
func (r *Repo) UseInstanceTypes(it InstanceTypes) { r.types = it }

// Git is the repository's Git source, or nil for a plain directory.
func (r *Repo) Git() *gitsource.Source { return r.git }

// Load reads and validates the config at ref (a commit hash, branch or any
// revision Git resolves); an empty ref means the tracked branch's head, which
// is fetched first for a remote.
func (r *Repo) Load(ctx context.Context, ref string) (*Desired, error) {
	if r.git == nil {
		if ref != "" {
			return nil, fmt.Errorf("--ref %s: %s is a plain directory, not a Git repository", ref, r.dir)
		}
		return r.desired(ctx, os.DirFS(r.dir), "")
	}
	if err := r.git.Fetch(ctx); err != nil {
		return nil, err
	}
	var commit string
	var err error
	if ref == "" {
		commit, err = r.git.Head(ctx)
	} else {
		// Name the commit, not the revision, in the inventory and statuses.
		commit, err = r.git.Resolve(ctx, ref)
	}
	if err != nil {
		return nil, err
	}
	fsys, err := r.git.FS(ctx, commit)
	if err != nil {
		return nil, err
	}
	return r.desired(ctx, fsys, commit)
}

// desired is LoadDesired with the repository's instance-type lookup.
func (r *Repo) desired(ctx context.Context, fsys fs.FS, commit string) (*Desired, error) {
	if r.types == nil {
		return LoadDesired(fsys, commit), nil
	}
	return loadDesired(fsys, commit, func(name string) (workflow.InstanceType, bool, error) {
		return r.types.InstanceType(ctx, name)
	})
}
