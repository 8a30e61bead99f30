package sync

import (
	"context"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// The reconciler depends on what it needs of its parts, not on the parts:
// provision.Provisioner and inventory.Store in production, and in the unit
// tests of the state machine (intent, leases, resume, re-plan) an
// inventory.Memory and a provisioner that records its calls. The
// implementations assert that they satisfy these in their own tests (their
// packages cannot import sync: sync imports them).

// Provisioner builds and removes the AWS resources of pipeline stages.
type Provisioner interface {
	// CallerAccount is the account of the agent's credentials.
	CallerAccount(ctx context.Context, region string) (string, error)
	// EnsureStage brings one stage to spec, starting from what prev records,
	// and returns what exists (also on error, for the inventory).
	EnsureStage(ctx context.Context, spec provision.StageSpec, prev provision.StageResources) (provision.StageResources, error)
	// DeleteStage tears one stage down, keeping buckets that hold data.
	DeleteStage(ctx context.Context, spec provision.StageSpec, res provision.StageResources) (provision.DeleteResult, error)
	// MissingResources lists the stage's resources that no longer exist.
	MissingResources(ctx context.Context, spec provision.StageSpec, res provision.StageResources) ([]string, error)
	// ChangedSettings lists the settings of the stage's resources changed
	// outside cloudpipe; asked only of a stage with nothing missing.
	ChangedSettings(ctx context.Context, spec provision.StageSpec, res provision.StageResources) ([]provision.Drift, error)
}

// Inventory is the agent's record of what it owns, with conditional writes:
// a write over a version that is no longer current fails with
// inventory.ErrConflict, and a missing record is inventory.ErrNotFound.
type Inventory interface {
	// Bucket is the state bucket, where runners also record their runs.
	Bucket() string
	ReadIndex(ctx context.Context) (*inventory.Index, error)
	WriteIndex(ctx context.Context, idx *inventory.Index) error
	ReadRecord(ctx context.Context, workflow string) (*inventory.Record, error)
	WriteRecord(ctx context.Context, rec *inventory.Record) error
	DeleteRecord(ctx context.Context, workflow string) error
}

// RunRecords reads what the runners of deployed stages recorded.
type RunRecords interface {
	// ListRunKeys returns the keys of one stage's run records written after
	// startAfter ("" for all), oldest first.
	ListRunKeys(ctx context.Context, workflow string, stage int, startAfter string) ([]string, error)
	// ReadRun decodes the run record at key into v.
	ReadRun(ctx context.Context, key string, v any) error
}

// StageTasks reads what a deployed stage is doing and acts on files left
// waiting in its work queue when its tasks stopped before receiving them;
// provision.Provisioner is one. The Loop uses it on its run-status tick.
type StageTasks interface {
	// StageActivity counts the stage's waiting and received files and its
	// running tasks, and says why its last task stopped.
	StageActivity(ctx context.Context, spec provision.StageSpec, res provision.StageResources) (provision.StageActivity, error)
	// StartStageTask starts one task of the stage, as its function does.
	StartStageTask(ctx context.Context, spec provision.StageSpec, res provision.StageResources) (string, error)
	// DeadLetterWaiting moves the waiting files to the stage's dead-letter
	// queue, saying why, and returns how many it moved.
	DeadLetterWaiting(ctx context.Context, spec provision.StageSpec, res provision.StageResources, why string) (int, error)
}

// InstanceTypes answers for an EC2 instance type that workflow's own table
// lacks; provision.Provisioner is one (EC2 DescribeInstanceTypes). found is
// false when EC2 does not know the type; an error means it could not be
// asked, and the load that needed the answer fails.
type InstanceTypes interface {
	InstanceType(ctx context.Context, name string) (t workflow.InstanceType, found bool, err error)
}
