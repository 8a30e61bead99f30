package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"golang.org/x/sync/errgroup"
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
	Reason string // "not empty", "retain_buckets is set", "not created by cloudpipe"
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
// (only when the request differs from prev's), the Lambda function and its
// S3 permission, and the input bucket's notification entry. Buckets and
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
	c := p.clients(spec.Region)
	wf, stage := spec.Workflow, spec.Stage
	name := ResourceName(wf, stage)
	tags := stageTags(wf, stage)

	// res starts as prev, so identifiers recorded before survive a failure.
	res := prev
	res.TaskDefinitionARNs = slices.Clone(prev.TaskDefinitionARNs)
	res.InputBucket, res.OutputBucket = spec.InputBucket, spec.OutputBucket
	res.LogGroup, res.LambdaLogGroup = workflowLogGroup(wf), lambdaLogGroup(wf, stage)

	// Buckets, queues and log groups depend on nothing: in parallel. Each
	// goroutine sets its own fields of res.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		created, err := ensureBucket(gctx, c, spec.InputBucket, tags, spec.InputOwned)
		if err == nil {
			res.InputBucketCreated = created
		}
		return err
	})
	g.Go(func() error {
		created, err := ensureBucket(gctx, c, spec.OutputBucket, tags, spec.OutputOwned)
		if err == nil {
			res.OutputBucketCreated = created
		}
		return err
	})
	g.Go(func() error {
		dlq, err := ensureQueue(gctx, c, dlqName(wf, stage), dlqAttributes(), tags)
		setIfKnown(&res.DLQURL, dlq.URL)
		setIfKnown(&res.DLQARN, dlq.ARN)
		if err != nil {
			return err
		}
		work, err := ensureQueue(gctx, c, name, workQueueAttributes(spec, dlq.ARN), tags)
		setIfKnown(&res.QueueURL, work.URL)
		setIfKnown(&res.QueueARN, work.ARN)
		return err
	})
	g.Go(func() error {
		// The workflow's group is shared by its stages and belongs to
		// workflowLogGroupOwner; whichever stage comes first creates it.
		if err := ensureLogGroup(gctx, c, res.LogGroup, p.opts.LogRetentionDays, stageTags(wf, workflowLogGroupOwner)); err != nil {
			return err
		}
		return ensureLogGroup(gctx, c, res.LambdaLogGroup, p.opts.LogRetentionDays, tags)
	})
	if err := g.Wait(); err != nil {
		return res, err
	}

	arns := stageARNs{
		Region: spec.Region, Account: spec.AccountID, Cluster: p.opts.Cluster, Family: name,
		QueueARN: res.QueueARN, DLQARN: res.DLQARN,
		InputBucket: spec.InputBucket, OutputBucket: spec.OutputBucket, StateBucket: p.opts.StateBucket,
		Workflow: wf, Stage: stage, SecretARNs: secretARNs(spec),
		Images: []string{spec.Algorithm.Image, p.opts.RunnerImage},
	}
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error {
		arn, err := ensureRole(gctx, c, roleName(wf, stage, roleExec), trustPolicy("ecs-tasks.amazonaws.com"), execPolicy(arns), tags)
		setIfKnown(&res.ExecutionRoleARN, arn)
		return err
	})
	g.Go(func() error {
		arn, err := ensureRole(gctx, c, roleName(wf, stage, roleTask), trustPolicy("ecs-tasks.amazonaws.com"), taskPolicy(arns), tags)
		setIfKnown(&res.TaskRoleARN, arn)
		return err
	})
	if err := g.Wait(); err != nil {
		return res, err
	}
	arns.ExecRoleARN, arns.TaskRoleARN = res.ExecutionRoleARN, res.TaskRoleARN

	td, err := p.taskDefinitionInput(spec, res)
	if err != nil {
		return res, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() error {
		arn, err := ensureRole(gctx, c, roleName(wf, stage, roleLambda), trustPolicy("lambda.amazonaws.com"), lambdaPolicy(arns), tags)
		setIfKnown(&res.LambdaRoleARN, arn)
		return err
	})
	var tdARN, tdHash string
	g.Go(func() error {
		var err error
		tdARN, tdHash, err = ensureTaskDefinition(gctx, c, td, prev)
		return err
	})
	err = g.Wait()
	if tdARN != "" {
		res.TaskDefinitionARN, res.TaskDefinitionHash = tdARN, tdHash
		if !slices.Contains(res.TaskDefinitionARNs, tdARN) {
			res.TaskDefinitionARNs = append(res.TaskDefinitionARNs, tdARN)
		}
	}
	if err != nil {
		return res, err
	}

	fn, err := p.ensureFunction(ctx, c, name, functionConfig{Role: res.LambdaRoleARN, Environment: p.functionEnvironment(spec, res)}, tags)
	setIfKnown(&res.FunctionARN, fn)
	if err != nil {
		return res, err
	}
	if res.FunctionCodeSHA256, err = p.opts.LambdaCode.SHA256(); err != nil {
		return res, err
	}
	if err := ensurePermission(ctx, c, name, bucketARN(spec.Region, spec.InputBucket), spec.AccountID); err != nil {
		return res, err
	}

	// The function now starts the current revision: retire the others.
	for _, arn := range slices.Clone(res.TaskDefinitionARNs) {
		if arn == res.TaskDefinitionARN {
			continue
		}
		if _, err := deregisterTaskDefinition(ctx, c, arn); err != nil {
			return res, err
		}
		res.TaskDefinitionARNs = slices.DeleteFunc(res.TaskDefinitionARNs, func(a string) bool { return a == arn })
	}

	id := notificationID(wf, stage)
	if prev.InputBucket != "" && prev.InputBucket != spec.InputBucket {
		// The stage moved to another input bucket: stop listening on the old.
		if _, err := p.ensureNotification(ctx, c, prev.InputBucket, id, "", false); err != nil {
			return res, err
		}
	}
	if _, err := p.ensureNotification(ctx, c, spec.InputBucket, id, res.FunctionARN, !spec.Suspend); err != nil {
		return res, err
	}
	res.NotificationID = id
	if spec.Suspend {
		res.NotificationID = ""
	}
	return res, nil
}

