package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// Options configure a Reconciler. Provisioner and Inventory are required.
type Options struct {
	Provisioner Provisioner
	Inventory   Inventory
	// StateBucket is recorded in each stage's spec (provision.StageSpec's
	// StateBucket, kept in the inventory record); defaults to the
	// inventory's bucket.
	StateBucket string
	// AgentID names this agent in inventory leases. Two agents sharing a
	// state bucket need different IDs; a restarted agent with the same ID
	// resumes its own interrupted work at once. Default: the host name.
	AgentID string
	// Concurrency is how many workflows are applied at once. Default 8.
	Concurrency int
	// LeaseTTL is how long another agent keeps off a workflow this agent is
	// applying, in case this one dies mid-apply. Default 15 minutes, above
	// the longest apply (IAM propagation retries stop after about 2).
	LeaseTTL time.Duration
	// Release names what this agent deploys besides the workflow files:
	// its stage-function code and its runner image. A workflow deployed
	// under another release is updated, so an agent upgrade reaches every
	// pipeline on its first pass. Empty: releases are not compared.
	Release string
	// ApplyTimeout bounds the apply of one workflow. Default 10 minutes.
	ApplyTimeout time.Duration
	Logger       *slog.Logger
	// OnEvent, if set, is called as each workflow starts and finishes, from
	// the applying goroutines; it must be safe for concurrent use.
	OnEvent func(Event)
	// OnPlan, if set, is called with each plan before it is applied (to post
	// pending statuses).
	OnPlan func(*Plan)
	Now    func() time.Time
}

// Event reports progress of one workflow during Apply.
type Event struct {
	Workflow string
	Action   Action
	Done     bool // false: started; true: finished, Err says how
	Err      error
}

// Reconciler plans and applies desired state against the inventory.
type Reconciler struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex // guards account
	account string     // from STS, asked once: the credentials' account never changes
}

