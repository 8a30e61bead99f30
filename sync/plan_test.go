package sync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
	"github.com/cloudpipe/cloudpipe/workflow"
)

func TestComputePlan(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	wf := func(name, hash string) *workflow.Workflow {
		return &workflow.Workflow{Name: name, File: "workflows/" + name + ".json", Region: "us-east-1", SpecHash: hash}
	}
	ready := func(hash string) inventory.IndexEntry {
		return inventory.IndexEntry{Region: "us-east-1", SpecHash: hash, Commit: "c0ffee0000", Release: "r1", State: inventory.StateReady}
	}
	tornDown := func(hash string) inventory.IndexEntry {
		return inventory.IndexEntry{Region: "us-east-1", SpecHash: hash, Commit: "c0ffee0000", State: inventory.StateTornDown}
	}
	problem := workflow.Problem{File: "workflows/broken.json", Line: 3, Col: 5, Path: "region", Msg: "unknown region"}

	tests := []struct {
		name       string
		desired    *pipesync.Desired
		index      map[string]inventory.IndexEntry
		want       map[string]pipesync.Action
		wantReason map[string]string // substring of the reason
		release    string            // the agent's; default "r1", that of ready entries
	}{
		{
			name:       "new file is created",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h1")}},
			want:       map[string]pipesync.Action{"a": pipesync.Create},
			wantReason: map[string]string{"a": "new file workflows/a.json"},
		},
		{
			name:    "same hash is unchanged",
			desired: &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h1")}},
			index:   map[string]inventory.IndexEntry{"a": ready("h1")},
			want:    map[string]pipesync.Action{"a": pipesync.Unchanged},
		},
		{
			name:       "changed hash is updated",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h2")}},
			index:      map[string]inventory.IndexEntry{"a": ready("h1")},
			want:       map[string]pipesync.Action{"a": pipesync.Update},
			wantReason: map[string]string{"a": "changed since commit c0ffee0"},
		},
		{
			name:       "another agent release is updated",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h1")}},
			index:      map[string]inventory.IndexEntry{"a": ready("h1")},
			release:    "r2",
			want:       map[string]pipesync.Action{"a": pipesync.Update},
			wantReason: map[string]string{"a": "agent upgraded"},
		},
		{
			name:       "a file change is named before the release",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h2")}},
			index:      map[string]inventory.IndexEntry{"a": ready("h1")},
			release:    "r2",
			want:       map[string]pipesync.Action{"a": pipesync.Update},
			wantReason: map[string]string{"a": "changed since commit c0ffee0"},
		},
		{
			name:       "removed file is deleted",
			desired:    &pipesync.Desired{},
			index:      map[string]inventory.IndexEntry{"gone": ready("h1")},
			want:       map[string]pipesync.Action{"gone": pipesync.Delete},
			wantReason: map[string]string{"gone": "workflows/gone.json removed"},
		},
		{
			name: "invalid file keeps the deployed version",
			desired: &pipesync.Desired{
				Invalid:  map[string]workflow.Problems{"broken": {problem}},
				Problems: workflow.Problems{problem},
			},
			index:      map[string]inventory.IndexEntry{"broken": ready("h1")},
			want:       map[string]pipesync.Action{"broken": pipesync.Invalid},
			wantReason: map[string]string{"broken": "deployed version kept"},
		},
		{
			name: "invalid new file is not deployed",
			desired: &pipesync.Desired{
				Invalid: map[string]workflow.Problems{"broken": {problem}},
			},
			want:       map[string]pipesync.Action{"broken": pipesync.Invalid},
			wantReason: map[string]string{"broken": "workflows/broken.json:3:5: region: unknown region: not deployed"},
		},
		{
			name:    "interrupted create resumes as create",
			desired: &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h1")}},
			index: map[string]inventory.IndexEntry{"a": {Region: "us-east-1", State: inventory.StateApplying,
				Holder: "me", LeaseExpires: now.Add(time.Minute)}},
			want:       map[string]pipesync.Action{"a": pipesync.Create},
			wantReason: map[string]string{"a": "resuming an interrupted apply"},
		},
		{
			name:    "another agent's live lease is skipped",
			desired: &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h2")}},
			index: map[string]inventory.IndexEntry{"a": {Region: "us-east-1", SpecHash: "h1", State: inventory.StateApplying,
				Holder: "other", LeaseExpires: now.Add(time.Minute)}},
			want:       map[string]pipesync.Action{"a": pipesync.Skip},
			wantReason: map[string]string{"a": "being applied by agent other"},
		},
		{
			name:    "another agent's expired lease is taken over",
			desired: &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h2")}},
			index: map[string]inventory.IndexEntry{"a": {Region: "us-east-1", SpecHash: "h1", State: inventory.StateApplying,
				Holder: "other", LeaseExpires: now.Add(-time.Second)}},
			want: map[string]pipesync.Action{"a": pipesync.Update},
		},
		{
			name:    "a lease on a removed file held by another agent is skipped",
			desired: &pipesync.Desired{},
			index: map[string]inventory.IndexEntry{"a": {Region: "us-east-1", State: inventory.StateDeleting,
				Holder: "other", LeaseExpires: now.Add(time.Minute)}},
			want: map[string]pipesync.Action{"a": pipesync.Skip},
		},
		{
			name:       "failed apply is retried",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h1")}},
			index:      map[string]inventory.IndexEntry{"a": {Region: "us-east-1", SpecHash: "h1", State: inventory.StateFailed, Error: "boom"}},
			want:       map[string]pipesync.Action{"a": pipesync.Update},
			wantReason: map[string]string{"a": "retrying after failure: boom"},
		},
		{
			name: "region change moves the pipeline",
			desired: &pipesync.Desired{Workflows: []*workflow.Workflow{
				{Name: "a", File: "workflows/a.json", Region: "eu-west-1", SpecHash: "h2"}}},
			index:      map[string]inventory.IndexEntry{"a": ready("h1")},
			want:       map[string]pipesync.Action{"a": pipesync.Update},
			wantReason: map[string]string{"a": "region changed from us-east-1 to eu-west-1"},
		},
		{
			name:       "torn down, file unchanged: stays down",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h1")}},
			index:      map[string]inventory.IndexEntry{"a": tornDown("h1")},
			want:       map[string]pipesync.Action{"a": pipesync.TornDown},
			wantReason: map[string]string{"a": "deployed again when workflows/a.json changes"},
		},
		{
			name:       "torn down, file changed: created",
			desired:    &pipesync.Desired{Workflows: []*workflow.Workflow{wf("a", "h2")}},
			index:      map[string]inventory.IndexEntry{"a": tornDown("h1")},
			want:       map[string]pipesync.Action{"a": pipesync.Create},
			wantReason: map[string]string{"a": "changed since agent teardown"},
		},
		{
			name:       "torn down, file removed: entry dropped",
			desired:    &pipesync.Desired{},
			index:      map[string]inventory.IndexEntry{"a": tornDown("h1")},
			want:       map[string]pipesync.Action{"a": pipesync.Delete},
			wantReason: map[string]string{"a": "removed after agent teardown"},
		},
		{
			name:       "torn down, file broken: not deployed",
			desired:    &pipesync.Desired{Invalid: map[string]workflow.Problems{"broken": {problem}}},
			index:      map[string]inventory.IndexEntry{"broken": tornDown("h1")},
			want:       map[string]pipesync.Action{"broken": pipesync.Invalid},
			wantReason: map[string]string{"broken": "not deployed"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := &inventory.Index{Workflows: tt.index}
			if idx.Workflows == nil {
				idx.Workflows = map[string]inventory.IndexEntry{}
			}
			release := tt.release
			if release == "" {
				release = "r1"
			}
			plan := pipesync.ComputePlan(tt.desired, idx, "me", release, now)
			got := map[string]pipesync.Action{}
			for _, c := range plan.Changes {
				got[c.Workflow] = c.Action
				if want, ok := tt.wantReason[c.Workflow]; ok && !strings.Contains(c.Reason, want) {
					t.Errorf("%s: reason %q, want it to contain %q", c.Workflow, c.Reason, want)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("plan %v, want %v", got, tt.want)
			}
			for name, want := range tt.want {
				if got[name] != want {
					t.Errorf("%s: action %q, want %q", name, got[name], want)
				}
			}
		})
	}
}

func TestPlanSummary(t *testing.T) {
	plan := &pipesync.Plan{Changes: []pipesync.Change{
		{Workflow: "a", Action: pipesync.Create}, {Workflow: "b", Action: pipesync.Create},
		{Workflow: "c", Action: pipesync.Update}, {Workflow: "d", Action: pipesync.Unchanged},
	}}
	if got, want := plan.Summary(), "+2 create ~1 update -0 delete"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if !plan.HasWrites() {
		t.Error("HasWrites() = false for a plan with creates")
	}
	if (&pipesync.Plan{Changes: []pipesync.Change{{Action: pipesync.Unchanged}}}).HasWrites() {
		t.Error("HasWrites() = true for an all-unchanged plan")
	}
}

func TestPlanRegions(t *testing.T) {
	in := func(region string, a pipesync.Action) pipesync.Change {
		return pipesync.Change{Workflow: region + string(a), Action: a, Desired: &workflow.Workflow{Region: region}}
	}
	tests := []struct {
		name    string
		changes []pipesync.Change
		want    string
	}{
		{"none", nil, ""},
		{"home only", []pipesync.Change{in("us-east-1", pipesync.Create)}, ""},
		{"created and updated, sorted, once each", []pipesync.Change{
			in("eu-west-1", pipesync.Update), in("ap-south-1", pipesync.Create), in("eu-west-1", pipesync.Create)},
			"ap-south-1,eu-west-1"},
		{"unchanged, invalid and skipped prepare nothing", []pipesync.Change{
			in("eu-west-1", pipesync.Unchanged), in("eu-west-2", pipesync.Invalid), in("eu-west-3", pipesync.Skip)}, ""},
		{"a delete has no desired region", []pipesync.Change{{Workflow: "gone", Action: pipesync.Delete}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join((&pipesync.Plan{Changes: tt.changes}).Regions("us-east-1"), ",")
			if got != tt.want {
				t.Errorf("Regions(us-east-1) = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPlanNotes: a plan shows the notes that change what a pipeline does
// for the workflows it creates or updates, after the table; not for those
// it leaves alone.
func TestPlanNotes(t *testing.T) {
	note := func(file, msg string) workflow.Problem {
		return workflow.Problem{File: file, Line: 3, Col: 5, Path: "p", Level: workflow.LevelNote, Msg: msg}
	}
	keys := note("algorithms/a_info.json", "AWS_ACCESS_KEY_ID is dropped")
	name := note("workflows/b.json", "NAME replaces the runner's")
	plan := &pipesync.Plan{Commit: "", Changes: []pipesync.Change{
		{Workflow: "a", Action: pipesync.Create, Reason: "new file workflows/a.json", Desired: &workflow.Workflow{Notes: workflow.Problems{keys}}},
		{Workflow: "b", Action: pipesync.Update, Reason: "workflows/b.json changed", Desired: &workflow.Workflow{Notes: workflow.Problems{name, keys}}},
		{Workflow: "c", Action: pipesync.Unchanged, Reason: "deployed at commit 1234567", Desired: &workflow.Workflow{Notes: workflow.Problems{keys}}},
		{Workflow: "d", Action: pipesync.Delete, Reason: "workflows/d.json removed"},
	}}
	if got := plan.Notes(); len(got) != 3 || got[0] != keys || got[1] != name || got[2] != keys {
		t.Errorf("Notes() = %v, want a's and b's, not c's", got)
	}
	var out strings.Builder
	if err := plan.WritePlan(&out); err != nil {
		t.Fatal(err)
	}
	want := "plan for working tree: +1 create ~1 update -1 delete, 1 unchanged\n" +
		"  + a  create     new file workflows/a.json\n" +
		"  ~ b  update     workflows/b.json changed\n" +
		"  = c  unchanged  deployed at commit 1234567\n" +
		"  - d  delete     workflows/d.json removed\n" +
		"  a: algorithms/a_info.json:3:5: note: p: AWS_ACCESS_KEY_ID is dropped\n" +
		"  b: workflows/b.json:3:5: note: p: NAME replaces the runner's\n" +
		"  b: algorithms/a_info.json:3:5: note: p: AWS_ACCESS_KEY_ID is dropped\n"
	if out.String() != want {
		t.Errorf("WritePlan:\n got:\n%s\nwant:\n%s", out.String(), want)
	}
}
