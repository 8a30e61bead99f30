package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// AWS Batch capacities are shared: one compute environment and job queue
// per region, instance type and capacity, for every stage placed there
// (provision.BatchCapacity). The index counts their users
// (inventory.Index.BatchCapacities): a workflow's stages are added in the
// write that records the intent to apply it, before anything is created,
// and set to what it uses once an apply succeeds (none once it is
// deleted); a capacity left without users is torn down at the end of a
// pass (collectBatchCapacities) and its entry dropped once it is gone.
// Batch deletes asynchronously and the agent may be killed in between: the
// entry stays until the teardown is seen through, by this pass or a later
// one.

// BatchCapacities tears down AWS Batch capacities; provision.Provisioner is
// one. A Provisioner without it (the state machine's fakes) never has any.
type BatchCapacities interface {
	// DeleteBatchCapacity disables and deletes the capacity's job queue and
	// compute environment; done is false while AWS is still at it.
	DeleteBatchCapacity(ctx context.Context, k provision.BatchCapacity) (deleted []string, done bool, err error)
}

// batchUser names a stage as a capacity's user.
func batchUser(spec provision.StageSpec) string {
	return spec.Workflow + "/" + strconv.Itoa(spec.Stage)
}

// useBatchCapacities adds the stages of specs placed on AWS Batch to their
// capacities' users, adding the capacities not yet listed.
func useBatchCapacities(idx *inventory.Index, specs []provision.StageSpec) {
	for _, spec := range specs {
		if spec.Batch == nil {
			continue
		}
		k := spec.Batch.Key(spec.Region)
		i := slices.IndexFunc(idx.BatchCapacities, func(e inventory.BatchCapacityEntry) bool { return e.BatchCapacity == k })
		if i < 0 {
			idx.BatchCapacities = append(idx.BatchCapacities, inventory.BatchCapacityEntry{BatchCapacity: k})
			i = len(idx.BatchCapacities) - 1
		}
		e := &idx.BatchCapacities[i]
		if u := batchUser(spec); !slices.Contains(e.Users, u) {
			e.Users = append(e.Users, u)
			slices.Sort(e.Users)
		}
	}
}

// releaseBatchCapacities makes workflow's stages the users of exactly the
// capacities specs use: after a successful apply (specs nil after a
// delete), what the workflow no longer uses loses it as a user.
func releaseBatchCapacities(idx *inventory.Index, workflow string, specs []provision.StageSpec) {
	for i := range idx.BatchCapacities {
		e := &idx.BatchCapacities[i]
		e.Users = slices.DeleteFunc(e.Users, func(u string) bool { return u[:max(0, strings.LastIndex(u, "/"))] == workflow })
	}
	useBatchCapacities(idx, specs)
}

// collectBatchCapacities tears down every capacity of the index without
// users and drops the entries of those gone. seen is the index the pass
// holds: when it has no such capacity (the common case) nothing is read;
// otherwise the index is read again, so that a capacity another agent has
// just taken into use is not torn down. A failure is logged, not
// returned: the entry stays and the next pass tries again, and no
// workflow's apply depends on it.
func (r *Reconciler) collectBatchCapacities(ctx context.Context, seen *inventory.Index) {
	del, ok := r.opts.Provisioner.(BatchCapacities)
	if !ok || ctx.Err() != nil {
		return
	}
	if !slices.ContainsFunc(seen.BatchCapacities, func(e inventory.BatchCapacityEntry) bool { return len(e.Users) == 0 }) {
		return
	}
	idx, err := r.opts.Inventory.ReadIndex(ctx)
	if err != nil {
		r.log.Warn("batch capacities not collected", "err", err)
		return
	}
	for _, e := range idx.BatchCapacities {
		if len(e.Users) > 0 {
			continue
		}
		log := r.log.With("batch_capacity", e.String())
		deleted, done, err := del.DeleteBatchCapacity(ctx, e.BatchCapacity)
		if len(deleted) > 0 {
			log.Info("batch capacity torn down", "deleted", deleted, "done", done)
		}
		if err != nil {
			log.Warn("batch capacity not torn down, a later pass retries", "err", err)
			continue
		}
		if !done {
			log.Info("batch capacity still being deleted by AWS, a later pass finishes it")
			continue
		}
		if err := r.dropBatchCapacity(ctx, e.BatchCapacity); err != nil {
			log.Warn("batch capacity gone, entry not dropped, a later pass drops it", "err", err)
		}
	}
}

// dropBatchCapacity removes k's entry from the index, unless a user came
// meanwhile (then the next apply makes it again).
func (r *Reconciler) dropBatchCapacity(ctx context.Context, k provision.BatchCapacity) error {
	for attempt := 0; ; attempt++ {
		idx, err := r.opts.Inventory.ReadIndex(ctx)
		if err != nil {
			return err
		}
		before := len(idx.BatchCapacities)
		idx.BatchCapacities = slices.DeleteFunc(idx.BatchCapacities, func(e inventory.BatchCapacityEntry) bool {
			return e.BatchCapacity == k && len(e.Users) == 0
		})
		if len(idx.BatchCapacities) == before {
			return nil
		}
		idx.UpdatedAt = r.opts.Now()
		err = r.opts.Inventory.WriteIndex(ctx, idx)
		if !errors.Is(err, inventory.ErrConflict) || attempt >= maxReplans {
			if err != nil {
				return fmt.Errorf("drop batch capacity %s: %w", k, err)
			}
			return nil
		}
	}
}
