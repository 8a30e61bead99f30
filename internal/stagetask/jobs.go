package stagetask

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch"
	batchtypes "github.com/aws/aws-sdk-go-v2/service/batch/types"

	"github.com/cloudpipe/cloudpipe/internal/contract"
)

// A stage placed on AWS Batch starts jobs instead of tasks: one SubmitJob
// per job, on the capacity's queue (shared with other stages of the same
// instance type and capacity) with the stage's job definition.

// UnfinishedJobStatuses are the statuses of a job that has not ended: the
// stage's cap counts its jobs in these.
// https://docs.aws.amazon.com/batch/latest/userguide/job_states.html
var UnfinishedJobStatuses = []batchtypes.JobStatus{
	batchtypes.JobStatusSubmitted, batchtypes.JobStatusPending, batchtypes.JobStatusRunnable,
	batchtypes.JobStatusStarting, batchtypes.JobStatusRunning,
}

// JobDefinitionName returns the name of a job definition given as an ARN
// (arn:aws:batch:REGION:ACCOUNT:job-definition/NAME:REVISION), as
// NAME:REVISION or as NAME; "" when def names none.
func JobDefinitionName(def string) string { return revisionedName(def, "job-definition/") }

// JobName is the name of the stage's job started for token (a record's
// idempotency token, 64 hex characters): the job definition's name, the
// stage's own, then the token. Batch has no clientToken and does not make
// job names unique ("SubmitJob" takes any name), so the name is how a
// stage finds its jobs on a shared queue and how a repeated event finds the
// job it started: at most 128 characters.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_SubmitJob.html
func JobName(jobDefinition, token string) string {
	name := JobDefinitionName(jobDefinition) + "-" + token
	return name[:min(len(name), 128)]
}

// IsStageJob reports whether a job named name is one of the stage whose job
// definition is jobDefinition (JobName): the definition's name, then a
// token of hex digits (the agent's own starts: "cloudpipe-agent-" and hex).
// The token must hold no hyphen, or stage 1 of workflow "w" (cp-w-1) would
// claim the jobs of stage 1 of workflow "w-1" (cp-w-1-1-…).
func IsStageJob(jobDefinition, name string) bool {
	token, ok := strings.CutPrefix(name, JobDefinitionName(jobDefinition)+"-")
	if !ok {
		return false
	}
	token = strings.TrimPrefix(token, "cloudpipe-agent-")
	return token != "" && strings.Trim(token, "0123456789abcdef") == ""
}

// SubmitJobInput is the SubmitJob request of one job of the stage env
// describes, for token: its definition on its queue, with no overrides (the
// definition carries the runner's environment).
func SubmitJobInput(env contract.FunctionEnv, token string) *batch.SubmitJobInput {
	return &batch.SubmitJobInput{
		JobName:       aws.String(JobName(env.JobDefinition, token)),
		JobQueue:      aws.String(env.JobQueue),
		JobDefinition: aws.String(env.JobDefinition),
	}
}

// ListJobsInput lists the jobs of status on queue, a page of at most 100
// from next. The queue is shared: the caller keeps the stage's jobs
// (IsStageJob). Without filters, since a filter makes Batch ignore the
// status and list finished jobs too.
// https://docs.aws.amazon.com/batch/latest/APIReference/API_ListJobs.html
func ListJobsInput(queue string, status batchtypes.JobStatus, next *string) *batch.ListJobsInput {
	return &batch.ListJobsInput{
		JobQueue:   aws.String(queue),
		JobStatus:  status,
		MaxResults: aws.Int32(100),
		NextToken:  next,
	}
}
