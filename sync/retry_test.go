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
	// The index says when the next try is due, for `agent status`: a
	// minute after the failing pass started, a tenth of it early.
	nextRetry := func() time.Time {
		t.Helper()
		idx, err := m.inv.ReadIndex(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return idx.Workflows["wf"].NextRetry
	}
	if got, want := nextRetry(), time.Date(2026, 12, 6, 9, 0, 54, 0, time.UTC); !got.Equal(want) {
		t.Errorf("recorded next retry %v, want %v", got, want)
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
	if got := nextRetry(); !got.IsZero() {
		t.Errorf("a deployed workflow still records a next retry at %v", got)
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

// TestRetryWaitStopsAtTwiceTheBackoff: while the obstacle stays, the wait
// between tries doubles once and no further, so that a fix is picked up
// within two polls plus the backoff however long the obstacle lasted.
func TestRetryWaitStopsAtTwiceTheBackoff(t *testing.T) {
	m := newMachine(t)
	m.prov.fail = func(op, _ string, _ int) error {
		if op == "ensure" {
			return errors.New("create role cp-wf-0-task: AccessDenied: not authorized to perform iam:CreateRole")
		}
		return nil
	}
	repo, _ := gitRepo(t, map[string]string{"wf": singleRun("m-input", "m-output", "x")})
	posts := &statusLog{}
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	// The default schedule and backoff; no drift check in the 20 minutes.
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil), Statuses: posts,
		Runs: m.inv, DriftEvery: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var applied []int
	for minute := 0; minute <= 20; minute++ {
		res := loop.Pass(t.Context())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if !res.Skipped {
			applied = append(applied, minute)
		}
		now = now.Add(time.Minute)
	}
	if want := []int{0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19}; !slices.Equal(applied, want) {
		t.Errorf("passes applied at minutes %v, want %v (a minute, then every two)", applied, want)
	}
	var waits []string
	for _, s := range posts.states(status.WorkflowContext("wf")) {
		if _, wait, ok := strings.Cut(s, "· next try in "); ok {
			waits = append(waits, wait)
		}
	}
	if len(waits) < 3 || waits[0] != "1m0s" || slices.ContainsFunc(waits[1:], func(w string) bool { return w != "2m0s" }) {
		t.Errorf("failure statuses say next tries in %q, want 1m0s then 2m0s each time", waits)
	}
}

// TestRetryDueAtATickThatStartsLessLate: a scheduled pass starts a little
// after its tick, by a different lag each time, and the first pass of Run
// is not on a tick at all; a try due one backoff after the failing pass is
// still made by the pass of the tick one backoff later.
func TestRetryDueAtATickThatStartsLessLate(t *testing.T) {
	tick := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		failed, next time.Time // when the failing pass and the one after it start
	}{
		{"tick lag 9 ms, then 1 ms", tick.Add(9 * time.Millisecond), tick.Add(time.Minute + time.Millisecond)},
		{"Run's first pass at 0.7 s, then a tick", tick.Add(700 * time.Millisecond), tick.Add(time.Minute + time.Millisecond)},
		{"a pass held 3 s by a run-status update, then a tick", tick.Add(3 * time.Second), tick.Add(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t)
			obstacle := true
			m.prov.fail = func(op, _ string, _ int) error {
				if obstacle && op == "ensure" {
					return errors.New("create role cp-wf-0-task: AccessDenied: not authorized to perform iam:CreateRole")
				}
				return nil
			}
			repo, _ := gitRepo(t, map[string]string{"wf": singleRun("m-input", "m-output", "x")})
			now := tc.failed
			loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil),
				Statuses: &statusLog{}, Runs: m.inv, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			if res := loop.Pass(t.Context()); res.Err != nil || res.Report == nil || res.Report.Failed() != 1 {
				t.Fatalf("first pass: %+v, want the workflow failed", res)
			}
			obstacle, now = false, tc.next
			res := loop.Pass(t.Context())
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if res.Skipped || res.Report.Failed() != 0 {
				t.Errorf("the pass one tick after the failure: %+v, want the workflow tried again and deployed", res)
			}
		})
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
