package sync

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/notify"
	"github.com/cloudpipe/cloudpipe/status"
)

// runTally is what the agent has counted of one workflow's runs.
type runTally struct {
	commit     string         // the commit that deployed the workflow: where the status goes
	after      map[int]string // stage -> last record key counted
	done       int
	failed     int
	lastKey    string // newest record key of the last stage
	lastOK     bool
	lastResult string // s3 URI of the newest result
	posted     string // description last posted

	// stages are the deployed stages, read from the inventory record once
	// per deploy, for the check for stranded files.
	stages []inventory.StageRecord
	strand map[int]strandState // by stage
	// deadLettered counts the files moved to a dead-letter queue since the
	// deploy; deadStarts and deadReason say why, for the status, until the
	// next run is recorded.
	deadLettered int
	deadStarts   int
	deadReason   string
}

// UpdateRunStatuses counts the run records of every deployed workflow that
// appeared since the last call, checks its stages for files left waiting
// with no task (checkStranded), and posts cloudpipe/run/<workflow> on the
// commit that deployed it when what it says changed. It lists each stage's
// records from where the last call stopped, so a call with no new runs costs
// one listing per stage, and a queue-attributes read per stage, and posts
// nothing.
func (l *Loop) UpdateRunStatuses(ctx context.Context) error {
	if l.opts.Runs == nil && l.opts.Tasks == nil {
		return nil
	}
	idx, err := l.opts.Reconciler.Inventory().ReadIndex(ctx)
	if err != nil {
		return err
	}
	for name, e := range idx.Workflows {
		if e.State != inventory.StateReady || e.Commit == "" || e.Stages == 0 {
			continue
		}
		l.mu.Lock()
		t := l.runs[name]
		if t == nil || t.commit != e.Commit {
			// Counts start again at each deploy: the status lives on the
			// deploying commit, and a new one starts from zero.
			t = &runTally{commit: e.Commit, after: map[int]string{}, strand: map[int]strandState{}}
			l.runs[name] = t
		}
		l.mu.Unlock()
		fresh := map[int]bool{}
		if l.opts.Runs != nil {
			failedBefore := t.failed
			if fresh, err = l.tally(ctx, l.opts.Runs, name, e.Stages, t); err != nil {
				return err
			}
			l.notifyRunFailures(name, t.commit, t.failed-failedBefore)
		}
		if l.opts.Tasks != nil {
			if err := l.loadStages(ctx, name, t); err != nil {
				l.log.Warn("stages not checked for stranded files", "workflow", name, "err", err)
			} else {
				l.checkStranded(ctx, name, t.stages, t, fresh)
			}
		}
		if l.opts.Statuses == nil {
			continue
		}
		st, desc := t.describe()
		if desc == "" || desc == t.posted {
			continue
		}
		// A status's link must be http(s): point at the output bucket's
		// console page of the result rather than the s3:// URI of the result.
		var target string
		if bucket, key, ok := strings.Cut(strings.TrimPrefix(t.lastResult, "s3://"), "/"); ok {
			target = status.ObjectConsoleURL(e.Region, bucket, key)
		}
		l.post(ctx, status.Status{Commit: t.commit, Context: status.RunContext(name), State: st,
			Description: desc, TargetURL: target})
		t.posted = desc
	}
	// Failures held back by the interval whose interval has passed.
	if l.opts.Notifier != nil {
		for _, ev := range l.runFailures.Flush() {
			l.opts.Notifier.Notify(ev)
		}
	}
	return nil
}

// notifyRunFailures tells the Notifier of n new failed runs of workflow,
// at most once per workflow per RunFailuresEvery (notify.RunFailures).
func (l *Loop) notifyRunFailures(workflow, commit string, n int) {
	if l.opts.Notifier == nil || n <= 0 {
		return
	}
	if ev, ok := l.runFailures.Add(workflow, commit, notify.Buckets{}, n, ""); ok {
		l.opts.Notifier.Notify(ev)
	}
}

// describe is the run status t calls for: files stranded now (pending,
// while tasks are started again), else files dead-lettered since the last
// recorded run (failure), else the run counts; "" when there is nothing to
// say yet.
func (t *runTally) describe() (status.State, string) {
	waiting, reason := 0, ""
	for stage := range len(t.stages) {
		if s := t.strand[stage]; s.seen {
			waiting += s.waiting
			if reason == "" {
				reason = s.reason
			}
		}
	}
	switch {
	case waiting > 0:
		return status.Pending, status.StrandedDescription(t.done, t.failed, waiting, reason)
	case t.deadReason != "" || t.deadStarts > 0:
		return status.Failure, status.DeadLetteredDescription(t.done, t.failed, t.deadLettered, t.deadStarts, t.deadReason)
	case t.done+t.failed == 0:
		return "", ""
	case !t.lastOK:
		return status.Failure, status.RunDescription(t.done, t.failed, t.lastResult)
	}
	return status.Success, status.RunDescription(t.done, t.failed, t.lastResult)
}

// loadStages reads the deployed stages from the workflow's inventory
// record, once per deploy.
func (l *Loop) loadStages(ctx context.Context, name string, t *runTally) error {
	if t.stages != nil {
		return nil
	}
	rec, err := l.opts.Reconciler.Inventory().ReadRecord(ctx, name)
	if err != nil {
		return fmt.Errorf("read record of %s: %w", name, err)
	}
	if rec.Commit != t.commit {
		// The index and the record are written apart: wait for the record
		// of the deploy the index names.
		return fmt.Errorf("record of %s is of commit %s, the index says %s", name, rec.Commit, t.commit)
	}
	t.stages = rec.Stages
	return nil
}

// tally adds the records written since the last call and returns the
// stages that wrote any. Only the last stage's records count as done or
// failed runs of the pipeline; a failed run of an earlier stage counts as
// failed too, since its file never gets through.
func (l *Loop) tally(ctx context.Context, runs RunRecords, name string, stages int, t *runTally) (map[int]bool, error) {
	fresh := map[int]bool{}
	for stage := range stages {
		keys, err := runs.ListRunKeys(ctx, name, stage, t.after[stage])
		if err != nil {
			return fresh, err
		}
		if len(keys) == 0 {
			continue
		}
		fresh[stage] = true
		// A run recorded since files were dead-lettered: the status counts
		// runs again.
		t.deadStarts, t.deadReason = 0, ""
		t.after[stage] = keys[len(keys)-1]
		last := stage == stages-1
		for _, k := range keys {
			info, ok := contract.ParseRunRecordKey(k)
			if !ok {
				continue
			}
			switch {
			case info.Outcome == contract.OutcomeFailed:
				t.failed++
			case last:
				t.done++
			}
		}
		if !last {
			continue
		}
		newest := keys[len(keys)-1]
		info, _ := contract.ParseRunRecordKey(newest)
		t.lastKey, t.lastOK = newest, info.Outcome == contract.OutcomeOK
		if t.lastOK {
			var rec contract.RunRecord
			if err := runs.ReadRun(ctx, newest, &rec); err != nil {
				return fresh, fmt.Errorf("run status of %s: %w", name, err)
			}
			t.lastResult = rec.Result
		}
	}
	return fresh, nil
}
