package sync

import (
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/provision"
)

// TestDecideStrand is the decision of the check for stranded files, one
// tick at a time, without AWS.
func TestDecideStrand(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := strandPolicy{maxFailed: 3, delay: func(failed int) time.Duration { return time.Duration(1+failed) * time.Minute }}
	stranded := provision.StageActivity{Waiting: 3, StoppedReason: "CannotPullContainerError: x"}
	for _, tc := range []struct {
		name     string
		state    strandState
		activity provision.StageActivity
		progress bool
		want     strandAction
		check    func(strandState) bool
	}{
		{name: "idle stage", activity: provision.StageActivity{}, want: strandWait,
			check: func(s strandState) bool { return !s.seen && s.failed == 0 }},
		{name: "first look at stranded files only notes them", activity: stranded, want: strandWait,
			check: func(s strandState) bool {
				return s.seen && s.next.Equal(t0.Add(time.Minute)) && s.reason == stranded.StoppedReason
			}},
		{name: "second look before the backoff waits", state: strandState{seen: true, next: t0.Add(time.Second)},
			activity: stranded, want: strandWait},
		{name: "second look after the backoff starts a task", state: strandState{seen: true, next: t0},
			activity: stranded, want: strandStart, check: func(s strandState) bool { return s.started && s.failed == 0 }},
		{name: "a started task still running: wait", state: strandState{seen: true, started: true},
			activity: provision.StageActivity{Waiting: 3, Running: 1}, want: strandWait,
			check: func(s strandState) bool { return s.started && !s.seen }},
		{name: "a started task gone without a file is a failed start", state: strandState{seen: true, started: true},
			activity: stranded, want: strandWait,
			check: func(s strandState) bool { return s.failed == 1 && !s.started && s.next.Equal(t0.Add(2*time.Minute)) }},
		{name: "a started task gone after the backoff was over", state: strandState{seen: false, started: true, failed: 1},
			activity: stranded, want: strandWait,
			check: func(s strandState) bool { return s.failed == 2 && s.seen && s.next.Equal(t0.Add(3*time.Minute)) }},
		{name: "the last failed start dead-letters", state: strandState{seen: true, started: true, failed: 2},
			activity: stranded, want: strandDeadLetter, check: func(s strandState) bool { return s.failed == 3 }},
		{name: "bound reached, still stranded: dead-letter again", state: strandState{seen: true, failed: 3, next: t0.Add(time.Hour)},
			activity: stranded, want: strandDeadLetter},
		{name: "a file in flight resets the count", state: strandState{seen: true, started: true, failed: 2},
			activity: provision.StageActivity{Waiting: 3, InFlight: 1}, want: strandWait,
			check: func(s strandState) bool { return s.failed == 0 && !s.started && !s.seen }},
		{name: "a recorded run resets the count", state: strandState{seen: true, started: true, failed: 2, next: t0},
			activity: stranded, progress: true, want: strandStart,
			check: func(s strandState) bool { return s.failed == 0 && s.started }},
		{name: "queue drained: forget the reason", state: strandState{seen: true, failed: 1, reason: "old"},
			activity: provision.StageActivity{}, want: strandWait,
			check: func(s strandState) bool { return s.reason == "" && !s.seen && s.waiting == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, action := decideStrand(tc.state, tc.activity, tc.progress, t0, p)
			if action != tc.want {
				t.Errorf("action = %d, want %d (state %+v)", action, tc.want, got)
			}
			if tc.check != nil && !tc.check(got) {
				t.Errorf("state after = %+v", got)
			}
		})
	}
}

// TestStartFailedCounts: a RunTask refusal counts as a failed start and
// backs off.
func TestStartFailedCounts(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := strandPolicy{maxFailed: 3, delay: func(failed int) time.Duration { return time.Duration(failed) * time.Hour }}
	s := strandState{seen: true, started: true, failed: 1}.startFailed(t0, p)
	if s.started || s.failed != 2 || !s.next.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("after a refused start: %+v", s)
	}
}
