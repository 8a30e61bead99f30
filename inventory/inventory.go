// Package inventory is the agent's record of what it owns, kept in the state
// bucket: one small index read once per pass to answer "what changed?", and one
// record per workflow holding its stage specs and the identifiers of every
// resource created for it, so it can be updated or torn down after its file is
// gone. Writes are conditional (If-Match / If-None-Match), so two agents sharing
// a state bucket can never both win one: the loser gets ErrConflict and
// re-reads. The package also reads the run records that runners write beside
// the inventory. It knows nothing of AWS provisioning; the specs and
// identifiers it stores are provision's types.
package inventory

import (
	"errors"
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/provision"
)

// Errors of the store, so callers use errors.Is and never match S3 codes.
var (
	// ErrNotFound: the record (or run record) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a conditional write lost a race; re-read and re-plan.
	ErrConflict = errors.New("conflict: written by someone else since it was read")
)

// The inventory lives in the state bucket as one small index, read once per
// pass to answer "what changed?", and one record per workflow holding the
// stage specs and resource identifiers needed to update or tear it down.
const (
	indexKey     = provision.InventoryPrefix + "index.json"
	recordPrefix = provision.InventoryPrefix + "workflows/"
	// maxInventoryObject bounds what a read accepts: the index of 1000
	// workflows is about 300 KiB, so anything near this limit is corrupt.
	maxInventoryObject = 64 << 20
)

// State is where a workflow is in its life cycle, as the inventory records it.
type State string

// States of an inventory entry.
const (
	// StateApplying: an agent recorded its intent to create or update the
	// workflow and may have created some of its resources.
	StateApplying State = "applying"
	// StateDeleting: an agent recorded its intent to tear the workflow down.
	StateDeleting State = "deleting"
	// StateReady: the resources match SpecHash.
	StateReady State = "ready"
	// StateFailed: the last apply failed; Error says why.
	StateFailed State = "failed"
	// StateTornDown: `agent teardown` removed the pipeline while its file
	// may still be in the repository. The entry keeps the spec hash that was
	// torn down, so a pass leaves the pipeline down until the file changes
	// (or goes away, which drops the entry): a teardown sticks, and the
	// repository still decides what runs next.
	StateTornDown State = "torn-down"
)

// Index is the inventory's summary: one entry per workflow the agent owns.
type Index struct {
	Commit    string                `json:"commit,omitempty"` // last commit a pass completed
	UpdatedAt time.Time             `json:"updated_at"`
	Workflows map[string]IndexEntry `json:"workflows"`
	// BatchCapacities are the AWS Batch compute environments and job queues
	// the agent may have made (one per region, instance type and
	// capacity), each with the stages that use it. An entry is added, with
	// its user, in the same write as the intent to apply a workflow that
	// uses it, before anything is created, and removed only once the
	// capacity is torn down after its last user went: so none is ever
	// forgotten, and a teardown a crash interrupted is finished by a later
	// pass.
	BatchCapacities []BatchCapacityEntry `json:"batch_capacities,omitempty"`

	// ETag is the version read; WriteIndex writes only over that version.
	ETag string `json:"-"`
}

// IndexEntry is the inventory's summary of one workflow.
type IndexEntry struct {
	Region   string `json:"region"`
	Stages   int    `json:"stages,omitempty"`    // how many stages the deployed spec has
	SpecHash string `json:"spec_hash,omitempty"` // of the deployed spec; empty until a first apply succeeds
	Commit   string `json:"commit,omitempty"`    // commit of the last successful apply
	// Release names the agent's stage-function code and runner image that
	// the last successful apply deployed (see sync.Options.Release).
	Release string `json:"release,omitempty"`
	State   State  `json:"state"`
	// PendingHash is the spec an applying agent is moving to.
	PendingHash string `json:"pending_hash,omitempty"`
	// Holder and LeaseExpires lock the entry while an agent applies it: no
	// other agent touches the workflow until the lease expires.
	Holder       string    `json:"holder,omitempty"`
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
	Error        string    `json:"error,omitempty"`
	// NextRetry is when the agent's loop tries a failed workflow again at
	// the same commit (zero when none is scheduled: `agent sync --once`,
	// or not failed), for `agent status`.
	NextRetry time.Time `json:"next_retry,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// BatchCapacityEntry is one AWS Batch capacity and its users.
type BatchCapacityEntry struct {
	provision.BatchCapacity
	// Users are the stages using it, "<workflow>/<stage>", sorted.
	Users []string `json:"users,omitempty"`
}

// HeldBy reports whether another agent holds a live lease on the entry.
func (e IndexEntry) HeldBy(agentID string, now time.Time) (string, bool) {
	if e.Holder == "" || e.Holder == agentID || !now.Before(e.LeaseExpires) {
		return "", false
	}
	return e.Holder, true
}

// Record is everything the agent knows about one workflow's resources.
type Record struct {
	Workflow string        `json:"workflow"`
	Region   string        `json:"region"`
	Commit   string        `json:"commit,omitempty"`
	SpecHash string        `json:"spec_hash,omitempty"`
	State    State         `json:"state"`
	Stages   []StageRecord `json:"stages"`
	// Retired holds stages the current spec no longer has (a sequence that
	// shrank, a bucket or region that changed) until they are torn down.
	Retired   []StageRecord `json:"retired,omitempty"`
	Error     string        `json:"error,omitempty"`
	UpdatedAt time.Time     `json:"updated_at"`

	ETag string `json:"-"`
}

// StageRecord pairs the spec a stage was (or is being) built from with the
// identifiers of what exists. The spec is kept so the stage can be torn down
// after its workflow file is gone.
type StageRecord struct {
	Spec      provision.StageSpec      `json:"spec"`
	Resources provision.StageResources `json:"resources"`
}

// recordKey is where the record of workflow is kept.
func recordKey(workflow string) string { return recordPrefix + workflow + ".json" }

// recordName is the workflow whose record is at key, if key is a record's.
func recordName(key string) (string, bool) {
	name, ok := strings.CutPrefix(key, recordPrefix)
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, ".json")
	return name, ok && name != ""
}

// runPrefix is where the runners of one stage record their runs.
func runPrefix(workflow string, stage int) string { return contract.StageRunsPrefix(workflow, stage) }
