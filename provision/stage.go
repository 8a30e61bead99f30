package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// StageResources are the identifiers of one deployed stage, as recorded in
// the inventory. Every field can be derived again from the StageSpec and
// AWS except the task-definition fields, which emulators cannot list.
type StageResources struct {
	InputBucket  string `json:"input_bucket,omitempty"`
	OutputBucket string `json:"output_bucket,omitempty"`
	// InputBucketCreated / OutputBucketCreated say cloudpipe created the
	// bucket (it carries our tags), so DeleteStage may delete it when empty
	// and not retained. A user's pre-existing bucket is false.
	InputBucketCreated  bool `json:"input_bucket_created,omitempty"`
	OutputBucketCreated bool `json:"output_bucket_created,omitempty"`

	QueueURL string `json:"queue_url,omitempty"`
	QueueARN string `json:"queue_arn,omitempty"`
	DLQURL   string `json:"dlq_url,omitempty"`
	DLQARN   string `json:"dlq_arn,omitempty"`

	LambdaRoleARN    string `json:"lambda_role_arn,omitempty"`
	ExecutionRoleARN string `json:"execution_role_arn,omitempty"`
	TaskRoleARN      string `json:"task_role_arn,omitempty"`

	FunctionARN        string `json:"function_arn,omitempty"`
	FunctionCodeSHA256 string `json:"function_code_sha256,omitempty"`

	// TaskDefinitionARN is the revision the function starts.
	TaskDefinitionARN string `json:"task_definition_arn,omitempty"`
	// TaskDefinitionARNs are the revisions cloudpipe registered and has not
	// yet deregistered (superseded ones are deregistered once the function
	// points at the new one; DeleteStage deregisters the rest). Kept here
	// because kumo has no ListTaskDefinitions.
	TaskDefinitionARNs []string `json:"task_definition_arns,omitempty"`
	// TaskDefinitionHash identifies the RegisterTaskDefinition request that
	// made TaskDefinitionARN; a new revision is registered only when the
	// request would differ (kumo has no DescribeTaskDefinition to compare
	// with, and ECS echoes defaults we never sent).
	TaskDefinitionHash string `json:"task_definition_hash,omitempty"`

	// A stage on AWS Batch has a job definition instead of a task
	// definition, recorded the same way (kumo cannot describe job
	// definitions either), and submits to its capacity's job queue.
	JobDefinitionARN  string   `json:"job_definition_arn,omitempty"`
	JobDefinitionARNs []string `json:"job_definition_arns,omitempty"`
	JobDefinitionHash string   `json:"job_definition_hash,omitempty"`
	JobQueueARN       string   `json:"job_queue_arn,omitempty"`

	LogGroup       string `json:"log_group,omitempty"`        // /cloudpipe/<workflow>
	LambdaLogGroup string `json:"lambda_log_group,omitempty"` // /aws/lambda/<function>

	// NotificationID is the Id of our entry in the input bucket's
	// notification configuration; empty while the stage is suspended.
	NotificationID string `json:"notification_id,omitempty"`
}

// DeleteResult reports what DeleteStage did.
type DeleteResult struct {
	Deleted     []string     // "<kind> <name>" of each resource deleted by this call
	KeptBuckets []KeptBucket // buckets left in place, with the reason
	// NotOwned lists same-named resources without cloudpipe's tags, which
	// were left untouched ("<kind> <name>").
	NotOwned []string
}

// KeptBucket is a bucket DeleteStage did not delete.
type KeptBucket struct {
	Name   string
	Reason string // "not empty", "retain_buckets is set", "not created by cloudpipe", "of another AWS account, ..."
}

// outcome is what a delete helper found or did.
type outcome int

const (
	outcomeGone     outcome = iota + 1 // did not exist (any more)
	outcomeDeleted                     // deleted by this call
	outcomeNotOwned                    // exists without our tags: left alone
	outcomeKept                        // a bucket kept by the rules
)

// checkSpec rejects a spec EnsureStage cannot build.
func (p *Provisioner) checkSpec(spec StageSpec) error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"workflow", spec.Workflow}, {"region", spec.Region},
		{"input bucket", spec.InputBucket}, {"output bucket", spec.OutputBucket},
		{"algorithm name", spec.Algorithm.Name}, {"algorithm image", spec.Algorithm.Image},
		{"runner image (Options.RunnerImage)", p.opts.RunnerImage},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if p.opts.LambdaCode == nil {
		missing = append(missing, "lambda code (Options.LambdaCode)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("ensure stage %s: missing %v", ResourceName(spec.Workflow, spec.Stage), missing)
	}
	if spec.InputBucket == spec.OutputBucket {
		return fmt.Errorf("ensure stage %s: input and output bucket are both %s: results would trigger the stage again",
			ResourceName(spec.Workflow, spec.Stage), spec.InputBucket)
	}
	return nil
}

