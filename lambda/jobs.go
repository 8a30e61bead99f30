package lambda

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

// startJobs is startTasks for a stage on AWS Batch: one job per queued
// file, SubmitJob one at a time, never more than MaxTasks of the stage's
// jobs unfinished, the same handling of failures (settle).
//
// Batch has no clientToken, so a duplicate delivery of an event is caught
// by the job's name instead: JobName derives it from the record's token,
// and a job of that name still unfinished (found while counting) is not
// submitted again. AWS guarantees nothing here: ListJobs is eventually
// consistent and two deliveries handled at the same moment may both
// submit, and a delivery after the first job ended submits one more. Such
// a job costs an idle runner, not a second result: its runner finds the
// message gone (or takes another file) and exits after its idle time, and
// a result is written at most once (If-None-Match).
func (h *Handler) startJobs(ctx context.Context, queued []job, margin time.Duration) (started int, err error) {
	running, names, err := h.unfinishedJobs(ctx)
	n, running := h.budget(len(queued), running, err)
	if n <= 0 {
		return 0, nil
	}
	var failure error
	for i, j := range queued[:n] {
		in := stagetask.SubmitJobInput(h.cfg.FunctionEnv, j.token)
		if names[aws.ToString(in.JobName)] {
			h.log.Debug("job already submitted for this record", "job_name", aws.ToString(in.JobName))
			continue
		}
		if left := remaining(ctx); left < margin {
			failure = fmt.Errorf("submit %d jobs with %v left: %w", n-i, left.Round(1e6), ErrDeadline)
			break
		}
		if _, err := h.batch.SubmitJob(ctx, in); err != nil {
			failure = fmt.Errorf("submit job %s to %s: %w", h.cfg.JobDefinition, h.cfg.JobQueue, err)
			break // the next call would fail the same way
		}
		started++
	}
	h.log.Debug("jobs submitted", "count", started)
	return h.settle(queued, running, started, n, failure)
}

// unfinishedJobs counts the stage's jobs on its queue that have not ended
// (stagetask.UnfinishedJobStatuses), stopping at MaxTasks, and returns
// their names. The queue is shared with the other stages of the same
// instance type and capacity: a job is the stage's by its name.
func (h *Handler) unfinishedJobs(ctx context.Context) (int, map[string]bool, error) {
	names := map[string]bool{}
	for _, status := range stagetask.UnfinishedJobStatuses {
		var next *string
		for {
			out, err := h.batch.ListJobs(ctx, stagetask.ListJobsInput(h.cfg.JobQueue, status, next))
			if err != nil {
				return len(names), names, fmt.Errorf("list %s jobs of %s: %w", status, h.cfg.JobQueue, err)
			}
			for _, s := range out.JobSummaryList {
				if name := aws.ToString(s.JobName); stagetask.IsStageJob(h.cfg.JobDefinition, name) {
					names[name] = true
				}
			}
			if len(names) >= h.cfg.MaxTasks {
				return len(names), names, nil
			}
			if next = out.NextToken; next == nil {
				break
			}
		}
	}
	return len(names), names, nil
}
