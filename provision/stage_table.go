package provision

import (
	"context"
	"errors"
	"slices"
)

// Kinds of a stage's resources, as DeleteResult and drift reports name them
// ("<kind> <name>").
const (
	kindBucket         = "s3 bucket"
	kindLogGroup       = "log group"
	kindRole           = "iam role"
	kindQueue          = "sqs queue"
	kindTaskDefinition = "ecs task definition"
	kindFunction       = "lambda function"
	kindInvokeConfig   = "lambda event invoke config"
	kindNotification   = "s3 notification"
)

// workflowLogGroupOwner is the stage that owns the workflow's shared log
// group /cloudpipe/<workflow>: only its table lists the group, so only it
// deletes the group and reports it missing. Stage 0, because every workflow
// has one, a shorter sequence drops later stages, and a workflow's stages
// are deleted last to first (package sync), so the group outlives every
// stage that logs to it. Every stage still ensures the group, tagged as the
// owner's: its containers log there, and ECS cannot start a task whose
// awslogs group is missing.
const workflowLogGroupOwner = 0

// stageNames are the names of one stage's resources. The stage table and
// EnsureStage's steps both take their names from here.
type stageNames struct {
	function, queue, family          string // all ResourceName(workflow, stage)
	dlq                              string
	taskRole, execRole, lambdaRole   string
	workflowLogGroup, lambdaLogGroup string
	notification                     string // Id of our entry in the input bucket's notification configuration
}

func namesOf(spec StageSpec) stageNames {
	wf, stage := spec.Workflow, spec.Stage
	name := ResourceName(wf, stage)
	return stageNames{
		function: name, queue: name, family: name,
		dlq:      dlqName(wf, stage),
		taskRole: roleName(wf, stage, roleTask), execRole: roleName(wf, stage, roleExec), lambdaRole: roleName(wf, stage, roleLambda),
		workflowLogGroup: workflowLogGroup(wf), lambdaLogGroup: lambdaLogGroup(wf, stage),
		notification: notificationID(wf, stage),
	}
}

// stageResource is one resource a stage owns, as the stage table lists it.
type stageResource struct {
	kind, name string
	// exists reports whether the resource is there; nil when drift checks
	// skip it.
	exists func(context.Context) (bool, error)
	// delete removes the resource unless it is not ours or the rules keep
	// it; for a kept bucket it returns outcomeKept and the reason.
	delete func(context.Context) (o outcome, keptBecause string, err error)
	// differs lists the settings of the resource that differ from what
	// EnsureStage sets (changed outside cloudpipe), reading only; nil when
	// drift checks compare no setting of it, and in tables built without
	// the stage's wanted state (DeleteStage, MissingResources).
	differs func(context.Context) ([]Drift, error)
}

// String is the resource as reports name it: "<kind> <name>".
func (r stageResource) String() string { return r.kind + " " + r.name }

// stageTable lists the resources the stage owns in dependency order, so
// that DeleteStage, walking it backwards, removes what refers to a resource
// before the resource: the notification before the function, the function
// before the revisions it starts and the roles it runs as, the work queue
// before its DLQ. The function's asynchronous invocation configuration
// follows the function: it goes with it. (The task roles' policies name the queues by ARN only,
// which IAM does not check, so the queues may go first.) Where nothing
// orders two entries they are listed so that DeleteStage keeps the order it
// always deleted in. Names come from res where recorded and from spec
// otherwise, so a stage whose record was lost or left partial by a crash is
// still found whole.
//
// want, when not nil, is the stage as EnsureStage would build it now (its
// network and keys found): the rows it has settings for then compare them
// (the differs column).
func (p *Provisioner) stageTable(c *clients, spec StageSpec, res StageResources, want *stageBuild) []stageResource {
	wf, n := spec.Workflow, namesOf(spec)
	in, out := firstNonEmpty(res.InputBucket, spec.InputBucket), firstNonEmpty(res.OutputBucket, spec.OutputBucket)
	var t []stageResource
	if out != "" {
		t = append(t, bucketResource(c, wf, out, spec.OutputOwned, spec.RetainBuckets))
	}
	if in != "" && in != out {
		t = append(t, bucketResource(c, wf, in, spec.InputOwned, spec.RetainBuckets))
	}
	t = append(t, logGroupResource(c, wf, n.lambdaLogGroup))
	if spec.Stage == workflowLogGroupOwner {
		t = append(t, logGroupResource(c, wf, n.workflowLogGroup))
	}
	for _, role := range []string{n.taskRole, n.execRole, n.lambdaRole} {
		r := roleResource(c, wf, role)
		if want != nil {
			trust, policy := want.rolePolicies(role, res)
			r.differs = func(ctx context.Context) ([]Drift, error) { return roleDrift(ctx, c, role, trust, policy) }
		}
		t = append(t, r)
	}
	for _, q := range []string{n.dlq, n.queue} {
		r := queueResource(c, wf, q)
		if want != nil {
			attrs := dlqAttributes()
			if q == n.queue {
				attrs = workQueueAttributes(spec, res.DLQARN)
			}
			r.differs = func(ctx context.Context) ([]Drift, error) { return queueDrift(ctx, c, q, attrs) }
		}
		t = append(t, r)
	}
	revisions := compactNonEmpty(append(slices.Clone(res.TaskDefinitionARNs), res.TaskDefinitionARN)...)
	for _, arn := range slices.Backward(revisions) {
		t = append(t, taskDefinitionResource(c, arn))
	}
	jobRevisions := compactNonEmpty(append(slices.Clone(res.JobDefinitionARNs), res.JobDefinitionARN)...)
	for _, arn := range slices.Backward(jobRevisions) {
		t = append(t, jobDefinitionResource(c, arn))
	}
	fn := functionResource(c, wf, n.function)
	if want != nil {
		cfg := functionConfig{Role: res.LambdaRoleARN, Environment: p.functionEnvironment(spec, res, want.net)}
		fn.differs = func(ctx context.Context) ([]Drift, error) { return functionDrift(ctx, c, n.function, cfg) }
	}
	t = append(t, fn)
	t = append(t, invokeConfigResource(c, n.function, res.DLQARN))
	// Our entry is removed from the recorded input bucket and from spec's,
	// should they differ; drift checks the recorded one only, and only while
	// the stage is not suspended (a suspended stage has no entry).
	for _, b := range slices.Backward(compactNonEmpty(res.InputBucket, spec.InputBucket)) {
		checked := b == in && !spec.Suspend
		r := p.notificationResource(c, b, n.notification, checked)
		if want != nil && checked && res.FunctionARN != "" {
			r.differs = func(ctx context.Context) ([]Drift, error) {
				return notificationDrift(ctx, c, b, n.notification, res.FunctionARN)
			}
		}
		t = append(t, r)
	}
	return t
}

