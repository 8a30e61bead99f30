package sync

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/gitsource"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// Action is what a pass does with one workflow.
type Action string

// Actions of a plan.
const (
	Create    Action = "create"
	Update    Action = "update"
	Delete    Action = "delete"
	Unchanged Action = "unchanged"
	// Skip: another agent holds the workflow's lease; it is left to that agent.
	Skip Action = "skip"
	// Invalid: the workflow's file has problems. Nothing is changed; a
	// deployed version keeps running until the file is fixed.
	Invalid Action = "invalid"
	// TornDown: `agent teardown` removed the pipeline and its file has not
	// changed since; nothing is changed.
	TornDown Action = "torn-down"
)

// writes reports whether the action changes AWS resources.
func (a Action) writes() bool { return a == Create || a == Update || a == Delete }

// Change is the plan for one workflow, with the reason for it.
type Change struct {
	Workflow string
	File     string // repository-relative path of the workflow file
	Action   Action
	Reason   string
	Desired  *workflow.Workflow    // nil for Delete
	Entry    *inventory.IndexEntry // nil if the inventory has none
	Problems workflow.Problems     // for Invalid
	// Teardown marks a Delete of `agent teardown`: the index keeps a
	// torn-down entry (inventory.StateTornDown) instead of none.
	Teardown bool
	// Drift is what a drift check found changed or deleted outside
	// cloudpipe; the change (an Update) repairs it.
	Drift []Drift
	// BatchStages are, for a Delete, the deployed stages the index lists
	// as users of a Batch capacity: they have a job definition, not a task
	// definition.
	BatchStages []int
}

// CapacityChange is a shared AWS Batch capacity (compute environment and
// job queue) a plan creates, for its first user, or deletes, its last
// user gone.
type CapacityChange struct {
	Action   Action // Create or Delete
	Capacity provision.BatchCapacity
	// Users are the stages ("<workflow>/<stage>") using it after the plan
	// (Create) or before it (Delete).
	Users []string
}

// Resources lists the compute environment and job queue, "<kind> <name>".
func (c CapacityChange) Resources() []string { return provision.CapacityResourceNames(c.Capacity) }

// Drift is one resource or setting of a deployed workflow that a drift
// check found changed or deleted outside cloudpipe.
type Drift struct {
	Kind   string // the resource's kind, as provision names it: "sqs queue"
	What   string // "sqs queue cp-x-0 VisibilityTimeout 1200 → 30 (changed outside cloudpipe)"
	Repair string // what the repair does: "sqs queue cp-x-0 attributes reset"
}

// Plan is what a pass would do at one commit.
type Plan struct {
	Commit  string
	Changes []Change // sorted by workflow name
	// Capacities are the shared Batch capacities the plan's creates,
	// updates and deletes bring into or out of use, sorted by name.
	Capacities []CapacityChange
	Problems   workflow.Problems
	// Label names what the plan is for in its header and summary, instead
	// of the commit (e.g. "teardown").
	Label string
}

// Counts returns how many workflows the plan creates, updates and deletes.
func (p *Plan) Counts() (create, update, del int) {
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			create++
		case Update:
			update++
		case Delete:
			del++
		}
	}
	return create, update, del
}

// Summary is the plan in one line: "+2 create ~1 update -0 delete".
func (p *Plan) Summary() string {
	c, u, d := p.Counts()
	return fmt.Sprintf("+%d create ~%d update -%d delete", c, u, d)
}

// Notes returns the notes of the change's workflow that change what its
// pipeline does (workflow.Workflow.Notes), when the change creates or
// updates it: a plan shows them where they take effect, not for pipelines
// it leaves as they are.
func (c Change) Notes() workflow.Problems {
	if (c.Action != Create && c.Action != Update) || c.Desired == nil {
		return nil
	}
	return c.Desired.Notes
}

// Notes returns the notes of every change (Change.Notes), in plan order.
func (p *Plan) Notes() workflow.Problems {
	var out workflow.Problems
	for _, c := range p.Changes {
		out = append(out, c.Notes()...)
	}
	return out
}

