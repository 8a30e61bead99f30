package sync_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
	pipesync "github.com/cloudpipe/cloudpipe/sync"
)

// fakeQueues plays a stage's two queues and its tasks, and crashes the
// redrive at the n-th call of one operation (crashOp, crashAt): the
// operation fails, after taking effect when crashAfter is set, as a
// request whose answer was lost.
type fakeQueues struct {
	dlq        []provision.DeadLetterMessage
	hidden     map[string]bool // dead letters received and not visible
	work       []string        // bodies sent to the work queue
	started    int
	calls      map[string]int
	crashOp    string
	crashAt    int
	crashAfter bool
}

var errRedriveCrash = errors.New("crash")

func (q *fakeQueues) call(op string) (crash bool) {
	q.calls[op]++
	return op == q.crashOp && q.calls[op] == q.crashAt
}

func (q *fakeQueues) ReceiveDeadLetters(_ context.Context, _ provision.StageSpec, _ provision.StageResources, _ time.Duration) ([]provision.DeadLetterMessage, error) {
	var out []provision.DeadLetterMessage
	for _, m := range q.dlq {
		if !q.hidden[m.ID] && len(out) < 10 {
			q.hidden[m.ID] = true
			out = append(out, m)
		}
	}
	return out, nil
}

func (q *fakeQueues) SendWork(_ context.Context, _ provision.StageSpec, _ provision.StageResources, body, _ string) (string, error) {
	crash := q.call("send")
	if crash && !q.crashAfter {
		return "", errRedriveCrash
	}
	q.work = append(q.work, body)
	if crash {
		return "", errRedriveCrash
	}
	return fmt.Sprint("work-", len(q.work)), nil
}

func (q *fakeQueues) DeleteDeadLetter(_ context.Context, _ provision.StageSpec, _ provision.StageResources, receipt string) error {
	crash := q.call("delete")
	if crash && !q.crashAfter {
		return errRedriveCrash
	}
	q.dlq = slices.DeleteFunc(q.dlq, func(m provision.DeadLetterMessage) bool { return m.Receipt == receipt })
	if crash {
		return errRedriveCrash
	}
	return nil
}

func (q *fakeQueues) StartStageTasks(_ context.Context, _ provision.StageSpec, _ provision.StageResources, files int, _ string) (int, error) {
	q.started += min(files, 10)
	return min(files, 10), nil
}

func (q *fakeQueues) StageQueues(context.Context, provision.StageSpec, provision.StageResources) (provision.StageQueues, error) {
	return provision.StageQueues{Waiting: len(q.work), DeadLetters: len(q.dlq)}, nil
}

// fakeJournal is the redrive journal, crashing like fakeQueues.
type fakeJournal struct {
	q     *fakeQueues
	marks map[string]inventory.RedriveMark
}

func (j *fakeJournal) ReadRedriveMark(_ context.Context, _ string, _ int, id string) (*inventory.RedriveMark, error) {
	if m, ok := j.marks[id]; ok {
		return &m, nil
	}
	return nil, inventory.ErrNotFound
}

func (j *fakeJournal) WriteRedriveMark(_ context.Context, m inventory.RedriveMark) error {
	crash := j.q.call("mark")
	if crash && !j.q.crashAfter {
		return errRedriveCrash
	}
	j.marks[m.DeadLetter] = m
	if crash {
		return errRedriveCrash
	}
	return nil
}

func (j *fakeJournal) PruneRedriveMarks(context.Context, string, int, time.Time) (int, error) {
	return 0, nil
}

