package provision

import (
	"context"
	"slices"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"golang.org/x/sync/errgroup"
)

// stageBuild is one EnsureStage call: the stage, the names of its
// resources, its tags and the clients of its region. Its steps record what
// they found in the StageResources they are given only after their
// goroutines are done; the sub-steps those goroutines run return what they
// found.
type stageBuild struct {
	p     *Provisioner
	c     *clients
	spec  StageSpec
	prev  StageResources
	names stageNames
	tags  map[string]string
	net   Network   // where the stage's tasks run, in its region
	keys  stageKeys // set by findKeys, before the roles are written
}

// start returns prev with spec's names filled in, so identifiers recorded
// before survive a failure.
func (s *stageBuild) start() StageResources {
	res := s.prev
	res.TaskDefinitionARNs = slices.Clone(s.prev.TaskDefinitionARNs)
	res.JobDefinitionARNs = slices.Clone(s.prev.JobDefinitionARNs)
	res.InputBucket, res.OutputBucket = s.spec.InputBucket, s.spec.OutputBucket
	res.LogGroup, res.LambdaLogGroup = s.names.workflowLogGroup, s.names.lambdaLogGroup
	return res
}

// arns are the identifiers the stage's policies are scoped to, as far as
// res knows them.
func (s *stageBuild) arns(res StageResources) stageARNs {
	a := stageARNs{
		Region: s.spec.Region, Account: s.spec.AccountID, Cluster: s.p.opts.Cluster, Family: s.names.family,
		QueueARN: res.QueueARN, DLQARN: res.DLQARN, ExecRoleARN: res.ExecutionRoleARN, TaskRoleARN: res.TaskRoleARN,
		InputBucket: s.spec.InputBucket, OutputBucket: s.spec.OutputBucket, StateBucket: s.p.opts.StateBucket,
		Workflow: s.spec.Workflow, Stage: s.spec.Stage, SecretARNs: secretARNs(s.spec),
		Images:   []string{s.spec.Algorithm.Image, s.p.opts.RunnerImage},
		InputKey: s.keys.Input, OutputKey: s.keys.Output, SecretKeys: s.keys.Secrets, WorkflowKeys: s.spec.KMSKeyARNs,
		OnBatch: s.spec.Batch != nil,
	}
	if s.spec.Batch != nil {
		a.JobQueueARN = jobQueueARN(s.spec.Region, s.spec.AccountID, s.spec.Batch.Key(s.spec.Region).Name())
	}
	return a
}

// ensureIndependent ensures, in parallel, what depends on nothing else: the
// buckets, the queues and the log groups.
func (s *stageBuild) ensureIndependent(ctx context.Context, res *StageResources) error {
	var in, out createdFlag
	var work, dlq queueIDs
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { in, out, err = s.ensureBuckets(gctx); return err })
	g.Go(func() (err error) { work, dlq, err = s.ensureQueues(gctx); return err })
	g.Go(func() error { return s.ensureLogGroups(gctx) })
	err := g.Wait()
	in.record(&res.InputBucketCreated)
	out.record(&res.OutputBucketCreated)
	setIfKnown(&res.QueueURL, work.URL)
	setIfKnown(&res.QueueARN, work.ARN)
	setIfKnown(&res.DLQURL, dlq.URL)
	setIfKnown(&res.DLQARN, dlq.ARN)
	return err
}

// createdFlag says whether cloudpipe created a bucket; known is false when
// ensuring the bucket failed, so the flag on record stays.
type createdFlag struct{ created, known bool }

func (f createdFlag) record(field *bool) {
	if f.known {
		*field = f.created
	}
}

// ensureBuckets ensures the input and output buckets, in parallel.
func (s *stageBuild) ensureBuckets(ctx context.Context) (in, out createdFlag, err error) {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		in, err = s.ensureBucket(gctx, s.spec.InputBucket, s.spec.InputOwned)
		return err
	})
	g.Go(func() (err error) {
		out, err = s.ensureBucket(gctx, s.spec.OutputBucket, s.spec.OutputOwned)
		return err
	})
	err = g.Wait()
	return in, out, err
}

func (s *stageBuild) ensureBucket(ctx context.Context, name string, mustOwn bool) (createdFlag, error) {
	created, err := ensureBucket(ctx, s.c, name, s.tags, mustOwn)
	return createdFlag{created: created, known: err == nil}, err
}

