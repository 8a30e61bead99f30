package sync

import (
	"context"
	"testing"

	"github.com/cloudpipe/cloudpipe/status"
)

// postRecorder is a StatusPoster that keeps what it is given, and the
// context value it was given it under.
type postRecorder struct {
	posts []status.Status
	ctxs  []any
}

type ctxKey struct{}

func (r *postRecorder) Post(ctx context.Context, s status.Status) (bool, error) {
	r.posts = append(r.posts, s)
	r.ctxs = append(r.ctxs, ctx.Value(ctxKey{}))
	return true, nil
}

// TestNewDaemonPostsPendingOnPlan checks the wiring without AWS: the plan
// hook NewDaemon gives the Reconciler posts "pending" for each workflow the
// plan writes, under the daemon's context, then calls the caller's OnPlan.
func TestNewDaemonPostsPendingOnPlan(t *testing.T) {
	rec := &postRecorder{}
	var seen []*Plan
	ctx := context.WithValue(t.Context(), ctxKey{}, "daemon")
	loop, err := NewDaemon(ctx, DaemonOptions{
		Reconciler: Options{OnPlan: func(p *Plan) { seen = append(seen, p) }},
		Loop:       LoopOptions{Repo: &Repo{dir: t.TempDir()}, Statuses: rec},
	})
	if err != nil {
		t.Fatal(err)
	}
	plan := &Plan{Commit: "c0ffee0123456789", Changes: []Change{
		{Workflow: "new", Action: Create, Reason: "new workflow"},
		{Workflow: "same", Action: Unchanged},
		{Workflow: "gone", Action: Delete, Reason: "file removed"},
	}}
	loop.opts.Reconciler.opts.OnPlan(plan)

	want := []status.Status{
		{Commit: plan.Commit, Context: status.WorkflowContext("new"), State: status.Pending, Description: "create: new workflow"},
		{Commit: plan.Commit, Context: status.WorkflowContext("gone"), State: status.Pending, Description: "delete: file removed"},
	}
	if len(rec.posts) != len(want) {
		t.Fatalf("posted %+v, want %+v", rec.posts, want)
	}
	for i := range want {
		if rec.posts[i] != want[i] || rec.ctxs[i] != "daemon" {
			t.Errorf("post %d = %+v under context value %v, want %+v under \"daemon\"", i, rec.posts[i], rec.ctxs[i], want[i])
		}
	}
	if len(seen) != 1 || seen[0] != plan {
		t.Errorf("the caller's OnPlan saw %v, want the plan once", seen)
	}
}

func TestNewDaemonRefusesOptions(t *testing.T) {
	repo := &Repo{dir: t.TempDir()}
	for name, o := range map[string]DaemonOptions{
		"a reconciler of its own": {Loop: LoopOptions{Repo: repo, Reconciler: New(Options{})}},
		"no repository":           {},
		"a bad schedule":          {Loop: LoopOptions{Repo: repo, Schedule: "every day"}},
	} {
		if _, err := NewDaemon(t.Context(), o); err == nil {
			t.Errorf("NewDaemon with %s succeeded", name)
		}
	}
}