// redriveFixture is a deployed one-stage workflow whose dead-letter queue
// holds letters work messages for five objects and one that names none.
func redriveFixture(t *testing.T) (*inventory.Memory, *fakeQueues, *fakeJournal) {
	t.Helper()
	inv := inventory.NewMemory()
	ctx := t.Context()
	if err := inv.WriteIndex(ctx, &inventory.Index{Workflows: map[string]inventory.IndexEntry{
		"wf": {Region: "us-east-1", Stages: 1, State: inventory.StateReady}}}); err != nil {
		t.Fatal(err)
	}
	if err := inv.WriteRecord(ctx, &inventory.Record{Workflow: "wf", State: inventory.StateReady, Stages: []inventory.StageRecord{
		{Spec: provision.StageSpec{Workflow: "wf", Stage: 0}, Resources: provision.StageResources{QueueURL: "q", DLQURL: "dlq"}}}}); err != nil {
		t.Fatal(err)
	}
	q := &fakeQueues{hidden: map[string]bool{}, calls: map[string]int{}}
	for i := range 5 {
		body, _ := contract.Message{Bucket: "in", Key: fmt.Sprint("f", i)}.Encode()
		q.dlq = append(q.dlq, provision.DeadLetterMessage{ID: fmt.Sprint("m", i), Receipt: fmt.Sprint("r", i), Body: body})
	}
	q.dlq = append(q.dlq, provision.DeadLetterMessage{ID: "bad", Receipt: "rbad", Body: `{"truncated":true}`})
	return inv, q, &fakeJournal{q: q, marks: map[string]inventory.RedriveMark{}}
}

// TestRedriveCrashAtEveryStep crashes a redrive at each step of each
// letter, lets the received letters' visibility run out, and redrives
// again: no letter is lost, and each is sent once, but for the one window
// the design names (docs/design.md, "Redrive"): a send that took effect
// and whose journal write did not happen.
func TestRedriveCrashAtEveryStep(t *testing.T) {
	for _, op := range []string{"send", "mark", "delete"} {
		for _, after := range []bool{false, true} {
			for at := 1; at <= 5; at++ {
				t.Run(fmt.Sprintf("%s-%d-after-%v", op, at, after), func(t *testing.T) {
					inv, q, j := redriveFixture(t)
					q.crashOp, q.crashAt, q.crashAfter = op, at, after
					opts := pipesync.RedriveOptions{Inventory: inv, Queues: q, Journal: j, Stage: -1}
					if _, err := pipesync.Redrive(t.Context(), opts, "wf"); !errors.Is(err, errRedriveCrash) {
						t.Fatalf("first redrive: %v, want the crash", err)
					}
					clear(q.hidden) // the visibility timeout passes
					q.crashOp = ""
					res, err := pipesync.Redrive(t.Context(), opts, "wf")
					if err != nil || len(res) != 1 {
						t.Fatalf("second redrive: %+v, %v", res, err)
					}
					sent := map[string]int{}
					for _, b := range q.work {
						m, _ := contract.DecodeMessage(b)
						sent[m.Key]++
					}
					wantTwice := ""
					if op == "send" && after || op == "mark" && !after {
						wantTwice = fmt.Sprint("f", at-1) // sent, not recorded
					}
					for i := range 5 {
						key, want := fmt.Sprint("f", i), 1
						if key == wantTwice {
							want = 2
						}
						if sent[key] != want {
							t.Errorf("%s sent %d times, want %d (work queue %q)", key, sent[key], want, q.work)
						}
					}
					if len(q.dlq) != 1 || q.dlq[0].ID != "bad" || res[0].Skipped != 1 {
						t.Errorf("dead letters left %+v, result %+v; want only the one naming no object, skipped", q.dlq, res[0])
					}
				})
			}
		}
	}
}

// TestRedriveRefuses: an unknown workflow or stage is an error before
// anything is received.
func TestRedriveRefuses(t *testing.T) {
	inv, q, j := redriveFixture(t)
	for _, tc := range []struct {
		workflow string
		stage    int
		want     string
	}{
		{"nosuch", -1, "workflow nosuch: not in the inventory"},
		{"wf", 1, "workflow wf has 1 stages: no stage 1"},
	} {
		_, err := pipesync.Redrive(t.Context(), pipesync.RedriveOptions{Inventory: inv, Queues: q, Journal: j, Stage: tc.stage}, tc.workflow)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Redrive(%s, stage %d) = %v, want %q", tc.workflow, tc.stage, err, tc.want)
		}
	}
	if len(q.calls) != 0 || len(q.hidden) != 0 {
		t.Errorf("refused redrives touched the queues: %v", q.hidden)
	}
}