// ensureQueues ensures the DLQ, then the work queue that redrives to it. On
// error the IDs hold what exists.
func (s *stageBuild) ensureQueues(ctx context.Context) (work, dlq queueIDs, err error) {
	dlq, err = ensureQueue(ctx, s.c, s.names.dlq, dlqAttributes(), s.tags)
	if err != nil {
		return queueIDs{}, dlq, err
	}
	work, err = ensureQueue(ctx, s.c, s.names.queue, workQueueAttributes(s.spec, dlq.ARN), s.tags)
	return work, dlq, err
}

// ensureLogGroups ensures the workflow's shared group, tagged as its
// owner's (see workflowLogGroupOwner), then the function's.
func (s *stageBuild) ensureLogGroups(ctx context.Context) error {
	days := s.p.opts.LogRetentionDays
	owner := stageTags(s.spec.Workflow, workflowLogGroupOwner)
	if err := ensureLogGroup(ctx, s.c, s.names.workflowLogGroup, days, owner); err != nil {
		return err
	}
	return ensureLogGroup(ctx, s.c, s.names.lambdaLogGroup, days, s.tags)
}

// ensureTaskRoles ensures the execution and task roles, in parallel; their
// policies name the queues.
func (s *stageBuild) ensureTaskRoles(ctx context.Context, res *StageResources) error {
	arns := s.arns(*res)
	var exec, task string
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		exec, err = ensureRole(gctx, s.c, s.names.execRole, trustPolicy("ecs-tasks.amazonaws.com"), execPolicy(arns), s.tags)
		return err
	})
	g.Go(func() (err error) {
		task, err = ensureRole(gctx, s.c, s.names.taskRole, taskRoleTrustPolicy(s.spec.Region, s.spec.AccountID), taskPolicy(arns), s.tags)
		return err
	})
	err := g.Wait()
	setIfKnown(&res.ExecutionRoleARN, exec)
	setIfKnown(&res.TaskRoleARN, task)
	return err
}

// ensureLambdaRoleAndTaskDefinition ensures, in parallel, the two things
// that name the task roles: the function's role, which may pass them, and
// the task definition, which runs as them.
func (s *stageBuild) ensureLambdaRoleAndTaskDefinition(ctx context.Context, res *StageResources) error {
	if s.spec.Batch != nil {
		return s.ensureLambdaRoleAndJobDefinition(ctx, res)
	}
	// A stage back from AWS Batch submits no more jobs: its job-definition
	// revisions are retired once the function starts tasks again.
	res.JobDefinitionARN, res.JobDefinitionHash, res.JobQueueARN = "", "", ""
	td, err := s.p.taskDefinitionInput(s.spec, *res)
	if err != nil {
		return err
	}
	arns := s.arns(*res)
	var role string
	var rev revision
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		role, err = ensureRole(gctx, s.c, s.names.lambdaRole, trustPolicy("lambda.amazonaws.com"), lambdaPolicy(arns), s.tags)
		return err
	})
	g.Go(func() (err error) { rev, err = s.ensureTaskDefinition(gctx, td); return err })
	err = g.Wait()
	setIfKnown(&res.LambdaRoleARN, role)
	rev.record(res)
	return err
}

// ensureLambdaRoleAndJobDefinition is ensureLambdaRoleAndTaskDefinition
// for a stage on AWS Batch, in parallel: the function's role, which may
// submit to the queue with the definition, the job definition, which runs
// as the task roles, and the capacity's compute environment and job queue
// (shared; made on first use).
func (s *stageBuild) ensureLambdaRoleAndJobDefinition(ctx context.Context, res *StageResources) error {
	jd := s.p.jobDefinitionInput(s.spec, *res)
	arns := s.arns(*res)
	var role, queue string
	var rev revision
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		role, err = ensureRole(gctx, s.c, s.names.lambdaRole, trustPolicy("lambda.amazonaws.com"), lambdaPolicy(arns), s.tags)
		return err
	})
	g.Go(func() (err error) { rev, err = s.ensureJobDefinition(gctx, jd); return err })
	g.Go(func() (err error) { queue, err = s.p.ensureBatchCapacity(gctx, s.c, s.spec, s.net); return err })
	err := g.Wait()
	setIfKnown(&res.LambdaRoleARN, role)
	setIfKnown(&res.JobQueueARN, queue)
	rev.recordJob(res)
	// A stage moved from Fargate starts no more tasks: its task-definition
	// revisions are retired once the function submits jobs.
	res.TaskDefinitionARN, res.TaskDefinitionHash = "", ""
	return err
}

// revision is a task-definition revision of the stage's family and the hash
// of the request that made it.
type revision struct{ arn, hash string }