// ensureTaskDefinition returns the revision of the stage's family to run:
// prev's when the request in is the one that made it (same hash), else a
// newly registered one.
func ensureTaskDefinition(ctx context.Context, c *clients, in *ecs.RegisterTaskDefinitionInput, prev StageResources) (arn, hash string, err error) {
	hash, err = taskDefinitionHash(in)
	if err != nil {
		return "", "", err
	}
	if hash == prev.TaskDefinitionHash && prev.TaskDefinitionARN != "" {
		return prev.TaskDefinitionARN, hash, nil
	}
	arn, err = registerTaskDefinition(ctx, c, in)
	if err != nil {
		return "", "", err
	}
	return arn, hash, nil
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
	for _, r := range slices.Backward(p.stageTable(p.clients(spec.Region), spec, res)) {
		o, keptBecause, err := r.delete(ctx)
		d.note(r, o, keptBecause, err)
	}
	d.res.KeptBuckets = sortedKept(d.res.KeptBuckets)
	return d.res, errors.Join(d.errs...)
}

// MissingResources lists the resources of a deployed stage that no longer
// exist ("<kind> <name>"), for drift checks, walking the stage's table
// (stageTable). It only reads. Task-definition revisions are not checked
// (kumo cannot describe them); a recorded notification entry is checked
// unless the stage is suspended; the workflow's shared log group is checked
// by its owner, stage 0, only.
func (p *Provisioner) MissingResources(ctx context.Context, spec StageSpec, res StageResources) ([]string, error) {
	var missing []string
	for _, r := range inReportOrder(p.stageTable(p.clients(spec.Region), spec, res)) {
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
