package sync_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// TestFailedWorkflowRetriedAtTheSameCommit: a workflow blocked by an
// obstacle is tried again on the following polls at the same commit, with
// a doubling wait, its status saying when; once the obstacle is gone it
// deploys, long before the next drift check. Polls between tries cost no
// AWS call.
func TestFailedWorkflowRetriedAtTheSameCommit(t *testing.T) {
	m := newMachine(t)
	obstacle := true
	m.prov.fail = func(op, wf string, _ int) error {
		if obstacle && op == "ensure" {
			return errors.New("create bucket m-input: OperationAborted: A conflicting conditional operation is currently in progress")
		}
		return nil
	}
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	repo, _ := gitRepo(t, files)
	posts := &statusLog{}
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil), Statuses: posts,
		Runs: m.inv, RetryBackoff: time.Minute, DriftEvery: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	poll := func() pipesync.PassResult {
		t.Helper()
		res := loop.Pass(t.Context())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		now = now.Add(30 * time.Second) // the agent's polls
		return res
	}

	if res := poll(); res.Skipped || res.Report.Failed() != 1 {
		t.Fatalf("first pass: %+v, want the workflow failed", res)
	}
	// Tries at 1 min, then 2 min after: the polls between are skipped.
	var applied []int
	for i := 1; i <= 8; i++ {
		if i == 6 {
			obstacle = false
		}
		if res := poll(); !res.Skipped {
			applied = append(applied, i)
		}
	}
	if want := []int{2, 6}; !slices.Equal(applied, want) {
		t.Errorf("passes applied at polls %v, want %v (a minute, then two)", applied, want)
	}
	if res := poll(); !res.Skipped {
		t.Errorf("after the workflow deployed, a poll of the same commit applied again: %+v", res)
	}
	states := posts.states(status.WorkflowContext("wf"))
	if len(states) == 0 || !strings.HasPrefix(states[len(states)-1], "success") {
		t.Fatalf("statuses %q, want success last", states)
	}
	var failures []string
	for _, s := range states {
		if strings.HasPrefix(s, "failure") {
			failures = append(failures, s)
		}
	}
	if len(failures) != 2 || !strings.HasSuffix(failures[0], "· next try in 1m0s") || !strings.HasSuffix(failures[1], "· next try in 2m0s") {
		t.Errorf("failure statuses %q, want each to say when the next try is, 1m then 2m", failures)
	}
}

// TestInvalidFileNotRetried: an invalid file fails the same way until a
// commit changes it, so the loop does not try it again at the same commit.
func TestInvalidFileNotRetried(t *testing.T) {
	m := newMachine(t)
	repo, _ := gitRepo(t, map[string]string{"wf": `{"input_s3_name": "BAD NAME"}`})
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil), Statuses: &statusLog{},
		Runs: m.inv, RetryBackoff: time.Minute, DriftEvery: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		res := loop.Pass(t.Context())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if i > 0 && !res.Skipped {
			t.Errorf("poll %d at the same commit applied an invalid file again", i)
		}
		now = now.Add(time.Minute)
	}
}
