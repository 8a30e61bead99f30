package sync_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/internal/testenv"
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

// BenchmarkRetryLatency measures, on the loop's clock, how long a workflow
// stays failed after the obstacle that failed it is removed: from the
// removal to its success status. The loop runs with the default schedule
// ("@every 1m"), retry backoff and drift interval, none of them set here.
// Each op is one agent: it polls a while at a commit without the workflow
// (so drift checks fall at any phase), then a tick's pass finds the commit
// that adds it and fails; the obstacle goes at a moment swept, op by op,
// over the 30 minutes after that failure (the backoff reaches its cap in
// that time). Passes run at the moments robfig/cron would start them: ticks
// a whole number of seconds apart, each pass a few milliseconds late by the
// timer's and the scheduler's lag, different every tick. The clock does not
// move during a pass: the figures leave out the apply's own time.
//
// Goal: under two polls plus the backoff, 3 minutes.
func BenchmarkRetryLatency(b *testing.B) {
	const (
		poll    = time.Minute      // the default schedule
		backoff = time.Minute      // the default RetryBackoff
		horizon = 30 * time.Minute // removals are swept over this after the failure
		goal    = 2*poll + backoff
	)
	dir := b.TempDir()
	commit := func(files map[string]string) string {
		for name, f := range repo(files) {
			path := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(path, f.Data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		testenv.Git(b, dir, "add", "-A")
		testenv.Git(b, dir, "commit", "-q", "--allow-empty", "-m", "workflows")
		return testenv.Git(b, dir, "rev-parse", "HEAD")
	}
	testenv.Git(b, dir, "init", "-q", "-b", "main")
	without := commit(nil)
	with := commit(map[string]string{"wf": singleRun("m-input", "m-output", "x")})
	repository, err := pipesync.OpenRepo(b.Context(), gitsource.Options{URL: dir, Branch: "main", CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(13, 2))
	lag := func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }
	var total, worst time.Duration
	over := 0
	b.ResetTimer()
	for i := range b.N {
		testenv.Git(b, dir, "update-ref", "refs/heads/main", without)
		m := newMachine(b)
		var now, removed time.Time
		m.prov.fail = func(op, _ string, _ int) error {
			if op == "ensure" && now.Before(removed) {
				return errors.New("create role cp-wf-0-task: AccessDenied: not authorized to perform iam:CreateRole")
			}
			return nil
		}
		posts := &clockedStatuses{context: status.WorkflowContext("wf"), now: &now}
		loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repository, Reconciler: m.agent("a", nil),
			Statuses: posts, Runs: m.inv, Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		pass := func() pipesync.PassResult {
			res := loop.Pass(b.Context())
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			return res
		}
		// Loop.Run's first pass comes at once, at a moment that is not on a
		// whole second; cron's ticks then fall on whole seconds, one poll
		// apart.
		start := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(time.Second))))
		now = start
		pass()
		tick := start.Truncate(time.Second)
		for range rng.IntN(10) { // the drift interval's phase
			tick = tick.Add(poll)
			now = tick.Add(lag())
			pass()
		}
		testenv.Git(b, dir, "update-ref", "refs/heads/main", with)
		// The i-th removal: i times the golden ratio's fraction of the
		// horizon, which sweeps it evenly for any b.N.
		u := time.Duration(math.Mod(float64(i)*0.6180339887498949, 1) * float64(horizon))
		removed = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) // until the failure
		tick = tick.Add(poll)
		now = tick.Add(lag())
		if res := pass(); res.Skipped || res.Report.Failed() != 1 {
			b.Fatalf("the pass at the new commit: %+v, want the workflow failed", res)
		}
		removed = now.Add(u)
		for posts.success.IsZero() {
			if now.Sub(removed) > 2*horizon {
				b.Fatalf("op %d: no success status %v after the obstacle went", i, now.Sub(removed))
			}
			tick = tick.Add(poll)
			now = tick.Add(lag())
			pass()
		}
		d := posts.success.Sub(removed)
		total += d
		worst = max(worst, d)
		if d >= goal {
			over++
		}
	}
	mean := total / time.Duration(b.N)
	b.ReportMetric(mean.Seconds(), "retry_latency_s/op")
	b.ReportMetric(worst.Seconds(), "retry_latency_max_s")
	b.ReportMetric(float64(mean)/float64(poll), "retry_latency_polls/op")
	b.ReportMetric(float64(worst)/float64(poll), "retry_latency_max_polls")
	b.ReportMetric(float64(over)/float64(b.N), "over_goal_frac")
}

// clockedStatuses notes the moment, on the loop's clock, of the first
// success status of one context.
type clockedStatuses struct {
	context string
	now     *time.Time
	success time.Time
}

func (c *clockedStatuses) Post(_ context.Context, s status.Status) (bool, error) {
	if s.Context == c.context && s.State == status.Success && c.success.IsZero() {
		c.success = *c.now
	}
	return true, nil
}
