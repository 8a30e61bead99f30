package sync_test

import (
	"fmt"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/notify"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// eventLog is a Notifier that keeps what it is told.
type eventLog struct {
	mu     gosync.Mutex
	events []notify.Event
}

func (l *eventLog) Notify(e notify.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) runFailures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		if e.Event == notify.EventRunFailures {
			out = append(out, fmt.Sprintf("%s:%d", e.Workflow, e.Counts["failed"]))
		}
	}
	return out
}

// TestRunFailuresNotifiedAggregated: failed runs recorded by the runners are
// told on the run-status tick, the first at once, the ones after it within
// RunFailuresEvery together once that has passed.
func TestRunFailuresNotifiedAggregated(t *testing.T) {
	m := newMachine(t)
	files := map[string]string{"wf": singleRun("m-input", "m-output", "x")}
	repo, _ := gitRepo(t, files)
	log := &eventLog{}
	loop, err := pipesync.NewLoop(pipesync.LoopOptions{Repo: repo, Reconciler: m.agent("a", nil), Runs: m.inv,
		Notifier: log, RunFailuresEvery: 5 * time.Minute, Now: func() time.Time { return m.now }})
	if err != nil {
		t.Fatal(err)
	}
	if res := loop.Pass(t.Context()); res.Err != nil || res.Report.Failed() != 0 {
		t.Fatalf("pass: %+v", res)
	}
	n := 0
	fail := func(count int) {
		t.Helper()
		for range count {
			n++
			key := contract.RunRecordKey("wf", 0, m.now, contract.OutcomeFailed, "m-input", fmt.Sprintf("f%d.txt", n), "r")
			if err := m.inv.PutRun(key, contract.RunRecord{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := loop.UpdateRunStatuses(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	tick := func() { m.now = m.now.Add(time.Minute) }
	fail(1) // told at once
	tick()
	fail(2) // within the interval: held
	tick()
	fail(3)
	tick()
	fail(0)
	tick()
	tick()
	fail(0) // five minutes after the first message: the 5 held
	tick()
	fail(0)
	if got, want := log.runFailures(), []string{"wf:1", "wf:5"}; !slices.Equal(got, want) {
		t.Errorf("run-failure notifications %q, want %q", got, want)
	}
	l := log
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == 0 || l.events[0].Event != notify.EventApply {
		t.Errorf("first event %+v, want the apply", l.events)
	}
}
