package inventory_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/inventory"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

var _ pipesync.RedriveJournal = (*inventory.Store)(nil)

// TestRedriveJournal: a mark is found once written, a second write of it
// is success (the same dead letter, recorded by a retried PUT or a
// resumed run), other stages do not see it, and pruning removes marks
// older than the cut and keeps the others; as the agent's role, so its
// policy allows each call.
func TestRedriveJournal(t *testing.T) {
	st, _, _ := openS3Store(t)
	inv := st.(*inventory.Store)
	ctx := t.Context()
	if _, err := inv.ReadRedriveMark(ctx, "wf", 0, "m1"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("mark before any: %v, want ErrNotFound", err)
	}
	m := inventory.RedriveMark{Workflow: "wf", Stage: 0, DeadLetter: "m1", WorkMessage: "w1", Object: "s3://in/a", MovedAt: time.Now().UTC().Round(0)}
	for range 2 {
		if err := inv.WriteRedriveMark(ctx, m); err != nil {
			t.Fatalf("write mark: %v", err)
		}
	}
	got, err := inv.ReadRedriveMark(ctx, "wf", 0, "m1")
	if err != nil || *got != m {
		t.Fatalf("mark = %+v, %v; want %+v", got, err, m)
	}
	if _, err := inv.ReadRedriveMark(ctx, "wf", 1, "m1"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("stage 1 sees stage 0's mark: %v", err)
	}
	if n, err := inv.PruneRedriveMarks(ctx, "wf", 0, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("prune before the mark: %d, %v; want 0", n, err)
	}
	if n, err := inv.PruneRedriveMarks(ctx, "wf", 0, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("prune after the mark: %d, %v; want 1", n, err)
	}
	if _, err := inv.ReadRedriveMark(ctx, "wf", 0, "m1"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("pruned mark still read: %v", err)
	}
}