// New checks opts, fills in the defaults and returns a Reconciler.
func New(opts Options) (*Reconciler, error) {
	if opts.Provisioner == nil || opts.Inventory == nil {
		return nil, errors.New("reconciler needs a provisioner and an inventory")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 15 * time.Minute
	}
	if opts.ApplyTimeout <= 0 {
		opts.ApplyTimeout = 10 * time.Minute
	}
	opts.AgentID = AgentID(opts.AgentID)
	if opts.StateBucket == "" {
		opts.StateBucket = opts.Inventory.Bucket()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reconciler{opts: opts, log: opts.Logger.With("component", "sync")}, nil
}

// AgentID is the lease holder name an agent uses: id, or else the host
// name, or else "cloudpipe-agent".
func AgentID(id string) string {
	if id != "" {
		return id
	}
	if host, _ := os.Hostname(); host != "" {
		return host
	}
	return "cloudpipe-agent"
}

// Inventory is the inventory the Reconciler plans against.
func (r *Reconciler) Inventory() Inventory { return r.opts.Inventory }

// Plan reads the inventory and returns what a pass would do. It makes no
// writes.
func (r *Reconciler) Plan(ctx context.Context, d *Desired) (*Plan, error) {
	idx, err := r.opts.Inventory.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return r.PlanAgainst(d, idx), nil
}

// PlanAgainst is what a pass would do to d given the index idx, as this
// agent (its ID and release) would do it now.
func (r *Reconciler) PlanAgainst(d *Desired, idx *inventory.Index) *Plan {
	return ComputePlan(d, idx, r.opts.AgentID, r.opts.Release, r.opts.Now())
}

// errReplan says the index changed under us: another agent wrote it first.
var errReplan = errors.New("inventory index changed by another agent")

// maxReplans bounds how often one pass re-reads the index after losing a race.
const maxReplans = 8

// Reconcile runs one pass: plan against the inventory, record the intent,
// apply, and record the outcome. A workflow's failure is in its Result; the
// returned error is for what stops the whole pass (the inventory cannot be
// read or written, ctx cancelled).
func (r *Reconciler) Reconcile(ctx context.Context, d *Desired) (*Report, error) {
	return r.reconcile(ctx, d, false, nil, time.Time{})
}

// Repair is Reconcile plus a drift check: every workflow the plan leaves
// unchanged is compared with what exists in AWS, and one whose resources
// were deleted behind the agent's back is re-applied, with the missing
// resources named in its Reason. It reads every record and many resources,
// so it runs on its own, slower schedule.
func (r *Reconciler) Repair(ctx context.Context, d *Desired) (*Report, error) {
	return r.reconcile(ctx, d, true, nil, time.Time{})
}

// reconcile runs one pass; onPlan, if set, is told each plan before it is
// applied, after Options.OnPlan (the Loop posts pending statuses with it).
// retryAt is when the Loop tries workflows that fail now again, recorded
// in their index entries for `agent status` (zero: no retry scheduled).
func (r *Reconciler) reconcile(ctx context.Context, d *Desired, drift bool, onPlan func(*Plan), retryAt time.Time) (*Report, error) {
	start := r.opts.Now()
	for attempt := 0; ; attempt++ {
		idx, err := r.opts.Inventory.ReadIndex(ctx)
		if err != nil {
			return nil, err
		}
		plan := r.PlanAgainst(d, idx)
		if drift {
			if err := r.findDrift(ctx, plan); err != nil {
				return nil, err
			}
		}
		for _, hook := range []func(*Plan){r.opts.OnPlan, onPlan} {
			if hook != nil {
				hook(plan)
			}
		}
		rep, err := r.apply(ctx, plan, idx, retryAt)
		if errors.Is(err, errReplan) && attempt < maxReplans {
			r.log.Debug("inventory race lost, re-planning", "attempt", attempt+1)
			continue
		}
		if rep != nil {
			rep.Duration = r.opts.Now().Sub(start)
		}
		return rep, err
	}
}

// findDrift turns each unchanged workflow whose resources are missing, or
// whose settings were changed outside cloudpipe, into an update that
// re-creates or resets them, with what it found in the change's Drift.
func (r *Reconciler) findDrift(ctx context.Context, plan *Plan) error {
	for i, c := range plan.Changes {
		if c.Action != Unchanged {
			continue
		}
		rec, err := r.opts.Inventory.ReadRecord(ctx, c.Workflow)
		if errors.Is(err, inventory.ErrNotFound) {
			plan.Changes[i].Action, plan.Changes[i].Reason = Update, "drift: inventory record missing, re-applying"
			plan.Changes[i].Drift = []Drift{{Kind: "inventory record", What: "inventory record of " + c.Workflow + " (deleted outside cloudpipe)",
				Repair: "inventory record re-written"}}
			continue
		}
		if err != nil {
			return err
		}
		var missing, changed []string
		var drift []Drift
		for _, st := range rec.Stages {
			m, err := r.opts.Provisioner.MissingResources(ctx, st.Spec, st.Resources)
			if err != nil {
				return fmt.Errorf("drift check of %s: %w", c.Workflow, err)
			}
			missing = append(missing, m...)
			for _, res := range m {
				drift = append(drift, Drift{Kind: provision.ResourceKind(res), What: res + " (deleted outside cloudpipe)", Repair: res + " re-created"})
			}
			if len(m) > 0 {
				// Settings are compared once the stage is whole again.
				continue
			}
			ds, err := r.opts.Provisioner.ChangedSettings(ctx, st.Spec, st.Resources)
			if err != nil {
				return fmt.Errorf("drift check of %s: %w", c.Workflow, err)
			}
			for _, d := range ds {
				changed = append(changed, d.String())
				drift = append(drift, Drift{Kind: d.Kind, What: d.String() + " (changed outside cloudpipe)", Repair: d.Repair()})
			}
		}
		var why []string
		if len(missing) > 0 {
			why = append(why, "re-creating "+strings.Join(missing, ", ")+" (deleted outside cloudpipe)")
		}
		if len(changed) > 0 {
			why = append(why, "resetting "+strings.Join(changed, ", ")+" (changed outside cloudpipe)")
		}
		if len(why) > 0 {
			plan.Changes[i].Action = Update
			plan.Changes[i].Reason = "drift: " + strings.Join(why, "; ")
			plan.Changes[i].Drift = drift
		}
	}
	return nil
}

// CheckDrift adds to plan what a drift check finds (see Repair), for
// `agent plan --drift`. It only reads.
func (r *Reconciler) CheckDrift(ctx context.Context, plan *Plan) error { return r.findDrift(ctx, plan) }

// apply carries out plan, whose index idx was read at the start of the pass:
// build the stage specs, record the intent (or re-plan if another agent
// wrote the index first), apply each workflow, record the outcome.
func (r *Reconciler) apply(ctx context.Context, plan *Plan, idx *inventory.Index, retryAt time.Time) (*Report, error) {
	rep, todo := newReport(plan)
	if len(todo) == 0 {
		err := r.recordCommit(ctx, idx, plan.Commit)
		r.collectBatchCapacities(ctx, idx)
		return rep, err
	}
	specs, ready, refused := r.buildSpecs(ctx, plan, todo)
	for i, err := range refused {
		rep.Results[i].Err = err
	}
	if len(ready) > 0 {
		if err := r.recordIntent(ctx, plan, idx, ready, specs); err != nil {
			if errors.Is(err, inventory.ErrConflict) {
				return nil, errReplan
			}
			return rep, err
		}
	}
	for i, res := range r.applyReady(ctx, plan, specs, ready, rep.Results) {
		rep.Results[i] = res
	}
	interrupted := ctx.Err()

	// Save the outcome even if the pass was cancelled (SIGTERM): a half-done
	// apply must be on record. The lease of an interrupted workflow is kept,
	// so its next pass resumes it.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := r.recordResults(saveCtx, idx, plan.Commit, rep.Results, ready, specs, retryAt); err != nil {
		return rep, err
	}
	r.collectBatchCapacities(ctx, idx)
	return rep, interrupted
}