// EnsureStage creates the resources of one stage that are missing and
// updates in place those that differ from spec: buckets, work queue and DLQ,
// log groups, three roles with inline policies, a task-definition revision
// (only when the request differs from prev's), the Lambda function with its
// asynchronous invocation configuration (failed events to the DLQ) and its
// S3 permission, and the input bucket's notification entry. The roles are
// granted the customer managed KMS keys the buckets' default encryption and
// the secrets use, as found on this call, and spec.KMSKeyARNs. Buckets and
// queues are never recreated. It writes only when something differs, so a
// second call with its own result as prev makes no write call.
//
// prev is the last recorded StageResources (zero on first create). On error
// the returned StageResources hold what exists so far, for the inventory. A
// same-named resource without cloudpipe's tags gives an error matching
// ErrNotOwned (a *NotOwnedError naming it) and is left untouched.
func (p *Provisioner) EnsureStage(ctx context.Context, spec StageSpec, prev StageResources) (StageResources, error) {
	if err := p.checkSpec(spec); err != nil {
		return prev, err
	}
	if spec.AccountID == "" {
		account, err := p.CallerAccount(ctx, spec.Region)
		if err != nil {
			return prev, err
		}
		spec.AccountID = account
	}
	// The stage runs tasks in its region's cluster and network, prepared
	// there first if this is the region's first stage.
	net, err := p.regionNetwork(ctx, spec.Region)
	if err != nil {
		return prev, err
	}
	s := &stageBuild{
		p: p, c: p.clients(spec.Region), spec: spec, prev: prev, net: net,
		names: namesOf(spec), tags: stageTags(spec.Workflow, spec.Stage),
	}
	res := s.start()
	// Each step needs identifiers the steps before it found; within a step
	// what does not depend on each other runs in parallel.
	for _, step := range []func(context.Context, *StageResources) error{
		s.ensureIndependent, // buckets, queues, log groups
		s.findKeys,          // the KMS keys of the buckets and secrets
		s.ensureTaskRoles,   // execution and task roles
		s.ensureLambdaRoleAndTaskDefinition,
		s.ensureFunction,
		s.ensureInvokeConfig,
		s.ensureInvokePermission,
		s.retireTaskDefinitions,
		s.retireJobDefinitions,
		s.ensureNotification,
	} {
		if err := step(ctx, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// deletion collects the results of DeleteStage's steps.
type deletion struct {
	res  DeleteResult
	errs []error
}

func (d *deletion) note(r stageResource, o outcome, keptBecause string, err error) {
	switch {
	case err != nil:
		d.errs = append(d.errs, err)
	case o == outcomeDeleted:
		d.res.Deleted = append(d.res.Deleted, r.String())
	case o == outcomeNotOwned:
		d.res.NotOwned = append(d.res.NotOwned, r.String())
	case o == outcomeKept:
		d.res.KeptBuckets = append(d.res.KeptBuckets, KeptBucket{Name: r.name, Reason: keptBecause})
	}
}

// DeleteStage removes the resources of one stage, walking its table
// (stageTable) backwards: our notification entry (other entries stay), the
// function (with its permission), every recorded task-definition revision,
// the queues, the roles (inline policies first), the log groups (the
// workflow's shared group only for its owner, stage 0), then the buckets.
//
// Buckets are never emptied. A bucket is deleted only if cloudpipe created
// it (it carries our tags), it is empty, and it is an intermediate bucket
// or spec.RetainBuckets is false; otherwise it is listed in KeptBuckets.
// Resources with our names but without our tags are listed in NotOwned and
// left alone. Names come from spec, so DeleteStage also cleans up after a
// crash that left res partial; missing resources count as deleted, so it
// is safe to repeat. It goes on after a failed step and returns every
// error, joined.
func (p *Provisioner) DeleteStage(ctx context.Context, spec StageSpec, res StageResources) (DeleteResult, error) {
	var d deletion
	for _, r := range slices.Backward(p.stageTable(p.clients(spec.Region), spec, res, nil)) {
		o, keptBecause, err := r.delete(ctx)
		d.note(r, o, keptBecause, err)
	}
	d.res.KeptBuckets = sortedKept(d.res.KeptBuckets)
	return d.res, errors.Join(d.errs...)
}

// MissingResources lists the resources of a deployed stage that no longer
// exist ("<kind> <name>"), for drift checks, walking the stage's table
// (stageTable). It only reads. Task-definition revisions are not checked
// (kumo cannot describe them); the function's asynchronous invocation
// configuration is listed when it does not send failures to the recorded
// DLQ (a repair puts it back); a recorded notification entry is checked
// unless the stage is suspended; the workflow's shared log group is checked
// by its owner, stage 0, only.
func (p *Provisioner) MissingResources(ctx context.Context, spec StageSpec, res StageResources) ([]string, error) {
	var missing []string
	for _, r := range inReportOrder(p.stageTable(p.clients(spec.Region), spec, res, nil)) {
		if r.exists == nil {
			continue
		}
		ok, err := r.exists(ctx)
		if err != nil {
			return missing, err
		}
		if !ok {
			missing = append(missing, r.String())
		}
	}
	return missing, nil
}

// setIfKnown sets *field to v unless v is empty, so a failed step keeps
// the identifier recorded before (the inventory should not forget it).
func setIfKnown(field *string, v string) {
	if v != "" {
		*field = v
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// compactNonEmpty returns the distinct non-empty values of s, in order.
func compactNonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
