package sync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
)

// TeardownPlan is what `agent teardown` does: delete every pipeline idx
// records, or only those named, by the same path as a removed file (so the
// same buckets are kept). A pipeline already torn down is shown as such; one
// another agent is applying is skipped. Naming a workflow the inventory does
// not have is an error. It makes no writes.
func (r *Reconciler) TeardownPlan(idx *inventory.Index, names []string) (*Plan, error) {
	want := map[string]bool{}
	var unknown []string
	for _, n := range names {
		if _, ok := idx.Workflows[n]; !ok {
			unknown = append(unknown, n)
		}
		want[n] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("no pipeline named %s in the inventory (agent plan lists what is deployed)", strings.Join(unknown, ", "))
	}
	plan := &Plan{Label: "teardown"}
	now := r.opts.Now()
	for name, e := range idx.Workflows {
		if len(want) > 0 && !want[name] {
			continue
		}
		c := Change{Workflow: name, File: "workflows/" + name + ".json", Entry: &e, Action: Delete, Teardown: true,
			Reason: "agent teardown; buckets that hold data are kept"}
		switch holder, held := e.HeldBy(r.opts.AgentID, now); {
		case held:
			c.Action, c.Reason, c.Teardown = Skip, leaseReason(holder, e.LeaseExpires), false
		case e.State == inventory.StateTornDown:
			c.Action, c.Reason, c.Teardown = TornDown, "already torn down", false
		}
		plan.Changes = append(plan.Changes, c)
	}
	sort.Slice(plan.Changes, func(i, j int) bool { return plan.Changes[i].Workflow < plan.Changes[j].Workflow })
	return plan, nil
}

// Teardown carries out TeardownPlan: each pipeline is deleted as if its file
// had been removed, and its index entry is left torn down
// (inventory.StateTornDown) rather than removed, so a later pass re-creates
// it only when its file changes.
func (r *Reconciler) Teardown(ctx context.Context, names []string) (*Report, error) {
	start := r.opts.Now()
	for attempt := 0; ; attempt++ {
		idx, err := r.opts.Inventory.ReadIndex(ctx)
		if err != nil {
			return nil, err
		}
		plan, err := r.TeardownPlan(idx, names)
		if err != nil {
			return nil, err
		}
		rep, err := r.apply(ctx, plan, idx, time.Time{})
		if errors.Is(err, errReplan) && attempt < maxReplans {
			continue
		}
		if rep != nil {
			rep.Duration = r.opts.Now().Sub(start)
		}
		return rep, err
	}
}
