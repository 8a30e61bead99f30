package sync

import (
	"context"
	"errors"
)

// DaemonOptions configure NewDaemon: the options of the Reconciler and of
// the Loop that drives it, which NewDaemon joins.
type DaemonOptions struct {
	// Reconciler configures the Reconciler. Its OnPlan, if set, is called
	// after the plan's pending statuses are posted.
	Reconciler Options
	// Loop configures the Loop. Its Reconciler must be nil: NewDaemon makes
	// it from the options above.
	Loop LoopOptions
}

// NewDaemon returns the loop of `agent run` (and of the demo): a Reconciler,
// a Loop over it, and each plan hooked to the loop's pending statuses, so a
// workflow about to change shows "pending" on its commit before the apply
// starts. Those statuses are posted under ctx: pass the daemon's lifetime.
func NewDaemon(ctx context.Context, o DaemonOptions) (*Loop, error) {
	if o.Loop.Reconciler != nil {
		return nil, errors.New("new daemon: the loop's reconciler is made by NewDaemon, leave it nil")
	}
	hook := &pendingHook{ctx: ctx, next: o.Reconciler.OnPlan}
	o.Reconciler.OnPlan = hook.onPlan
	o.Loop.Reconciler = New(o.Reconciler)
	loop, err := NewLoop(o.Loop)
	if err != nil {
		return nil, err
	}
	hook.loop = loop
	return loop, nil
}

// pendingHook is the Reconciler's OnPlan. A Reconciler is made before the
// Loop that drives it, so the hook is given its loop once that exists; that
// is before any pass, and only passes make plans.
type pendingHook struct {
	ctx  context.Context
	loop *Loop
	next func(*Plan) // the caller's own OnPlan, or nil
}

func (h *pendingHook) onPlan(p *Plan) {
	h.loop.PostPending(h.ctx, p)
	if h.next != nil {
		h.next(p)
	}
}
