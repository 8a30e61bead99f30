package sync

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// applyOne creates, updates or deletes one workflow. Every step is recorded
// in the workflow's inventory record before the AWS calls it leads to, so a
// crash at any point leaves a record the next pass resumes from.
func (r *Reconciler) applyOne(ctx context.Context, commit string, c Change, specs []provision.StageSpec, res Result) Result {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ApplyTimeout)
	defer cancel()
	start := r.opts.Now()
	log := r.log.With("workflow", c.Workflow, "action", c.Action)
	r.emit(Event{Workflow: c.Workflow, Action: c.Action})
	log.Info("apply started", "reason", c.Reason)

	if c.Action == Delete {
		res.Err = r.deleteWorkflow(ctx, c.Workflow, &res)
	} else {
		res.SpecHash, res.Region, res.Stages = c.Desired.SpecHash, c.Desired.Region, len(specs)
		res.Err = r.ensureWorkflow(ctx, commit, c, specs, &res)
	}
	res.Duration = r.opts.Now().Sub(start)
	r.emit(Event{Workflow: c.Workflow, Action: c.Action, Done: true, Err: res.Err})
	if res.Err != nil {
		log.Info("apply failed", "duration", res.Duration, "err", res.Err)
	} else {
		log.Info("apply done", "duration", res.Duration)
	}
	return res
}

func (r *Reconciler) emit(e Event) {
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(e)
	}
}

// ensureWorkflow brings every stage of the workflow to its spec: record the
// new stages (pairing each with the recorded one it updates in place), tear
// down the stages it replaces, ensure each stage, record it ready.
func (r *Reconciler) ensureWorkflow(ctx context.Context, commit string, c Change, specs []provision.StageSpec, res *Result) error {
	rec, err := r.opts.Inventory.ReadRecord(ctx, c.Workflow)
	if errors.Is(err, inventory.ErrNotFound) {
		rec, err = &inventory.Record{Workflow: c.Workflow}, nil
	}
	if err != nil {
		return err
	}
	rec.Stages, rec.Retired = pairStages(rec, specs)
	rec.Region, rec.State = c.Desired.Region, inventory.StateApplying
	if err := r.writeRecord(ctx, rec); err != nil {
		return err
	}
	kept, err := r.retireStages(ctx, rec)
	res.KeptBuckets = append(res.KeptBuckets, kept...)
	if err != nil {
		return err
	}
	if err := r.ensureStages(ctx, rec); err != nil {
		return err
	}
	res.InputBucket = specs[0].InputBucket
	res.OutputBucket = specs[len(specs)-1].OutputBucket

	rec.State, rec.Error = inventory.StateReady, ""
	rec.SpecHash, rec.Commit = c.Desired.SpecHash, commit
	return r.writeRecord(ctx, rec)
}

// pairStages pairs each new stage with the recorded one it updates in place;
// every recorded stage that cannot be updated in place is retired (to be
// torn down), after those retired before.
func pairStages(rec *inventory.Record, specs []provision.StageSpec) (stages, retired []inventory.StageRecord) {
	prev := make([]provision.StageResources, len(specs))
	retired = slices.Clone(rec.Retired)
	for i, old := range rec.Stages {
		if i < len(specs) && sameStage(old.Spec, specs[i]) {
			prev[i] = old.Resources
			continue
		}
		retired = append(retired, old)
	}
	stages = make([]inventory.StageRecord, len(specs))
	for i := range specs {
		stages[i] = inventory.StageRecord{Spec: specs[i], Resources: prev[i]}
	}
	return stages, retired
}

// retireStages tears down the record's retired stages, recording each one
// gone. They go first: a stage that moved to another bucket must stop being
// triggered by the old one before the new one is wired. It returns the
// buckets kept because they hold data.
func (r *Reconciler) retireStages(ctx context.Context, rec *inventory.Record) ([]provision.KeptBucket, error) {
	var kept []provision.KeptBucket
	for len(rec.Retired) > 0 {
		old := rec.Retired[0]
		dr, err := r.opts.Provisioner.DeleteStage(ctx, old.Spec, old.Resources)
		if err != nil {
			return kept, r.fail(ctx, rec, fmt.Errorf("tear down replaced stage %d: %w", old.Spec.Stage, err))
		}
		kept = append(kept, dr.KeptBuckets...)
		rec.Retired = rec.Retired[1:]
		if err := r.writeRecord(ctx, rec); err != nil {
			return kept, err
		}
	}
	return kept, nil
}

// ensureStages ensures each stage in order, recording identifiers as they
// appear, so a crash in a later stage still leaves them on record.
func (r *Reconciler) ensureStages(ctx context.Context, rec *inventory.Record) error {
	for i := range rec.Stages {
		st := &rec.Stages[i]
		ids, err := r.opts.Provisioner.EnsureStage(ctx, st.Spec, st.Resources)
		st.Resources = mergeResources(st.Resources, ids)
		if err != nil {
			return r.fail(ctx, rec, fmt.Errorf("stage %d (%s): %w", i, st.Spec.Algorithm.Name, err))
		}
		if err := r.writeRecord(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}

// mergeResources keeps the identifiers known before when an interrupted
// ensure returned none, so nothing created is forgotten.
func mergeResources(old, cur provision.StageResources) provision.StageResources {
	if reflect.ValueOf(cur).IsZero() {
		return old
	}
	return cur
}

// deleteWorkflow tears down every stage of the workflow, keeping buckets that
// hold data, and removes its record.
func (r *Reconciler) deleteWorkflow(ctx context.Context, name string, res *Result) error {
	inv := r.opts.Inventory
	rec, err := inv.ReadRecord(ctx, name)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil // intent recorded, nothing created yet
	}
	if err != nil {
		return err
	}
	rec.State = inventory.StateDeleting
	if err := r.writeRecord(ctx, rec); err != nil {
		return err
	}
	// Later stages first: stage i+1 is triggered by stage i's output bucket.
	all := append(slices.Clone(rec.Retired), rec.Stages...)
	slices.SortStableFunc(all, func(a, b inventory.StageRecord) int { return b.Spec.Stage - a.Spec.Stage })
	for _, st := range all {
		dr, err := r.opts.Provisioner.DeleteStage(ctx, st.Spec, st.Resources)
		if err != nil {
			return r.fail(ctx, rec, fmt.Errorf("delete stage %d: %w", st.Spec.Stage, err))
		}
		res.KeptBuckets = append(res.KeptBuckets, dr.KeptBuckets...)
	}
	return inv.DeleteRecord(ctx, name)
}

// fail records err in the workflow's record and returns it. The record write
// uses a context that outlives cancellation so the failure is on record.
func (r *Reconciler) fail(ctx context.Context, rec *inventory.Record, err error) error {
	if ctx.Err() != nil {
		// Interrupted, not failed: leave the record in its in-progress state
		// for the next pass to resume.
		return err
	}
	rec.Error = err.Error()
	if rec.State == inventory.StateApplying {
		rec.State = inventory.StateFailed
	}
	if werr := r.writeRecord(ctx, rec); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func (r *Reconciler) writeRecord(ctx context.Context, rec *inventory.Record) error {
	rec.UpdatedAt = r.opts.Now().UTC().Truncate(time.Millisecond)
	return r.opts.Inventory.WriteRecord(ctx, rec)
}