// record makes rev the revision the function starts, and remembers it until
// it is deregistered.
func (rev revision) record(res *StageResources) {
	if rev.arn == "" {
		return
	}
	res.TaskDefinitionARN, res.TaskDefinitionHash = rev.arn, rev.hash
	if !slices.Contains(res.TaskDefinitionARNs, rev.arn) {
		res.TaskDefinitionARNs = append(res.TaskDefinitionARNs, rev.arn)
	}
}

// ensureTaskDefinition returns the revision to run: prev's when the request
// in is the one that made it (same hash), else a newly registered one.
func (s *stageBuild) ensureTaskDefinition(ctx context.Context, in *ecs.RegisterTaskDefinitionInput) (revision, error) {
	hash, err := taskDefinitionHash(in)
	if err != nil {
		return revision{}, err
	}
	if hash == s.prev.TaskDefinitionHash && s.prev.TaskDefinitionARN != "" {
		return revision{arn: s.prev.TaskDefinitionARN, hash: hash}, nil
	}
	arn, err := registerTaskDefinition(ctx, s.c, in)
	if err != nil {
		return revision{}, err
	}
	return revision{arn: arn, hash: hash}, nil
}

// ensureFunction ensures the stage function, whose environment names the
// queues and the task definition, and records the code it runs.
func (s *stageBuild) ensureFunction(ctx context.Context, res *StageResources) error {
	want := functionConfig{Role: res.LambdaRoleARN, Environment: s.p.functionEnvironment(s.spec, *res, s.net)}
	arn, sum, err := s.p.ensureFunction(ctx, s.c, s.names.function, want, s.tags, s.prev.FunctionCodeSHA256)
	setIfKnown(&res.FunctionARN, arn)
	if err == nil {
		// Kept in the inventory: emulators do not compute CodeSha256 for
		// code from S3, and the next pass compares with it (codeDiffers).
		res.FunctionCodeSHA256 = sum
	}
	return err
}

// ensureInvokeConfig sends the record of an upload's event the function
// failed on every attempt to the stage's dead-letter queue (see
// asyncRetryAttempts). It follows the Lambda role's policy, which lets the
// role send there, as Lambda checks.
func (s *stageBuild) ensureInvokeConfig(ctx context.Context, res *StageResources) error {
	return s.p.ensureInvokeConfig(ctx, s.c, s.names.function, res.DLQARN)
}

// ensureInvokePermission lets S3 invoke the function for uploads to the
// input bucket.
func (s *stageBuild) ensureInvokePermission(ctx context.Context, _ *StageResources) error {
	return ensurePermission(ctx, s.c, s.names.function, bucketARN(s.spec.Region, s.spec.InputBucket), s.spec.AccountID)
}

// retireTaskDefinitions deregisters every recorded revision but the one the
// function now starts.
func (s *stageBuild) retireTaskDefinitions(ctx context.Context, res *StageResources) error {
	for _, arn := range slices.Clone(res.TaskDefinitionARNs) {
		if arn == res.TaskDefinitionARN {
			continue
		}
		if _, err := deregisterTaskDefinition(ctx, s.c, arn); err != nil {
			return err
		}
		res.TaskDefinitionARNs = slices.DeleteFunc(res.TaskDefinitionARNs, func(a string) bool { return a == arn })
	}
	return nil
}

// retireJobDefinitions deregisters every recorded job-definition revision
// but the one the function now submits (none for a stage on Fargate).
func (s *stageBuild) retireJobDefinitions(ctx context.Context, res *StageResources) error {
	for _, arn := range slices.Clone(res.JobDefinitionARNs) {
		if arn == res.JobDefinitionARN {
			continue
		}
		if _, err := deregisterJobDefinition(ctx, s.c, arn); err != nil {
			return err
		}
		res.JobDefinitionARNs = slices.DeleteFunc(res.JobDefinitionARNs, func(a string) bool { return a == arn })
	}
	return nil
}

// ensureNotification points the input bucket's entry at the function, or
// removes it while the stage is suspended; it goes last, so uploads start
// the stage only once everything else is in place.
func (s *stageBuild) ensureNotification(ctx context.Context, res *StageResources) error {
	id := s.names.notification
	if old := s.prev.InputBucket; old != "" && old != s.spec.InputBucket {
		// The stage moved to another input bucket: stop listening on the old.
		if _, err := s.p.ensureNotification(ctx, s.c, old, id, "", false); err != nil {
			return err
		}
	}
	if _, err := s.p.ensureNotification(ctx, s.c, s.spec.InputBucket, id, res.FunctionARN, !s.spec.Suspend); err != nil {
		return err
	}
	res.NotificationID = id
	if s.spec.Suspend {
		res.NotificationID = ""
	}
	return nil
}
