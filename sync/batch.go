package sync

import (
	"errors"
	"fmt"

	"github.com/cloudpipe/cloudpipe/workflow"
)

// ErrBatchNotProvisioned is the error of a workflow with a stage that its
// placement puts on AWS Batch: this agent does not build Batch resources
// yet, and such a stage must not run on Fargate instead, silently without
// its GPU, its size or its privileges.
var ErrBatchNotProvisioned = errors.New("runs on AWS Batch, which this agent does not provision yet")

// refuseBatch returns ErrBatchNotProvisioned, naming the workflow, the stage
// and its placement, for the first stage of w that AWS Batch would run; nil
// when every stage runs on Fargate. It is the one place the refusal is made
// (Reconciler.stageSpecs, before anything is written), and goes when
// provision builds Batch resources.
func refuseBatch(w *workflow.Workflow) error {
	for _, st := range w.Stages {
		p := st.Placement(w)
		if p.Platform != workflow.PlatformBatch {
			continue
		}
		return fmt.Errorf("%s: stage %d (%s) %w: %s; nothing was changed", w.File, st.Index, st.Algorithm.Name, ErrBatchNotProvisioned, p)
	}
	return nil
}
