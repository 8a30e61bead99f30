package sync

import (
	"context"
	"fmt"
	"strings"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/inventory"
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
}

// UpdateRunStatuses counts the run records of every deployed workflow that
// appeared since the last call and posts cloudpipe/run/<workflow> on the
// commit that deployed it when the counts changed. It lists each stage's
// records from where the last call stopped, so a call with no new runs costs
// one listing per stage and posts nothing.
func (l *Loop) UpdateRunStatuses(ctx context.Context) error {
	if l.opts.Statuses == nil || l.opts.Runs == nil {
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
			t = &runTally{commit: e.Commit, after: map[int]string{}}
			l.runs[name] = t
		}
		l.mu.Unlock()
		if err := l.tally(ctx, l.opts.Runs, name, e.Stages, t); err != nil {
			return err
		}
		if t.done+t.failed == 0 {
			continue
		}
		st := status.Success
		if !t.lastOK {
			st = status.Failure
		}
		desc := status.RunDescription(t.done, t.failed, t.lastResult)
		if desc == t.posted {
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
	return nil
}

// tally adds the records written since the last call. Only the last stage's
// records count as done or failed runs of the pipeline; a failed run of an
// earlier stage counts as failed too, since its file never gets through.
func (l *Loop) tally(ctx context.Context, runs RunRecords, name string, stages int, t *runTally) error {
	for stage := range stages {
		keys, err := runs.ListRunKeys(ctx, name, stage, t.after[stage])
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			continue
		}
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
				return fmt.Errorf("run status of %s: %w", name, err)
			}
			t.lastResult = rec.Result
		}
	}
	return nil
}
