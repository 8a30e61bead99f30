package workflow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	slashpath "path"
	"strings"
)

// ParseWorkflow parses and checks one workflow file on its own: syntax,
// shape, field values and the workflow name taken from the file's base name.
// It does not check what needs other files (that the algorithms exist and
// accept the variables, that no other workflow uses the same buckets): Load
// does. file is the repository-relative, slash-separated path used in
// problems.
//
// It returns the workflow, or nil and the problems when there is any. The
// workflow's Stages and SpecHash are left empty: they depend on algorithms.
func ParseWorkflow(file string, data []byte) (*Workflow, Problems) {
	w, r := parseWorkflow(file, data)
	if !r.ok() {
		r.probs.sort()
		return nil, r.probs
	}
	return w, nil
}

// ParseAlgorithm parses and checks one algorithm file on its own, including
// that its name matches the file's base name. It returns the algorithm, or
// nil and the problems when there is any.
func ParseAlgorithm(file string, data []byte) (*Algorithm, Problems) {
	a, r := parseAlgorithm(file, data, nil)
	if !r.ok() {
		r.probs.sort()
		return nil, r.probs
	}
	return a, nil
}

// parseWorkflow is ParseWorkflow for Load: it also returns a workflow that
// has problems, as long as it could be decoded, so cross-file checks can
// still report on it, and the report, so they can place their problems.
func parseWorkflow(file string, data []byte) (*Workflow, *report) {
	r := newReport(file, data)
	name := baseName(file)
	if why := workflowNameProblem(name); why != "" {
		hint := "rename the file"
		if s := suggestWorkflowName(name); s != "" {
			hint += ", e.g. to " + slashpath.Join(slashpath.Dir(file), s+".json")
		}
		r.whole("workflow name %s (the file name without .json) %s: %s", quote(name), why, hint)
	}
	if !checkSize(r, len(data)) {
		return nil, r
	}
	soft, hard := checkDocument(r, workflowSchema)
	if hard {
		return nil, r
	}
	w := new(Workflow)
	if !decode(r, w, !soft) {
		return nil, r
	}
	w.Name, w.File = name, file
	normalizeWorkflow(w)
	validateWorkflow(r, w)
	return w, r
}

// parseAlgorithm is ParseAlgorithm for Load, which may pass a lookup for
// instance types the table lacks.
func parseAlgorithm(file string, data []byte, lk *typeLookup) (*Algorithm, *report) {
	r := newReport(file, data)
	if !checkSize(r, len(data)) {
		return nil, r
	}
	soft, hard := checkDocument(r, algorithmSchema)
	if hard {
		return nil, r
	}
	a := new(Algorithm)
	if !decode(r, a, !soft) {
		return nil, r
	}
	a.File = file
	normalizeAlgorithm(a)
	validateAlgorithm(r, a, lk)
	provideInjected(a)
	return a, r
}

// normalizeWorkflow gives every way of writing the same workflow the same
// decoded value, so that the value, its spec hash and its JSON re-encoding do
// not depend on the spelling: an empty list or object is nil (json.Marshal
// leaves it out), and a step's port without protocol is tcp, which is what
// Docker and ECS assume too.
func normalizeWorkflow(w *Workflow) {
	if len(w.Secrets) == 0 {
		w.Secrets = nil
	}
	for i := range w.Process.Algorithms {
		st := &w.Process.Algorithms[i]
		if len(st.Port) == 0 {
			st.Port = nil
		}
		if len(st.Variables) == 0 {
			st.Variables = nil
		}
		for j := range st.Port {
			if st.Port[j].Protocol == "" {
				st.Port[j].Protocol = "tcp"
			}
		}
	}
}

// normalizeAlgorithm is normalizeWorkflow for algorithms.
func normalizeAlgorithm(a *Algorithm) {
	if len(a.UserSpecifiedEnvironmentVariables) == 0 {
		a.UserSpecifiedEnvironmentVariables = nil
	}
	if len(a.Port) == 0 {
		a.Port = nil
	}
}

// checkSize refuses files over maxFileSize. Load checks the size before
// reading; this covers direct callers.
func checkSize(r *report, n int) bool {
	if n > maxFileSize {
		r.whole("%s", sizeMessage(int64(n)))
		return false
	}
	return true
}

func sizeMessage(n int64) string {
	return fmt.Sprintf("the file is %d bytes; workflow and algorithm files are limited to %d bytes (1 MiB): is this the right file?", n, maxFileSize)
}

// decode fills v from r's file after the schema pass accepted it. strict
// adds DisallowUnknownFields as a second line of defence; it is off only
// when the schema pass already reported the unknown fields.
func decode(r *report, v any, strict bool) bool {
	dec := json.NewDecoder(bytes.NewReader(r.data))
	if strict {
		dec.DisallowUnknownFields()
	}
	err := dec.Decode(v)
	if err == nil {
		return true
	}
	// The schema pass accepted the file, so the schema and the Go types
	// disagree: a bug, but one to report, not to panic over.
	off := -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = int(se.Offset)
	case errors.As(err, &te):
		off = int(te.Offset)
	}
	r.at(off, nil, "cannot decode the file (please report this as a cloudpipe bug): %v", err)
	return false
}

// baseName is the file's name without directory and .json extension: the
// identity of a workflow or algorithm.
func baseName(file string) string {
	return strings.TrimSuffix(slashpath.Base(file), ".json")
}