// Regions returns, sorted, the regions other than home (the agent's) that
// the plan's creates and updates deploy to: those whose cluster and network
// a pass may have to prepare first (provision.Provisioner.PlanRegion says
// whether it does).
func (p *Plan) Regions(home string) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range p.Changes {
		if (c.Action != Create && c.Action != Update) || c.Desired == nil {
			continue
		}
		if r := c.Desired.Region; r != "" && r != home && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// HasWrites reports whether applying the plan changes anything in AWS.
func (p *Plan) HasWrites() bool {
	for _, c := range p.Changes {
		if c.Action.writes() {
			return true
		}
	}
	return false
}

// ComputePlan compares the desired state with the inventory's index. It is
// pure: the same inputs always give the same plan. release is the agent's
// (see Options.Release); "" does not compare releases.
func ComputePlan(d *Desired, idx *inventory.Index, agentID, release string, now time.Time) *Plan {
	plan := &Plan{Commit: d.Commit, Problems: d.Problems}
	seen := map[string]bool{}
	for _, w := range d.Workflows {
		seen[w.Name] = true
		c := Change{Workflow: w.Name, File: w.File, Desired: w}
		if e, ok := idx.Workflows[w.Name]; ok {
			c.Entry = &e
		}
		c.Action, c.Reason = planDesired(w, c.Entry, agentID, release, now)
		plan.Changes = append(plan.Changes, c)
	}
	for name, problems := range d.Invalid {
		seen[name] = true
		c := Change{Workflow: name, File: "workflows/" + name + ".json", Action: Invalid, Problems: problems}
		if e, ok := idx.Workflows[name]; ok && e.State != inventory.StateTornDown {
			c.Entry = &e
			c.Reason = fmt.Sprintf("%s: deployed version kept until the file is fixed", firstProblem(problems))
		} else {
			c.Reason = fmt.Sprintf("%s: not deployed", firstProblem(problems))
		}
		plan.Changes = append(plan.Changes, c)
	}
	for name, e := range idx.Workflows {
		if seen[name] {
			continue
		}
		c := Change{Workflow: name, File: "workflows/" + name + ".json", Entry: &e, BatchStages: batchStages(idx, name)}
		switch holder, held := e.HeldBy(agentID, now); {
		case held:
			c.Action, c.Reason = Skip, leaseReason(holder, e.LeaseExpires)
		case e.State == inventory.StateTornDown:
			// Nothing left in AWS: the delete only drops the entry, so
			// that the file, if added again, deploys again.
			c.Action, c.Reason = Delete, c.File+" removed after agent teardown: forgetting it"
		default:
			c.Action, c.Reason = Delete, c.File+" removed"
		}
		plan.Changes = append(plan.Changes, c)
	}
	sort.Slice(plan.Changes, func(i, j int) bool { return plan.Changes[i].Workflow < plan.Changes[j].Workflow })
	plan.Capacities = planCapacities(plan.Changes, idx)
	return plan
}

// planCapacities is what the plan's changes do to the shared Batch
// capacities, counted as a pass counts them (useBatchCapacities,
// releaseBatchCapacities): a created or updated workflow's Batch stages
// become its only uses, a deleted workflow has none. A capacity the index
// lacks and the plan uses is created; one the index lists and the plan
// leaves without users is torn down at the end of the pass
// (collectBatchCapacities). Other actions (skip, invalid, unchanged) keep
// their workflow's uses.
func planCapacities(changes []Change, idx *inventory.Index) []CapacityChange {
	after := &inventory.Index{}
	for _, e := range idx.BatchCapacities {
		after.BatchCapacities = append(after.BatchCapacities, inventory.BatchCapacityEntry{BatchCapacity: e.BatchCapacity, Users: slices.Clone(e.Users)})
	}
	for _, c := range changes {
		if !c.Action.writes() {
			continue
		}
		var specs []provision.StageSpec
		if c.Action != Delete && c.Desired != nil {
			for _, st := range c.Desired.Stages {
				if b := batchSpec(c.Desired, st); b != nil {
					specs = append(specs, provision.StageSpec{Workflow: c.Workflow, Stage: st.Index, Region: c.Desired.Region, Batch: b})
				}
			}
		}
		releaseBatchCapacities(after, c.Workflow, specs)
	}
	var out []CapacityChange
	for _, e := range after.BatchCapacities {
		i := slices.IndexFunc(idx.BatchCapacities, func(b inventory.BatchCapacityEntry) bool { return b.BatchCapacity == e.BatchCapacity })
		switch {
		case i < 0 && len(e.Users) > 0:
			out = append(out, CapacityChange{Action: Create, Capacity: e.BatchCapacity, Users: e.Users})
		case i >= 0 && len(e.Users) == 0:
			out = append(out, CapacityChange{Action: Delete, Capacity: e.BatchCapacity, Users: idx.BatchCapacities[i].Users})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Capacity.String() < out[j].Capacity.String() })
	return out
}

// batchStages are the stages of workflow the index lists as users of a
// Batch capacity.
func batchStages(idx *inventory.Index, workflow string) []int {
	var out []int
	for _, e := range idx.BatchCapacities {
		for _, u := range e.Users {
			i := strings.LastIndex(u, "/")
			if n, err := strconv.Atoi(u[i+1:]); i > 0 && err == nil && u[:i] == workflow && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

func planDesired(w *workflow.Workflow, e *inventory.IndexEntry, agentID, release string, now time.Time) (Action, string) {
	if e == nil {
		return Create, "new file " + w.File
	}
	if holder, held := e.HeldBy(agentID, now); held {
		return Skip, leaseReason(holder, e.LeaseExpires)
	}
	if e.State == inventory.StateTornDown {
		if e.SpecHash == w.SpecHash {
			return TornDown, "torn down by agent teardown; deployed again when " + w.File + " changes"
		}
		return Create, w.File + " changed since agent teardown"
	}
	// Create until a first apply succeeded, so the plan says what the user
	// will see; the apply itself is the same idempotent ensure either way.
	act := Update
	if e.SpecHash == "" {
		act = Create
	}
	switch {
	case e.State == inventory.StateApplying:
		return act, "resuming an interrupted apply"
	case e.State == inventory.StateDeleting:
		return act, "resuming: file restored while its pipeline was being deleted"
	case e.State == inventory.StateFailed:
		return act, "retrying after failure: " + e.Error
	case e.Region != w.Region:
		return Update, fmt.Sprintf("region changed from %s to %s: pipeline moves", e.Region, w.Region)
	case e.SpecHash != w.SpecHash:
		return Update, fmt.Sprintf("%s changed since commit %s", w.File, short(e.Commit))
	case release != "" && e.Release != release:
		return Update, "agent upgraded: stage functions and runner image move to its release " + short(release)
	}
	return Unchanged, "deployed at commit " + short(e.Commit)
}

func leaseReason(holder string, until time.Time) string {
	return fmt.Sprintf("being applied by agent %s (lease until %s)", holder, until.UTC().Format(time.RFC3339))
}

func firstProblem(ps workflow.Problems) string {
	if len(ps) == 0 {
		return "invalid"
	}
	s := ps[0].String()
	if len(ps) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(ps)-1)
	}
	return s
}

// short abbreviates a commit hash for messages.
func short(commit string) string {
	if commit == "" {
		return "(none)"
	}
	return gitsource.ShortCommit(commit)
}
