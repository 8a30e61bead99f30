package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// RedriveQueues moves a stage's dead letters and starts its tasks;
// provision.Provisioner is one.
type RedriveQueues interface {
	// ReceiveDeadLetters receives up to 10 dead letters, hidden from other
	// receivers for visibility.
	ReceiveDeadLetters(ctx context.Context, spec provision.StageSpec, res provision.StageResources, visibility time.Duration) ([]provision.DeadLetterMessage, error)
	// SendWork sends a work message for the dead letter redriveOf and
	// returns its id.
	SendWork(ctx context.Context, spec provision.StageSpec, res provision.StageResources, body, redriveOf string) (string, error)
	DeleteDeadLetter(ctx context.Context, spec provision.StageSpec, res provision.StageResources, receipt string) error
	// StartStageTasks starts tasks for files queued, as the stage function
	// does (its max_tasks cap), and returns how many started.
	StartStageTasks(ctx context.Context, spec provision.StageSpec, res provision.StageResources, files int, token string) (int, error)
	StageQueues
}

// RedriveJournal records the dead letters already sent back to their work
// queue; inventory.Store is one (docs/design.md, "Redrive").
type RedriveJournal interface {
	// ReadRedriveMark is inventory.ErrNotFound for a dead letter never
	// moved.
	ReadRedriveMark(ctx context.Context, workflow string, stage int, deadLetter string) (*inventory.RedriveMark, error)
	WriteRedriveMark(ctx context.Context, m inventory.RedriveMark) error
	PruneRedriveMarks(ctx context.Context, workflow string, stage int, before time.Time) (int, error)
}

