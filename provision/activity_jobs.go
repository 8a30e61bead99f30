package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/cloudpipe/cloudpipe/internal/stagetask"
)

// A stage on AWS Batch runs jobs, not tasks: its activity counts its
// unfinished jobs on the capacity's queue (found by name, as its function
// finds them), and a job that failed without running (FAILED with no
// container started: an image that cannot be pulled, a secret the
// execution role may not read) is a task that failed to start; its status
// reason is the stopped reason the stranded-files check reports.
// https://docs.aws.amazon.com/batch/latest/userguide/job_states.html

// stageJobActivity completes a with the stage's jobs, a.Waiting > 0.
func (p *Provisioner) stageJobActivity(ctx context.Context, c *clients, spec StageSpec, res StageResources, a StageActivity) (StageActivity, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	for _, status := range stagetask.UnfinishedJobStatuses {
		jobs, err := listStageJobs(ctx, c, res, status, 0)
		if err != nil {
			return a, fmt.Errorf("activity of %s: %w", name, err)
		}
		a.Running += len(jobs)
	}
	if !a.Stranded() {
		return a, nil
	}
	failed, err := listStageJobs(ctx, c, res, batchtypes.JobStatusFailed, 1)
	if err != nil {
		return a, fmt.Errorf("activity of %s: %w", name, err)
	}
	var last *batchtypes.JobSummary
	for i, j := range failed {
		if last == nil || aws.ToInt64(j.StoppedAt) > aws.ToInt64(last.StoppedAt) {
			last = &failed[i]
		}
	}
	if last == nil {
		return a, nil
	}
	a.StoppedReason = aws.ToString(last.StatusReason)
	// Batch's status reason says only "Task failed to start"; why is the
	// container's reason (CannotPullContainerError: ...), in the details.
	out, err := c.batch.DescribeJobs(ctx, &batch.DescribeJobsInput{Jobs: []string{aws.ToString(last.JobId)}})
	if err != nil {
		return a, fmt.Errorf("activity of %s: describe job %s: %w", name, aws.ToString(last.JobId), err)
	}
	for _, d := range out.Jobs {
		if r := containerReason(d); r != "" {
			a.StoppedReason = joinReasons(a.StoppedReason, r)
		}
	}
	return a, nil
}

// containerReason is the reason a job's container stopped, "" if none.
func containerReason(d batchtypes.JobDetail) string {
	if p := d.EcsProperties; p != nil {
		for _, t := range p.TaskProperties {
			for _, c := range t.Containers {
				if r := aws.ToString(c.Reason); r != "" {
					return r
				}
			}
		}
	}
	for _, at := range d.Attempts {
		if at.Container != nil && aws.ToString(at.Container.Reason) != "" {
			return aws.ToString(at.Container.Reason)
		}
	}
	return ""
}

// joinReasons is "status: container", or either alone.
func joinReasons(status, container string) string {
	if status == "" {
		return container
	}
	return status + ": " + container
}

// listStageJobs lists the stage's jobs of status on its queue, every page,
// or only the first when onePage is 1.
func listStageJobs(ctx context.Context, c *clients, res StageResources, status batchtypes.JobStatus, onePage int) ([]batchtypes.JobSummary, error) {
	var out []batchtypes.JobSummary
	var next *string
	for page := 1; ; page++ {
		l, err := c.batch.ListJobs(ctx, stagetask.ListJobsInput(res.JobQueueARN, status, next))
		if err != nil {
			return out, fmt.Errorf("list %s jobs of %s: %w", status, res.JobQueueARN, err)
		}
		for _, j := range l.JobSummaryList {
			if stagetask.IsStageJob(res.JobDefinitionARN, aws.ToString(j.JobName)) {
				out = append(out, j)
			}
		}
		if l.NextToken == nil || page == onePage {
			return out, nil
		}
		next = l.NextToken
	}
}

// startStageJob is StartStageTask for a stage on AWS Batch: one job, as
// its function submits it, under a name of its own (the agent's starts are
// not deliveries of an event), and returns its ARN.
func (p *Provisioner) startStageJob(ctx context.Context, spec StageSpec, res StageResources) (string, error) {
	name := ResourceName(spec.Workflow, spec.Stage)
	if res.JobQueueARN == "" || res.JobDefinitionARN == "" {
		return "", fmt.Errorf("start job of %s: no job queue or definition recorded", name)
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	env := p.functionEnv(spec, res, Network{})
	out, err := p.clients(spec.Region).batch.SubmitJob(ctx, stagetask.SubmitJobInput(env, "cloudpipe-agent-"+hex.EncodeToString(b[:])))
	if err != nil {
		return "", fmt.Errorf("start job of %s: %w", name, err)
	}
	return aws.ToString(out.JobArn), nil
}
