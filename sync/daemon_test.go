package sync_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// statusLog is a StatusPoster that keeps what it is given.
type statusLog struct {
	mu    gosync.Mutex
	posts []status.Status
}

func (l *statusLog) Post(_ context.Context, s status.Status) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posts = append(l.posts, s)
	return true, nil
}

func (l *statusLog) states(context string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var states []string
	for _, s := range l.posts {
		if s.Context == context {
			states = append(states, string(s.State)+": "+s.Description)
		}
	}
	return states
}

// gitRepo commits a config repository to a local Git repository and opens
// it; it returns the commit.
func gitRepo(t *testing.T, files map[string]string) (*pipesync.Repo, string) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range repo(files) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Git(t, dir, "init", "-q", "-b", "main")
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", "workflows")
	r, err := pipesync.OpenRepo(t.Context(), gitsource.Options{URL: dir, Branch: "main", CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return r, testenv.Git(t, dir, "rev-parse", "HEAD")
}

// TestDaemonWiring checks what NewDaemon wires, without AWS: a pass posts
// "pending" on each workflow it changes before the apply and the outcome
// after it, and the run statuses read the inventory's run records.
func TestDaemonWiring(t *testing.T) {
	m := newMachine(t)
	posts := &statusLog{}
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	var pendingDuringApply []string
	m.prov.fail = func(string, string, int) error {
		pendingDuringApply = posts.states(status.WorkflowContext("wf"))
		return nil
	}
	repo, commit := gitRepo(t, files)
	loop, err := pipesync.NewDaemon(pipesync.DaemonOptions{
		Reconciler: pipesync.Options{Provisioner: m.prov, Inventory: m.inv, AgentID: "a"},
		Loop:       pipesync.LoopOptions{Repo: repo, Statuses: posts},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := loop.Pass(t.Context())
	if res.Err != nil || res.Report == nil || res.Report.Failed() != 0 || res.Commit != commit {
		t.Fatalf("pass: %+v", res)
	}
	if got := m.prov.took(); !slices.Equal(got, []string{"ensure wf/0"}) {
		t.Fatalf("calls = %v", got)
	}
	if !slices.Equal(pendingDuringApply, []string{"pending: create: new file workflows/wf.json"}) {
		t.Errorf("statuses when the apply started = %v, want one pending", pendingDuringApply)
	}
	after := posts.states(status.WorkflowContext("wf"))
	if len(after) != 2 || !strings.HasPrefix(after[1], "success: upload to s3://m-input") {
		t.Errorf("statuses after the pass = %v, want pending then success", after)
	}

	// Run statuses come from the inventory's run records, with no Runs
	// option given.
	e := m.entry("wf")
	if e.Commit != commit {
		t.Fatalf("index entry %+v, want deployed at %s", e, commit)
	}
	key := contract.RunRecordKey("wf", 0, m.now, contract.OutcomeOK, "m-input", "a.txt", "receipt")
	if err := m.inv.PutRun(key, contract.RunRecord{Result: "s3://m-output/a.txt.out"}); err != nil {
		t.Fatal(err)
	}
	if err := loop.UpdateRunStatuses(t.Context()); err != nil {
		t.Fatal(err)
	}
	runs := posts.states(status.RunContext("wf"))
	if len(runs) != 1 || !strings.HasPrefix(runs[0], "success: 1 done") {
		t.Errorf("run statuses = %v, want one success counting the run", runs)
	}
}

func TestNewDaemonRefusesOptions(t *testing.T) {
	m := newMachine(t)
	parts := pipesync.Options{Provisioner: m.prov, Inventory: inventory.NewMemory()}
	own := m.agent("a", nil)
	for name, o := range map[string]pipesync.DaemonOptions{
		"a reconciler of its own": {Reconciler: parts, Loop: pipesync.LoopOptions{Reconciler: own}},
		"no provisioner":          {Reconciler: pipesync.Options{Inventory: inventory.NewMemory()}},
		"no repository":           {Reconciler: parts},
	} {
		if _, err := pipesync.NewDaemon(o); err == nil {
			t.Errorf("NewDaemon with %s succeeded", name)
		}
	}
}
