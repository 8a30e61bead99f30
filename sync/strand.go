package sync

import (
	"context"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/backoff"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// Files are stranded in a stage's work queue when its tasks stop before
// receiving them (an image that cannot be pulled, a secret the task may not
// read, no Fargate capacity, a runner that crashes at start): the stage
// function starts tasks only when a file is uploaded, so nothing would
// retry until the next upload. On each run-status tick the Loop looks at
// every deployed stage and, when files wait and nothing runs, starts a task
// again with exponential backoff; after MaxFailedStarts starts whose task
// received nothing, it moves the waiting files to the stage's dead-letter
// queue. So every file ends in one result or one dead letter.

// Defaults of the LoopOptions that bound the retries.
const (
	DefaultMaxFailedStarts = 3
	// maxStartBackoffFactor caps the wait between starts at this many
	// StartBackoff.
	maxStartBackoffFactor = 16
)

// strandAction is what the Loop does for one stage on one tick.
type strandAction int

const (
	strandWait       strandAction = iota // nothing to do now
	strandStart                          // start one task of the stage
	strandDeadLetter                     // move the waiting files to the DLQ
)

// strandState is what the Loop remembers of one stage between ticks.
type strandState struct {
	seen    bool      // files were stranded at the last look
	started bool      // a task the agent started has not yet shown how it went
	failed  int       // the agent's starts in a row whose task received nothing
	next    time.Time // no start before this
	waiting int       // files waiting at the last look
	reason  string    // why the stage's last task stopped, as ECS says
}

// strandPolicy bounds the retries: how many failed starts, and the wait
// before the next start after failed ones.
type strandPolicy struct {
	maxFailed int
	delay     func(failed int) time.Duration // wait after the failed-th failure (0: the first look)
}

// decideStrand is what to do for a stage in state s that shows activity a
// now; progress says the stage recorded runs since the last tick. It is the
// whole decision, without AWS:
//   - a runner received a file (in flight, or a new run record): the last
//     start worked, and the count of failed starts starts again;
//   - files wait and nothing runs or holds one (stranded): a task the agent
//     started and that is gone without a file was a failed start; the first
//     look only notes it, since the stage function may be starting a task
//     this moment (ListTasks lags); after maxFailed failed starts the files
//     are dead-lettered; otherwise a task is started once the backoff is
//     over;
//   - anything else (tasks running, nothing waiting): wait.
func decideStrand(s strandState, a provision.StageActivity, progress bool, now time.Time, p strandPolicy) (strandState, strandAction) {
	s.waiting = a.Waiting
	if a.StoppedReason != "" {
		s.reason = a.StoppedReason
	}
	if progress || a.InFlight > 0 {
		s.failed, s.started = 0, false
	}
	if !a.Stranded() {
		s.seen = false
		if a.Waiting == 0 && a.InFlight == 0 {
			s.reason = ""
		}
		return s, strandWait
	}
	if s.started {
		s.started = false
		s.failed++
		s.next = now.Add(p.delay(s.failed))
	}
	if !s.seen {
		s.seen = true
		if s.failed == 0 {
			s.next = now.Add(p.delay(0))
			return s, strandWait
		}
	}
	switch {
	case s.failed >= p.maxFailed:
		return s, strandDeadLetter
	case now.Before(s.next):
		return s, strandWait
	}
	s.started = true
	return s, strandStart
}

// startFailed records a start that RunTask refused: it counts as a failed
// start.
func (s strandState) startFailed(now time.Time, p strandPolicy) strandState {
	s.started = false
	s.failed++
	s.next = now.Add(p.delay(s.failed))
	return s
}

// policy is the Loop's strandPolicy: waits of StartBackoff doubled per
// failed start, at most maxStartBackoffFactor times it, jittered.
func (l *Loop) policy() strandPolicy {
	base := l.opts.StartBackoff
	return strandPolicy{maxFailed: l.opts.MaxFailedStarts, delay: func(failed int) time.Duration {
		return backoff.Exponential(failed, base, maxStartBackoffFactor*base)
	}}
}

// checkStranded looks at each stage of workflow name, deployed as stages,
// and starts tasks or dead-letters files as decideStrand says; fresh holds
// the stages that recorded runs since the last tick. Problems are logged:
// one stage's must not keep the others, or the run statuses, from being
// looked at.
func (l *Loop) checkStranded(ctx context.Context, name string, stages []inventory.StageRecord, t *runTally, fresh map[int]bool) {
	for _, st := range stages {
		spec, res := st.Spec, st.Resources
		log := l.log.With("workflow", name, "stage", spec.Stage)
		a, err := l.opts.Tasks.StageActivity(ctx, spec, res)
		if err != nil {
			log.Warn("stage activity not read", "err", err)
			continue
		}
		now := l.opts.Now()
		s, action := decideStrand(t.strand[spec.Stage], a, fresh[spec.Stage], now, l.policy())
		switch action {
		case strandStart:
			arn, err := l.opts.Tasks.StartStageTask(ctx, spec, res)
			if err != nil {
				s = s.startFailed(now, l.policy())
				log.Warn("task for stranded files not started", "waiting", a.Waiting, "failed_starts", s.failed, "err", err)
				if s.reason == "" {
					s.reason = err.Error()
				}
				break
			}
			log.Info("files waiting with no task: task started again", "waiting", a.Waiting,
				"failed_starts", s.failed, "last_stopped_reason", s.reason, "task", arn)
		case strandDeadLetter:
			n, err := l.opts.Tasks.DeadLetterWaiting(ctx, spec, res, s.reason)
			t.deadLettered += n
			if n > 0 {
				t.deadStarts, t.deadReason = s.failed, s.reason
			}
			if err != nil {
				if ctx.Err() == nil {
					log.Error("stranded files not all dead-lettered", "moved", n, "err", err)
				}
				break
			}
			log.Warn("stranded files dead-lettered", "count", n, "failed_starts", s.failed, "reason", s.reason)
			s = strandState{}
		}
		t.strand[spec.Stage] = s
	}
}
