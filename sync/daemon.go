package sync

import "errors"

// DaemonOptions configure NewDaemon: the options of the Reconciler and of
// the Loop that drives it.
type DaemonOptions struct {
	Reconciler Options
	// Loop configures the Loop. Its Reconciler must be nil: NewDaemon makes
	// it from the options above. Its Runs defaults to the inventory when the
	// inventory also reads run records (inventory.Store does: runners
	// record their runs in the state bucket), and its Tasks to the
	// provisioner when that can start tasks (provision.Provisioner does).
	Loop LoopOptions
}

// NewDaemon returns the loop of `agent run` and of the demo: a Reconciler
// and a Loop over it, so the two commands cannot wire them differently. The
// Loop posts each plan's pending statuses itself, before the apply.
func NewDaemon(o DaemonOptions) (*Loop, error) {
	if o.Loop.Reconciler != nil {
		return nil, errors.New("new daemon: the loop's reconciler is made by NewDaemon, leave it nil")
	}
	rec, err := New(o.Reconciler)
	if err != nil {
		return nil, err
	}
	o.Loop.Reconciler = rec
	if runs, ok := o.Reconciler.Inventory.(RunRecords); ok && o.Loop.Runs == nil {
		o.Loop.Runs = runs
	}
	if tasks, ok := o.Reconciler.Provisioner.(StageTasks); ok && o.Loop.Tasks == nil {
		o.Loop.Tasks = tasks
	}
	return NewLoop(o.Loop)
}
