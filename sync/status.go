package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudpipe/cloudpipe/internal/contract"
	"github.com/cloudpipe/cloudpipe/inventory"
	"github.com/cloudpipe/cloudpipe/provision"
)

// ErrUnknownWorkflow: a workflow named on the command line that the
// inventory does not record.
var ErrUnknownWorkflow = errors.New("not in the inventory")

// StageQueues counts what a deployed stage's queues hold;
// provision.Provisioner is one.
type StageQueues interface {
	StageQueues(ctx context.Context, spec provision.StageSpec, res provision.StageResources) (provision.StageQueues, error)
}

// StatusSource is what `agent status` reads: the inventory and the run
// records in the state bucket, and the stages' queues. Nothing else, so a
// read-only policy serves it (docs/operations.md).
type StatusSource struct {
	Inventory Inventory
	Runs      RunRecords
	Queues    StageQueues
}

// WorkflowStatus is one workflow as `agent status` shows it. The JSON
// names are a contract for scripts (docs/cli.md, status): fields are
// added, never renamed or removed.
type WorkflowStatus struct {
	Workflow string `json:"workflow"`
	// State is the inventory's: applying, deleting, ready, failed or
	// torn-down.
	State  string `json:"state"`
	Commit string `json:"commit,omitempty"` // of the last successful apply
	Region string `json:"region"`
	// InputBucket is the first stage's input, OutputBucket the last
	// stage's output: where users upload and collect.
	InputBucket  string `json:"input_bucket,omitempty"`
	OutputBucket string `json:"output_bucket,omitempty"`
	// Done counts the last stage's successful runs; Failed every stage's
	// failed runs (one per failed delivery: a file tried three times
	// counts three), from the run records.
	Done   int `json:"done"`
	Failed int `json:"failed"`
	// Waiting and InFlight sum the work queues' messages not received and
	// received; DeadLetters the dead-letter queues'.
	Waiting     int `json:"waiting"`
	InFlight    int `json:"in_flight"`
	DeadLetters int `json:"dead_letters"`
	// Error is why the last apply failed (state failed), and NextRetry
	// when the agent's loop tries it again, if it recorded one.
	Error     string     `json:"error,omitempty"`
	NextRetry *time.Time `json:"next_retry,omitempty"`
	// LastRunError is the newest failed run's error, and LastRunErrorAt
	// when it finished.
	LastRunError   string        `json:"last_run_error,omitempty"`
	LastRunErrorAt *time.Time    `json:"last_run_error_at,omitempty"`
	UpdatedAt      time.Time     `json:"updated_at"`
	Stages         []StageStatus `json:"stages"`
}

// StageStatus is one stage of a WorkflowStatus.
type StageStatus struct {
	Stage        int    `json:"stage"`
	Algorithm    string `json:"algorithm"`
	InputBucket  string `json:"input_bucket"`
	OutputBucket string `json:"output_bucket"`
	Done         int    `json:"done"` // successful runs of this stage
	Failed       int    `json:"failed"`
	Waiting      int    `json:"waiting"`
	InFlight     int    `json:"in_flight"`
	DeadLetters  int    `json:"dead_letters"`
	// Error says why the counts could not be read (they are then 0).
	Error string `json:"error,omitempty"`
}

