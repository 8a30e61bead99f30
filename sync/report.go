package sync

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudpipe/cloudpipe/provision"
)

// Report is the outcome of one pass.
type Report struct {
	Commit   string
	Plan     *Plan
	Results  []Result // one per planned change, in the plan's order
	Duration time.Duration
}

// Result is the outcome for one workflow.
type Result struct {
	Workflow string
	File     string
	Action   Action
	Reason   string
	Teardown bool // a Delete of `agent teardown` (see Change.Teardown)
	// Drift is what the change repairs (see Change.Drift).
	Drift []Drift
	Err   error // nil on success; for Invalid, the file's problems
	// Where to upload and where results appear (set after a create or update).
	InputBucket, OutputBucket string
	// SpecHash, Region and Stages describe the spec that was applied.
	SpecHash, Region string
	Stages           int
	// KeptBuckets are buckets a delete or a replaced stage left in place
	// because they hold data (or retain_buckets asks to keep them).
	KeptBuckets []provision.KeptBucket
	Duration    time.Duration
}

// Failed counts the workflows whose apply failed. Invalid files count: their
// pipeline could not be brought to what the repository says.
func (r *Report) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Err != nil {
			n++
		}
	}
	return n
}

// WriteTable prints one line per workflow and a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tACTION\tRESULT\tDETAIL")
	for _, res := range r.Results {
		outcome, detail := "ok", res.Reason
		switch {
		case res.Err != nil:
			outcome, detail = "failed", res.Err.Error()
		case res.Action == Create || res.Action == Update:
			detail = fmt.Sprintf("upload to s3://%s · results in s3://%s", res.InputBucket, res.OutputBucket)
		case res.Action == Delete:
			detail = "torn down"
		case res.Action == Skip:
			outcome = "skipped"
		case res.Action == TornDown:
			outcome = "down"
		}
		for _, kb := range res.KeptBuckets {
			detail += fmt.Sprintf("; kept s3://%s (%s)", kb.Name, kb.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Workflow, res.Action, outcome, oneLine(detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s: %s, %d failed, in %s\n", r.Plan.label(), r.Plan.Summary(), r.Failed(), r.Duration.Round(time.Millisecond))
	return err
}

// WritePlan prints the plan: a header line, then one line per workflow,
// and under each workflow it creates or updates, where each stage runs:
//
//	plan for commit 1a2b3c4: +1 create ~0 update -0 delete, 0 unchanged
//	  + hello-sort  create  new file workflows/hello-sort.json
//	                        stage 0 sort-lines: Fargate 0.25 vCPU/512 MiB
//	  + batch compute environment cp-batch-g5-xlarge-spot (shared, us-east-1/g5.xlarge/spot)
//
// The last kind of line, after the table, is one of each shared Batch
// capacity's resources the plan creates (+) or tears down (-).
func (p *Plan) WritePlan(w io.Writer) error {
	unchanged := 0
	for _, c := range p.Changes {
		if c.Action == Unchanged {
			unchanged++
		}
	}
	fmt.Fprintf(w, "plan for %s: %s, %d unchanged\n", p.label(), p.Summary(), unchanged)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range p.Changes {
		fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", actionSign(c.Action), c.Workflow, c.Action, oneLine(c.Reason))
		if (c.Action != Create && c.Action != Update) || c.Desired == nil {
			continue
		}
		for _, st := range c.Desired.Stages {
			// Empty cells keep the line in the table's columns, under the reason.
			fmt.Fprintf(tw, "\t\tstage %d %s: %s\n", st.Index, st.Algorithm.Name, st.Placement(c.Desired))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// After the table, which a line without its columns would break: the
	// shared Batch capacities created or torn down, what a drift check
	// found, then the notes that change what the created and updated
	// pipelines do.
	for _, c := range p.Capacities {
		for _, r := range c.Resources() {
			if _, err := fmt.Fprintf(w, "  %s %s (shared, %s)\n", actionSign(c.Action), r, c.Capacity); err != nil {
				return err
			}
		}
	}
	for _, c := range p.Changes {
		for _, d := range c.Drift {
			if _, err := fmt.Fprintf(w, "  ~ drift  %s: %s\n", c.Workflow, oneLine(d.What)); err != nil {
				return err
			}
		}
	}
	for _, c := range p.Changes {
		for _, n := range c.Notes() {
			if _, err := fmt.Fprintf(w, "  %s: %s\n", c.Workflow, oneLine(n.String())); err != nil {
				return err
			}
		}
	}
	return nil
}

func actionSign(a Action) string {
	switch a {
	case Create:
		return "+"
	case Update:
		return "~"
	case Delete:
		return "-"
	case Invalid:
		return "!"
	case Skip:
		return "?"
	case TornDown:
		return "x"
	}
	return "="
}

func (p *Plan) label() string {
	if p.Label != "" {
		return p.Label
	}
	return commitLabel(p.Commit)
}

func commitLabel(commit string) string {
	if commit == "" {
		return "working tree"
	}
	return "commit " + short(commit)
}

// oneLine keeps a table row on one line: multi-line errors are joined.
func oneLine(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\n' || r == '\t' {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}

// Repaired is the description of a drift repair's status: "repaired: sqs
// queue cp-x-0 attributes reset; lambda function cp-x-0 configuration
// restored", each repair once.
func (r Result) Repaired() string {
	var parts []string
	for _, d := range r.Drift {
		if !slices.Contains(parts, d.Repair) {
			parts = append(parts, d.Repair)
		}
	}
	return "repaired: " + strings.Join(parts, "; ")
}