// newReport starts the report of plan, one result per change, and returns
// the indexes of the changes that write.
func newReport(plan *Plan) (*Report, []int) {
	rep := &Report{Commit: plan.Commit, Plan: plan, Results: make([]Result, len(plan.Changes))}
	var todo []int
	for i, c := range plan.Changes {
		rep.Results[i] = Result{Workflow: c.Workflow, File: c.File, Action: c.Action, Reason: c.Reason, Teardown: c.Teardown, Drift: c.Drift}
		if c.Action == Invalid {
			rep.Results[i].Err = c.Problems
		}
		if c.Action.writes() {
			todo = append(todo, i)
		}
	}
	return rep, todo
}

// buildSpecs builds the stage specs of every change in todo before any
// write, so an account mismatch or an STS failure stops a workflow before it
// touches anything. It returns the specs by change, the changes ready to
// apply, and the error of each change it refused.
func (r *Reconciler) buildSpecs(ctx context.Context, plan *Plan, todo []int) (map[int][]provision.StageSpec, []int, map[int]error) {
	specs := make(map[int][]provision.StageSpec)
	refused := make(map[int]error)
	var ready []int
	for _, i := range todo {
		c := plan.Changes[i]
		if c.Action == Delete {
			ready = append(ready, i)
			continue
		}
		s, err := r.stageSpecs(ctx, c)
		if err != nil {
			refused[i] = err
			continue
		}
		specs[i] = s
		ready = append(ready, i)
	}
	return specs, ready, refused
}

// recordIntent marks every ready change as being applied by this agent and
// takes its lease, in one conditional write of the index: inventory.ErrConflict
// if another agent wrote the index since idx was read.
// The stages of each change on AWS Batch become users of their capacities
// in the same write, before anything is created.
func (r *Reconciler) recordIntent(ctx context.Context, plan *Plan, idx *inventory.Index, ready []int, specs map[int][]provision.StageSpec) error {
	now := r.opts.Now()
	for _, i := range ready {
		c := plan.Changes[i]
		e := inventory.IndexEntry{}
		if c.Entry != nil {
			e = *c.Entry
		}
		e.State = inventory.StateApplying
		if c.Action == Delete {
			e.State = inventory.StateDeleting
		} else {
			e.PendingHash = c.Desired.SpecHash
			if e.Region == "" {
				e.Region = c.Desired.Region
			}
		}
		e.Holder, e.LeaseExpires, e.UpdatedAt = r.opts.AgentID, now.Add(r.opts.LeaseTTL), now
		idx.Workflows[c.Workflow] = e
		useBatchCapacities(idx, specs[i])
	}
	return r.opts.Inventory.WriteIndex(ctx, idx)
}

// applyReady applies the ready changes, Concurrency at a time, and returns
// their results by change. Cancelling ctx (SIGTERM) starts no further
// workflow, but one already being applied finishes its current step list:
// its AWS calls run on a context that is not cancelled, bounded by
// ApplyTimeout.
func (r *Reconciler) applyReady(ctx context.Context, plan *Plan, specs map[int][]provision.StageSpec, ready []int, started []Result) map[int]Result {
	results := make([]Result, len(ready))
	var g errgroup.Group
	g.SetLimit(r.opts.Concurrency)
	for n, i := range ready {
		g.Go(func() error {
			res := started[i]
			if err := ctx.Err(); err != nil {
				res.Err = fmt.Errorf("not started: %w", err)
			} else {
				res = r.applyOne(context.WithoutCancel(ctx), plan.Commit, plan.Changes[i], specs[i], res)
			}
			results[n] = res // each goroutine its own slot
			return nil
		})
	}
	_ = g.Wait() // each workflow's error is in its result
	byChange := make(map[int]Result, len(ready))
	for n, i := range ready {
		byChange[i] = results[n]
	}
	return byChange
}

