package sync_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/status"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// stageTasks plays a stage whose every task stops before receiving (an
// image that cannot be pulled) unless receives says otherwise, and records
// the calls it gets.
type stageTasks struct {
	mu      gosync.Mutex
	waiting int    // files in the work queue
	reason  string // stoppedReason of every task
	// receives, if set, is called at each start: true makes the task
	// receive one file, which leaves the queue and shows as in flight.
	receives func() bool
	inFlight int
	dead     int
	calls    []string
}

var _ pipesync.StageTasks = (*stageTasks)(nil)
var _ pipesync.StageTasks = (*provision.Provisioner)(nil)

func (s *stageTasks) StageActivity(_ context.Context, spec provision.StageSpec, _ provision.StageResources) (provision.StageActivity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := provision.StageActivity{Waiting: s.waiting, InFlight: s.inFlight}
	if a.Stranded() {
		a.StoppedReason = s.reason
	}
	s.inFlight = 0 // a runner holds a file for one tick
	return a, nil
}

func (s *stageTasks) StartStageTask(_ context.Context, spec provision.StageSpec, _ provision.StageResources) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("start %s/%d", spec.Workflow, spec.Stage))
	if s.receives != nil && s.receives() && s.waiting > 0 {
		s.waiting--
		s.inFlight++
	}
	return "arn:task", nil
}

func (s *stageTasks) DeadLetterWaiting(_ context.Context, spec provision.StageSpec, _ provision.StageResources, why string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("dead-letter %s/%d: %s", spec.Workflow, spec.Stage, why))
	n := s.waiting
	s.waiting, s.dead = 0, s.dead+n
	return n, nil
}

func (s *stageTasks) took() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// strandLoop deploys one single_run workflow and returns a Loop checking
// its stage through tasks, with its clock at *now.
func strandLoop(t *testing.T, tasks *stageTasks, now *time.Time) (*pipesync.Loop, *statusLog) {
	t.Helper()
	m := newMachine(t)
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	m.pass(m.agent("a", nil), files, "c1")
	repo, _ := gitRepo(t, files)
	posts := &statusLog{}
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil), Statuses: posts,
		Runs: m.inv, Tasks: tasks, StartBackoff: time.Minute, MaxFailedStarts: 3,
		Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return loop, posts
}

// TestStrandedFilesDeadLetteredAfterFailedStarts: files wait and every task
// stops before receiving; the loop starts a task again three times, saying
// why in the run status, then moves the files to the dead-letter queue,
// counted, and stops starting tasks.
func TestStrandedFilesDeadLetteredAfterFailedStarts(t *testing.T) {
	reason := "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref registry.invalid/sorter:1"
	tasks := &stageTasks{waiting: 3, reason: reason}
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	loop, posts := strandLoop(t, tasks, &now)
	for range 40 { // minutes: the backoff waits at most 1+2+4
		if err := loop.UpdateRunStatuses(t.Context()); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
	}
	calls := tasks.took()
	want := []string{"start wf/0", "start wf/0", "start wf/0", "dead-letter wf/0: " + reason}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls = %q\nwant %q", calls, want)
	}
	if tasks.dead != 3 || tasks.waiting != 0 {
		t.Errorf("%d dead-lettered, %d waiting; want 3 and 0", tasks.dead, tasks.waiting)
	}
	runs := posts.states(status.RunContext("wf"))
	if len(runs) != 2 || !strings.HasPrefix(runs[0], "pending: 3 waiting · task stopped: CannotPullContainerError") ||
		!strings.HasPrefix(runs[1], "failure: 3 dead-lettered after 3 failed starts: CannotPullContainerError") {
		t.Errorf("run statuses = %q, want pending with the waiting files, then failure with the dead letters", runs)
	}
	for _, r := range runs {
		if n := len([]rune(strings.TrimPrefix(strings.TrimPrefix(r, "pending: "), "failure: "))); n > status.MaxDescription {
			t.Errorf("description of %d runes: %q", n, r)
		}
	}
}

// TestStrandedFilesTaskThatReceivesResetsCount: a started task that
// receives its file resets the count of failed starts, so a stage whose
// tasks fail now and then is never dead-lettered while it makes progress.
func TestStrandedFilesTaskThatReceivesResetsCount(t *testing.T) {
	starts := 0
	// Every other task receives one file.
	tasks := &stageTasks{waiting: 4, reason: "ResourceInitializationError: x", receives: func() bool { starts++; return starts%2 == 0 }}
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	loop, posts := strandLoop(t, tasks, &now)
	for range 60 {
		if err := loop.UpdateRunStatuses(t.Context()); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Minute)
	}
	for _, c := range tasks.took() {
		if strings.HasPrefix(c, "dead-letter") {
			t.Fatalf("calls = %q: dead-lettered although every other task received a file", tasks.took())
		}
	}
	if tasks.waiting != 0 || starts != 8 {
		t.Errorf("%d waiting after %d starts; want 0 after 8", tasks.waiting, starts)
	}
	if runs := posts.states(status.RunContext("wf")); len(runs) == 0 || !strings.Contains(runs[0], "waiting · task stopped: ResourceInitializationError") {
		t.Errorf("run statuses = %q, want the waiting files and the reason", runs)
	}
}

// TestStrandedCheckOffWithoutTasks: a loop without Tasks only counts runs,
// as before.
func TestStrandedCheckOffWithoutTasks(t *testing.T) {
	m := newMachine(t)
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	m.pass(m.agent("a", nil), files, "c1")
	repo, _ := gitRepo(t, files)
	posts := &statusLog{}
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil), Statuses: posts, Runs: m.inv})
	if err != nil {
		t.Fatal(err)
	}
	key := contract.RunRecordKey("wf", 0, m.now, contract.OutcomeOK, "m-input", "a.txt", "receipt")
	if err := m.inv.PutRun(key, contract.RunRecord{Result: "s3://m-output/a.txt.out"}); err != nil {
		t.Fatal(err)
	}
	if err := loop.UpdateRunStatuses(t.Context()); err != nil {
		t.Fatal(err)
	}
	if runs := posts.states(status.RunContext("wf")); !slices.Equal(runs, []string{"success: 1 done, 0 failed · last s3://m-output/a.txt.out"}) {
		t.Errorf("run statuses = %q", runs)
	}
}