// reportKinds is the order in which MissingResources lists kinds. It is not
// the table's: drift reasons kept the order they had before the table.
var reportKinds = []string{kindBucket, kindQueue, kindRole, kindTaskDefinition, kindJobDefinition, kindFunction, kindInvokeConfig, kindLogGroup, kindNotification}

// inReportOrder returns t kind by kind in reportKinds' order, each kind's
// resources in the order DeleteStage deletes them.
func inReportOrder(t []stageResource) []stageResource {
	out := slices.Clone(t)
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b stageResource) int {
		return slices.Index(reportKinds, a.kind) - slices.Index(reportKinds, b.kind)
	})
	return out
}

func bucketResource(c *clients, workflow, name string, intermediate, retain bool) stageResource {
	return stageResource{
		kind: kindBucket, name: name,
		exists: func(ctx context.Context) (bool, error) { return bucketExists(ctx, c, name) },
		delete: func(ctx context.Context) (outcome, string, error) {
			return deleteBucket(ctx, c, name, workflow, intermediate, retain)
		},
	}
}

func logGroupResource(c *clients, workflow, name string) stageResource {
	return stageResource{
		kind: kindLogGroup, name: name,
		exists: func(ctx context.Context) (bool, error) { return found(findLogGroup(ctx, c, name)) },
		delete: func(ctx context.Context) (outcome, string, error) {
			return notKept(deleteLogGroup(ctx, c, name, workflow))
		},
	}
}

func roleResource(c *clients, workflow, name string) stageResource {
	return stageResource{
		kind: kindRole, name: name,
		exists: func(ctx context.Context) (bool, error) { return found(findRole(ctx, c, name)) },
		delete: func(ctx context.Context) (outcome, string, error) {
			return notKept(deleteRole(ctx, c, name, workflow))
		},
	}
}

func queueResource(c *clients, workflow, name string) stageResource {
	return stageResource{
		kind: kindQueue, name: name,
		exists: func(ctx context.Context) (bool, error) { return found(findQueueURL(ctx, c, name)) },
		delete: func(ctx context.Context) (outcome, string, error) {
			return notKept(deleteQueue(ctx, c, name, workflow))
		},
	}
}

// taskDefinitionResource is one recorded revision. Drift checks skip it:
// kumo cannot describe task definitions.
func taskDefinitionResource(c *clients, arn string) stageResource {
	return stageResource{
		kind: kindTaskDefinition, name: arn,
		delete: func(ctx context.Context) (outcome, string, error) {
			return notKept(deregisterTaskDefinition(ctx, c, arn))
		},
	}
}

// functionResource is the stage function; its S3 permission lives in its
// resource policy, so it needs no entry of its own.
func functionResource(c *clients, workflow, name string) stageResource {
	return stageResource{
		kind: kindFunction, name: name,
		exists: func(ctx context.Context) (bool, error) { return functionExists(ctx, c, name) },
		delete: func(ctx context.Context) (outcome, string, error) {
			return notKept(deleteFunction(ctx, c, name, workflow))
		},
	}
}

// notificationResource is our entry id in bucket's notification
// configuration (other entries are never touched); checked says drift
// checks look for it.
func (p *Provisioner) notificationResource(c *clients, bucket, id string, checked bool) stageResource {
	r := stageResource{
		kind: kindNotification, name: id + " on " + bucket,
		delete: func(ctx context.Context) (outcome, string, error) {
			wrote, err := p.ensureNotification(ctx, c, bucket, id, "", false)
			if wrote {
				return outcomeDeleted, "", err
			}
			return outcomeGone, "", err
		},
	}
	if checked {
		r.exists = func(ctx context.Context) (bool, error) { return findNotification(ctx, c, bucket, id) }
	}
	return r
}

// found turns a find helper's answer into exists' one: ErrNotFound is no
// error but a missing resource.
func found[T any](_ T, err error) (bool, error) {
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// notKept adapts a delete helper that never keeps what it finds.
func notKept(o outcome, err error) (outcome, string, error) { return o, "", err }