// stageSpecs checks the workflow's account and builds its stage specs.
func (r *Reconciler) stageSpecs(ctx context.Context, c Change) ([]provision.StageSpec, error) {
	account, err := r.callerAccount(ctx, c.Desired.Region)
	if err != nil {
		return nil, err
	}
	if want := c.Desired.AccountID; want != "" && want != account {
		return nil, fmt.Errorf("%s: account_id: the workflow is for account %s but the agent's credentials are for account %s; nothing was changed", c.File, want, account)
	}
	return StageSpecs(c.Desired, account, r.opts.StateBucket), nil
}

func (r *Reconciler) callerAccount(ctx context.Context, region string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.account != "" {
		return r.account, nil
	}
	account, err := r.opts.Provisioner.CallerAccount(ctx, region)
	if err != nil {
		return "", fmt.Errorf("find the agent's AWS account: %w", err)
	}
	r.account = account
	return account, nil
}

// recordCommit notes the commit of a pass that changed nothing. It costs one
// write only when the commit moved; losing that race is harmless (the
// winner's pass saw a commit at least as new).
func (r *Reconciler) recordCommit(ctx context.Context, idx *inventory.Index, commit string) error {
	if commit == "" || idx.Commit == commit {
		return nil
	}
	idx.Commit, idx.UpdatedAt = commit, r.opts.Now()
	if err := r.opts.Inventory.WriteIndex(ctx, idx); err != nil && !errors.Is(err, inventory.ErrConflict) {
		return err
	}
	return nil
}

// recordResults writes the pass's outcome to the index. Between our intent
// write and now, other agents may have written entries of other workflows:
// on conflict re-read and re-apply only our own entries, which our leases
// protect.
// A workflow applied or deleted uses, from now on, exactly the AWS Batch
// capacities of its specs (none once deleted); a failed one keeps every
// capacity it had, since what it still holds is not known.
func (r *Reconciler) recordResults(ctx context.Context, idx *inventory.Index, commit string, results []Result, ours []int,
	specs map[int][]provision.StageSpec, retryAt time.Time) error {
	for attempt := 0; ; attempt++ {
		now := r.opts.Now()
		for _, i := range ours {
			res := results[i]
			e := idx.Workflows[res.Workflow]
			switch {
			case res.Err != nil: // interrupted or failed: it keeps its capacities
			case res.Action == Delete:
				releaseBatchCapacities(idx, res.Workflow, nil)
			default:
				releaseBatchCapacities(idx, res.Workflow, specs[i])
			}
			switch {
			case errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, context.DeadlineExceeded):
				// Interrupted: keep the intent and our lease so the next pass
				// resumes it.
				continue
			case res.Err != nil:
				e.State, e.Error = inventory.StateFailed, res.Err.Error()
			case res.Action == Delete && res.Teardown:
				// Keep what was torn down, so a pass leaves it down until
				// its file changes (see inventory.StateTornDown).
				if e.SpecHash == "" {
					e.SpecHash = e.PendingHash
				}
				e.State, e.Error, e.Stages, e.Release = inventory.StateTornDown, "", 0, ""
			case res.Action == Delete:
				delete(idx.Workflows, res.Workflow)
				continue
			default:
				e.State, e.Error = inventory.StateReady, ""
				e.SpecHash, e.Region, e.Commit, e.Stages = res.SpecHash, res.Region, commit, res.Stages
				e.Release = r.opts.Release
			}
			e.PendingHash, e.Holder, e.LeaseExpires, e.UpdatedAt = "", "", time.Time{}, now
			e.NextRetry = time.Time{}
			if e.State == inventory.StateFailed {
				e.NextRetry = retryAt
			}
			idx.Workflows[res.Workflow] = e
		}
		if commit != "" {
			idx.Commit = commit
		}
		idx.UpdatedAt = now
		err := r.opts.Inventory.WriteIndex(ctx, idx)
		if !errors.Is(err, inventory.ErrConflict) || attempt >= maxReplans {
			return err
		}
		fresh, rerr := r.opts.Inventory.ReadIndex(ctx)
		if rerr != nil {
			return rerr
		}
		*idx = *fresh
	}
}