// Status reads the status of the workflows named, or of every workflow the
// inventory records, in name order. A name the inventory lacks is
// ErrUnknownWorkflow, before anything else is read. A stage whose queues or
// run records cannot be read is reported in its Error and in the returned
// error, after the statuses of everything that could be read.
func Status(ctx context.Context, src StatusSource, names []string) ([]WorkflowStatus, error) {
	idx, err := src.Inventory.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	var unknown []string
	for _, n := range names {
		if _, ok := idx.Workflows[n]; !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("workflow %s: %w in s3://%s (see 'agent status' for those deployed)",
			strings.Join(unknown, ", "), ErrUnknownWorkflow, src.Inventory.Bucket())
	}
	if len(names) == 0 {
		for n := range idx.Workflows {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]WorkflowStatus, 0, len(names))
	var errs []error
	for _, n := range names {
		ws, err := workflowStatus(ctx, src, n, idx.Workflows[n])
		out = append(out, ws)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// workflowStatus reads one workflow's record, run records and queues.
func workflowStatus(ctx context.Context, src StatusSource, name string, e inventory.IndexEntry) (WorkflowStatus, error) {
	ws := WorkflowStatus{Workflow: name, State: string(e.State), Commit: e.Commit, Region: e.Region,
		Error: e.Error, UpdatedAt: e.UpdatedAt, Stages: []StageStatus{}}
	if !e.NextRetry.IsZero() && e.State == inventory.StateFailed {
		at := e.NextRetry
		ws.NextRetry = &at
	}
	rec, err := src.Inventory.ReadRecord(ctx, name)
	if errors.Is(err, inventory.ErrNotFound) {
		return ws, nil // torn down, or never got as far as a record
	}
	if err != nil {
		return ws, err
	}
	var errs []error
	var lastFailed string
	for i, st := range rec.Stages {
		ss := StageStatus{Stage: st.Spec.Stage, Algorithm: st.Spec.Algorithm.Name,
			InputBucket: st.Spec.InputBucket, OutputBucket: st.Spec.OutputBucket}
		var problems []string
		if src.Runs != nil {
			keys, err := src.Runs.ListRunKeys(ctx, name, st.Spec.Stage, "")
			if err != nil {
				problems = append(problems, err.Error())
			}
			for _, k := range keys {
				info, ok := contract.ParseRunRecordKey(k)
				switch {
				case !ok:
				case info.Outcome == contract.OutcomeOK:
					ss.Done++
				default:
					ss.Failed++
					// Keys sort by finishing time within a stage; across
					// stages, compare the times.
					if lastFailed == "" || newerRun(k, lastFailed) {
						lastFailed = k
					}
				}
			}
		}
		if st.Resources.QueueURL != "" {
			q, err := src.Queues.StageQueues(ctx, st.Spec, st.Resources)
			if err != nil {
				problems = append(problems, err.Error())
			}
			ss.Waiting, ss.InFlight, ss.DeadLetters = q.Waiting, q.InFlight, q.DeadLetters
		}
		if len(problems) > 0 {
			ss.Error = strings.Join(problems, "; ")
			errs = append(errs, fmt.Errorf("status of %s stage %d: %s", name, ss.Stage, ss.Error))
		}
		if i == 0 {
			ws.InputBucket = ss.InputBucket
		}
		ws.OutputBucket = ss.OutputBucket
		if i == len(rec.Stages)-1 {
			ws.Done = ss.Done
		}
		ws.Failed += ss.Failed
		ws.Waiting += ss.Waiting
		ws.InFlight += ss.InFlight
		ws.DeadLetters += ss.DeadLetters
		ws.Stages = append(ws.Stages, ss)
	}
	if lastFailed != "" {
		var run contract.RunRecord
		if err := src.Runs.ReadRun(ctx, lastFailed, &run); err != nil {
			errs = append(errs, fmt.Errorf("status of %s: %w", name, err))
		} else {
			at := run.Finished
			ws.LastRunError, ws.LastRunErrorAt = run.Error, &at
		}
	}
	return ws, errors.Join(errs...)
}

// newerRun reports whether run record key a finished after b.
func newerRun(a, b string) bool {
	ia, _ := contract.ParseRunRecordKey(a)
	ib, _ := contract.ParseRunRecordKey(b)
	return ia.Finished.After(ib.Finished)
}

// WriteStatusJSON prints statuses as one JSON array, indented.
func WriteStatusJSON(w io.Writer, statuses []WorkflowStatus) error {
	if statuses == nil {
		statuses = []WorkflowStatus{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(statuses)
}

// WriteStatusTable prints one aligned line per workflow and, for a
// workflow of several stages, one indented line per stage. now dates the
// next retry ("in 1m30s").
func WriteStatusTable(w io.Writer, statuses []WorkflowStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tSTATE\tCOMMIT\tINPUT\tOUTPUT\tDONE\tFAILED\tWAITING\tDEAD\tNEXT RETRY\tLAST ERROR")
	for _, s := range statuses {
		retry := "-"
		if s.NextRetry != nil {
			retry = "in " + max(0, s.NextRetry.Sub(now)).Round(time.Second).String()
		}
		lastErr := s.Error
		if lastErr == "" {
			lastErr = s.LastRunError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\t%s\n", s.Workflow, s.State, orDash(short(s.Commit)),
			orDash(s.InputBucket), orDash(s.OutputBucket), s.Done, s.Failed, waiting(s.Waiting, s.InFlight), s.DeadLetters,
			retry, orDash(cell(lastErr)))
		if len(s.Stages) < 2 {
			continue
		}
		for _, st := range s.Stages {
			e := "-"
			if st.Error != "" {
				e = cell(st.Error)
			}
			fmt.Fprintf(tw, "  stage %d\t%s\t\t%s\t%s\t%d\t%d\t%s\t%d\t\t%s\n", st.Stage, st.Algorithm,
				st.InputBucket, st.OutputBucket, st.Done, st.Failed, waiting(st.Waiting, st.InFlight), st.DeadLetters, e)
		}
	}
	return tw.Flush()
}

// waiting shows files queued, and those being worked on after a "+".
func waiting(queued, inFlight int) string {
	if inFlight == 0 {
		return strconv.Itoa(queued)
	}
	return strconv.Itoa(queued) + "+" + strconv.Itoa(inFlight)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell keeps a table cell one line and of reasonable width.
func cell(s string) string {
	s = strings.Join(strings.Fields(oneLine(s)), " ")
	if r := []rune(s); len(r) > 100 {
		s = string(r[:99]) + "…"
	}
	return s
}