// RedriveOptions are what Redrive works with.
type RedriveOptions struct {
	Inventory Inventory
	Queues    RedriveQueues
	Journal   RedriveJournal
	// Stage is the one stage to redrive; negative means every stage.
	Stage int
	// Visibility hides each received dead letter from other receivers
	// while it is moved; default DefaultRedriveVisibility.
	Visibility time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// DefaultRedriveVisibility is how long a received dead letter stays hidden
// while it is moved: a redrive that stops midway leaves the letters it had
// received and not moved visible again after it.
const DefaultRedriveVisibility = 60 * time.Second

// redriveMarkLifetime is how long a redrive mark is kept: SQS keeps a
// message at most 14 days, so a dead letter older than that cannot come
// back.
const redriveMarkLifetime = 15 * 24 * time.Hour

// maxRedriven bounds one stage's redrive, so that a queue filled as fast
// as it is emptied cannot hold the command forever; run it again for more.
const maxRedriven = 100_000

// RedriveResult is what Redrive did to one stage.
type RedriveResult struct {
	Workflow string `json:"workflow"`
	Stage    int    `json:"stage"`
	// Moved counts the dead letters sent back to the work queue and
	// deleted from the dead-letter queue by this run; Resumed those an
	// interrupted earlier run had sent, which this one only deleted.
	Moved   int `json:"moved"`
	Resumed int `json:"resumed"`
	// Skipped counts the dead letters that name no object (malformed, or a
	// record the stage function could not read): they stay in the
	// dead-letter queue for an operator to read.
	Skipped      int `json:"skipped"`
	TasksStarted int `json:"tasks_started"`
}

// Redrive sends the dead letters of workflow's stages (or of opts.Stage)
// back to their work queues and starts tasks for them, as the stage
// function does for uploads. Each dead letter is received, looked up in
// the journal, sent unless the journal says an earlier run did, recorded in
// the journal, then deleted: an interruption at any point leaves it in the
// dead-letter queue, where the next run finds it, and only the window
// between a send and its journal write can send one twice (the runner's
// conditional result write then keeps one result). It returns the results
// of the stages done, also on error.
func Redrive(ctx context.Context, opts RedriveOptions, workflow string) ([]RedriveResult, error) {
	if opts.Visibility <= 0 {
		opts.Visibility = DefaultRedriveVisibility
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	idx, err := opts.Inventory.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := idx.Workflows[workflow]; !ok {
		return nil, fmt.Errorf("workflow %s: %w in s3://%s", workflow, ErrUnknownWorkflow, opts.Inventory.Bucket())
	}
	rec, err := opts.Inventory.ReadRecord(ctx, workflow)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil, fmt.Errorf("workflow %s has no deployed stages (state %s)", workflow, idx.Workflows[workflow].State)
	}
	if err != nil {
		return nil, err
	}
	stages := rec.Stages
	if opts.Stage >= 0 {
		if opts.Stage >= len(rec.Stages) {
			return nil, fmt.Errorf("workflow %s has %d stages: no stage %d", workflow, len(rec.Stages), opts.Stage)
		}
		stages = rec.Stages[opts.Stage : opts.Stage+1]
	}
	var out []RedriveResult
	for _, st := range stages {
		r, err := redriveStage(ctx, opts, st)
		out = append(out, r)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// redriveStage moves one stage's dead letters and starts its tasks.
func redriveStage(ctx context.Context, opts RedriveOptions, st inventory.StageRecord) (RedriveResult, error) {
	spec, res := st.Spec, st.Resources
	r := RedriveResult{Workflow: spec.Workflow, Stage: spec.Stage}
	log := opts.Logger.With("workflow", spec.Workflow, "stage", spec.Stage)
	start := opts.Now()
	if n, err := opts.Journal.PruneRedriveMarks(ctx, spec.Workflow, spec.Stage, start.Add(-redriveMarkLifetime)); err != nil {
		log.Warn("old redrive marks not pruned", "err", err)
	} else if n > 0 {
		log.Debug("old redrive marks pruned", "count", n)
	}
	// skipped remembers the letters left in the queue: when a receive
	// brings only those back (their visibility ran out), every other
	// letter has been moved.
	skipped := map[string]bool{}
	for r.Moved+r.Resumed < maxRedriven {
		msgs, err := opts.Queues.ReceiveDeadLetters(ctx, spec, res, opts.Visibility)
		if err != nil {
			return r, err
		}
		fresh := 0
		for _, m := range msgs {
			if skipped[m.ID] {
				continue
			}
			fresh++
			outcome, err := redriveOne(ctx, opts, spec, res, m)
			switch {
			case err != nil:
				return r, err
			case outcome == redriveSkipped:
				skipped[m.ID] = true
				r.Skipped++
				log.Warn("dead letter names no object: left in the dead-letter queue", "message_id", m.ID)
			case outcome == redriveResumed:
				r.Resumed++
			default:
				r.Moved++
			}
		}
		if fresh == 0 {
			break
		}
	}
	files := r.Moved + r.Resumed
	if files == 0 {
		// An earlier run may have moved every letter and stopped before
		// starting tasks: start them for what waits.
		q, err := opts.Queues.StageQueues(ctx, spec, res)
		if err != nil {
			return r, err
		}
		files = q.Waiting
	}
	if files == 0 {
		return r, nil
	}
	token := fmt.Sprintf("%s/%d/%d", spec.Workflow, spec.Stage, start.UnixNano())
	started, err := opts.Queues.StartStageTasks(ctx, spec, res, files, token)
	r.TasksStarted = started
	if err != nil {
		// The files are queued: the agent's stranded-files check starts a
		// task for them if none runs (docs/design.md).
		return r, fmt.Errorf("%d files queued again, but: %w", files, err)
	}
	return r, nil
}

type redriveOutcome int

const (
	redriveMoved redriveOutcome = iota
	redriveResumed
	redriveSkipped
)

// redriveOne moves one dead letter: send (unless the journal has it),
// record, delete. The order is what makes a crash safe: see Redrive.
func redriveOne(ctx context.Context, opts RedriveOptions, spec provision.StageSpec, res provision.StageResources, m provision.DeadLetterMessage) (redriveOutcome, error) {
	dl, err := contract.DecodeDeadLetter(m.Body)
	if err != nil || dl.Bucket == "" || dl.Key == "" {
		return redriveSkipped, nil
	}
	outcome := redriveMoved
	_, err = opts.Journal.ReadRedriveMark(ctx, spec.Workflow, spec.Stage, m.ID)
	switch {
	case err == nil:
		outcome = redriveResumed
	case !errors.Is(err, inventory.ErrNotFound):
		return 0, err
	default:
		// A Lambda invocation record becomes the work message of its
		// object, as the stage function would have sent it; the other
		// dead letters are work messages already, sent as they are read.
		body, err := dl.Message.Encode()
		if err != nil {
			return redriveSkipped, nil
		}
		id, err := opts.Queues.SendWork(ctx, spec, res, body, m.ID)
		if err != nil {
			return 0, err
		}
		mark := inventory.RedriveMark{Workflow: spec.Workflow, Stage: spec.Stage, DeadLetter: m.ID, WorkMessage: id,
			Object: "s3://" + dl.Bucket + "/" + dl.Key, MovedAt: opts.Now().UTC()}
		if err := opts.Journal.WriteRedriveMark(ctx, mark); err != nil {
			return 0, err
		}
	}
	if err := opts.Queues.DeleteDeadLetter(ctx, spec, res, m.Receipt); err != nil {
		return 0, err
	}
	return outcome, nil
}

// WriteRedriveTable prints one line per stage redriven.
func WriteRedriveTable(w io.Writer, results []RedriveResult) error {
	for _, r := range results {
		if _, err := fmt.Fprintf(w, "%s stage %d: %d moved, %d resumed, %d tasks started, %d skipped\n",
			r.Workflow, r.Stage, r.Moved, r.Resumed, r.TasksStarted, r.Skipped); err != nil {
			return err
		}
	}
	return nil
}
