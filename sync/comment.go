package sync

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloudpipe/cloudpipe/provision"
	"github.com/cloudpipe/cloudpipe/status"
	"github.com/cloudpipe/cloudpipe/workflow"
)

// Comment returns the plan as the Markdown of a pull-request comment (the
// body status.CommentBody then marks, scrubs and cuts): a header with the
// commit and the counts, then one section per workflow the plan creates,
// updates, deletes, holds or finds invalid, with the action, the reason,
// the resources a create or delete touches, and each validation problem
// as file:line:col: path: message, errors and notes apart; problems of
// files no workflow section shows (an algorithm no workflow uses) come
// next, then the shared Batch capacities the plan creates or tears down,
// and unchanged workflows are named on one line.
func (p *Plan) Comment() string {
	var b strings.Builder
	unchanged := []string{}
	invalid := 0
	for _, c := range p.Changes {
		switch c.Action {
		case Unchanged:
			unchanged = append(unchanged, "`"+c.Workflow+"`")
		case Invalid:
			invalid++
		}
	}
	fmt.Fprintf(&b, "### cloudpipe plan for %s\n\n", mdEscape(p.label()))
	fmt.Fprintf(&b, "**%s**, %d unchanged, %d invalid\n", p.Summary(), len(unchanged), invalid)
	shown := map[string]bool{}
	for _, c := range p.Changes {
		if c.Action == Unchanged {
			continue
		}
		fmt.Fprintf(&b, "\n#### %s `%s`: %s\n\n%s\n", actionSign(c.Action), c.Workflow, c.Action, mdEscape(oneLine(c.Reason)))
		switch c.Action {
		case Create, Update:
			writeCreates(&b, c)
		case Delete:
			writeDeletes(&b, c)
		case Invalid:
			shown[c.File] = true
			writeProblems(&b, "Errors", c.Problems.Errors())
		}
		writeProblems(&b, "Notes", c.Notes())
	}
	var other workflow.Problems
	for _, pr := range p.Problems {
		if !shown[pr.File] {
			other = append(other, pr)
		}
	}
	if len(other) > 0 {
		b.WriteString("\n#### Other files\n")
		writeProblems(&b, "Errors", other.Errors())
		writeProblems(&b, "Notes", other.Notes())
	}
	writeCapacities(&b, p.Capacities)
	if len(unchanged) > 0 {
		fmt.Fprintf(&b, "\nUnchanged: %s\n", strings.Join(unchanged, ", "))
	}
	return b.String()
}

// writeCreates lists where each stage of a created or updated workflow
// runs and, for a create, the resources it creates.
func writeCreates(b *strings.Builder, c Change) {
	w := c.Desired
	if w == nil {
		return
	}
	verb := "Resources it creates"
	if c.Action == Update {
		verb = "Resources it brings to the new spec"
	}
	fmt.Fprintf(b, "\n%s:\n", verb)
	fmt.Fprintf(b, "- input bucket `%s`, output bucket `%s`", w.InputBucket, w.OutputBucket)
	if n := len(w.Stages); n > 1 {
		fmt.Fprintf(b, ", %d intermediate buckets `cp-%s-<stage>-…`", n-1, w.Name)
	}
	b.WriteString("\n")
	for _, st := range w.Stages {
		where := st.Placement(w)
		fmt.Fprintf(b, "- stage %d `%s` (%s): %s\n", st.Index, st.Algorithm.Name, mdEscape(where.String()),
			codeList(provision.StageResourceNames(w.Name, st.Index, where.Platform == workflow.PlatformBatch)))
	}
}

// writeDeletes lists the resources a delete removes, from the stages the
// inventory records.
func writeDeletes(b *strings.Builder, c Change) {
	if c.Entry == nil || c.Entry.Stages == 0 {
		return
	}
	b.WriteString("\nResources it deletes:\n")
	for i := range c.Entry.Stages {
		fmt.Fprintf(b, "- stage %d: %s\n", i, codeList(provision.StageResourceNames(c.Workflow, i, slices.Contains(c.BatchStages, i))))
	}
	b.WriteString("- the buckets cloudpipe created, unless they hold data or the workflow retains them\n")
}

// writeCapacities lists the shared Batch capacities the plan creates or
// tears down: they outlive any one workflow, so a reviewer sees them apart.
func writeCapacities(b *strings.Builder, cs []CapacityChange) {
	if len(cs) == 0 {
		return
	}
	b.WriteString("\n#### Shared AWS Batch capacity\n\n")
	for _, c := range cs {
		what := "created, for " + codeList(prefixed("stage", c.Users))
		switch {
		case c.Action == Delete && len(c.Users) == 0:
			// An earlier pass left it without users and did not finish
			// its teardown.
			what = "deleted, no stage uses it"
		case c.Action == Delete:
			what = "deleted, its last users gone: " + codeList(prefixed("stage", c.Users))
		}
		fmt.Fprintf(b, "- %s %s (%s): %s\n", actionSign(c.Action), codeList(c.Resources()), mdEscape(c.Capacity.String()), what)
	}
}

// prefixed puts kind before each name, for codeList.
func prefixed(kind string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = kind + " " + n
	}
	return out
}

// writeProblems lists ps, one per line, in a fenced block under title.
func writeProblems(b *strings.Builder, title string, ps workflow.Problems) {
	if len(ps) == 0 {
		return
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = oneLine(p.String())
	}
	body := strings.Join(lines, "\n")
	fence := codeFence(body)
	fmt.Fprintf(b, "\n%s (%d):\n\n%s\n%s\n%s\n", title, len(ps), fence, body, fence)
}

// codeList renders "<kind> <name>" entries as "kind `name`, …".
func codeList(resources []string) string {
	out := make([]string, len(resources))
	for i, r := range resources {
		j := strings.LastIndexByte(r, ' ')
		out[i] = r[:j+1] + "`" + r[j+1:] + "`"
	}
	return strings.Join(out, ", ")
}

// codeFence returns a fence of backticks longer than any run of them in
// body, so that nothing a user wrote (a message quotes values) ends the
// block early.
func codeFence(body string) string {
	longest, run := 0, 0
	for _, r := range body {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// mdEscape escapes the characters that would make text Markdown or HTML
// (emphasis, links, code, tables, tags), so a reason reads as written. It
// removes credentials first (status.RedactText): escaping would hide their
// shape from it. Underscores are left alone: inside a word, as in names,
// they are not emphasis.
func mdEscape(s string) string {
	s = status.RedactText(s)
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*[]<>|#", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
