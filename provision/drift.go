package provision

import (
	"context"
	"fmt"
)

// Drift is one setting of a deployed stage's resource that differs from what
// cloudpipe set: it was changed outside cloudpipe, and the next EnsureStage
// puts it back.
type Drift struct {
	Kind, Name string // the resource, as reports name it ("sqs queue", "cp-x-0")
	Setting    string // "VisibilityTimeout", "Timeout", "inline policy cloudpipe"
	// Want is cloudpipe's value and Have the one found; both empty where
	// the values are not shown (policy documents, environment values).
	Want, Have string
}

// String is the drift as a plan line shows it, cloudpipe's value first:
// "sqs queue cp-x-0 VisibilityTimeout 300 → 30".
func (d Drift) String() string {
	s := d.Kind + " " + d.Name + " " + d.Setting
	if d.Want != "" || d.Have != "" {
		s += " " + orNone(d.Want) + " → " + orNone(d.Have)
	}
	return s
}

func orNone(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// Repair says in a few words what a repair of the drift does, for statuses:
// "sqs queue cp-x-0 attributes reset".
func (d Drift) Repair() string {
	what := "settings restored"
	switch d.Kind {
	case kindQueue:
		what = "attributes reset"
	case kindFunction:
		what = "configuration restored"
	case kindRole:
		what = "policies restored"
	case kindNotification:
		what = "rule restored"
	case kindComputeEnvironment:
		what = "enabled"
	case kindJobQueue:
		what = "enabled, on its compute environment alone"
	case kindJobDefinition:
		what = "new revision registered"
	}
	return d.Kind + " " + d.Name + " " + what
}

// ResourceKind is the kind of a resource as reports name it ("sqs queue"
// of "sqs queue cp-x-0"), or "" when s names none of a stage's kinds.
func ResourceKind(s string) string {
	for _, k := range reportKinds {
		if len(s) > len(k) && s[:len(k)+1] == k+" " {
			return k
		}
	}
	return ""
}

// ChangedSettings lists the settings of a deployed stage's resources that
// differ from what EnsureStage would set now, for drift checks: the queues'
// attributes, the function's configuration, the roles' trust and inline
// policies and our entry in the input bucket's notification configuration
// (the function's asynchronous invocation configuration is compared by
// MissingResources), and for a stage on AWS Batch its capacity's compute
// environment and job queue and its job definition (batchDrift). Each comparison is the one EnsureStage makes before it
// writes, so what is listed is what a repair rewrites. It only reads; a
// missing resource is not listed (MissingResources does), so call it when
// nothing is missing. The buckets must exist (their keys are read to build
// the wanted policies).
func (p *Provisioner) ChangedSettings(ctx context.Context, spec StageSpec, res StageResources) ([]Drift, error) {
	if spec.AccountID == "" {
		account, err := p.CallerAccount(ctx, spec.Region)
		if err != nil {
			return nil, err
		}
		spec.AccountID = account
	}
	net, err := p.regionNetwork(ctx, spec.Region)
	if err != nil {
		return nil, fmt.Errorf("drift check of %s: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	s := &stageBuild{
		p: p, c: p.clients(spec.Region), spec: spec, prev: res, net: net,
		names: namesOf(spec), tags: stageTags(spec.Workflow, spec.Stage),
	}
	if err := s.findKeys(ctx, &res); err != nil {
		return nil, fmt.Errorf("drift check of %s: %w", ResourceName(spec.Workflow, spec.Stage), err)
	}
	var out []Drift
	for _, r := range inReportOrder(p.stageTable(s.c, spec, res, s)) {
		if r.differs == nil {
			continue
		}
		d, err := r.differs(ctx)
		if err != nil {
			return out, err
		}
		out = append(out, d...)
	}
	// The shared capacity and the job definition of a stage on Batch are
	// not rows of the stage's table: the capacity is not the stage's own,
	// and the table's revisions are the ones to delete.
	d, err := s.batchDrift(ctx, res)
	return append(out, d...), err
}

// rolePolicies are the trust and inline policies ensureRole is given for
// the stage's role name (one of its three), as of res.
func (s *stageBuild) rolePolicies(name string, res StageResources) (trust, policy policyDocument) {
	arns := s.arns(res)
	switch name {
	case s.names.execRole:
		return trustPolicy("ecs-tasks.amazonaws.com"), execPolicy(arns)
	case s.names.taskRole:
		return taskRoleTrustPolicy(s.spec.Region, s.spec.AccountID), taskPolicy(arns)
	default:
		return trustPolicy("lambda.amazonaws.com"), lambdaPolicy(arns)
	}
}
