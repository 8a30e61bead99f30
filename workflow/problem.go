package workflow

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Problem is one validation finding, printed as
//
//	workflows/foo.json:7:15: process.algorithms[0].variables: TEST_ENV is required by algorithm change123-s3
//
// or, for a note, with "note: " after the position.
type Problem struct {
	File  string `json:"file"`           // repository-relative path, slash-separated
	Line  int    `json:"line,omitempty"` // 1-based; 0 if unknown or about the whole file
	Col   int    `json:"col,omitempty"`  // 1-based byte column; 0 if Line is 0
	Path  string `json:"path"`           // JSON path like process.algorithms[0].variables ("" = whole file)
	Level Level  `json:"level"`          // LevelError ("" counts as one) or LevelNote
	Msg   string `json:"message"`        // says what to do
}

// Level says whether a finding stops a file from being deployed.
type Level string

const (
	// LevelError: the file is not deployed until it is fixed.
	LevelError Level = "error"
	// LevelNote: something the original cloud_pipe format allowed and
	// cloudpipe reads its own way (a default, an ignored field, a dropped
	// variable). The file is deployed; the note says what happens instead.
	LevelNote Level = "note"
)

// IsNote reports whether p is a note rather than an error.
func (p Problem) IsNote() bool { return p.Level == LevelNote }

// MarshalJSON writes the level of an error made without one as "error", so
// that every entry of `agent validate --json` names its level.
func (p Problem) MarshalJSON() ([]byte, error) {
	type plain Problem // no MarshalJSON method, so no recursion
	if p.Level == "" {
		p.Level = LevelError
	}
	return json.Marshal(plain(p))
}

// String formats p as "file:line:col: path: msg", leaving out ":line:col"
// when the position is unknown and "path: " when the problem is about the
// whole file; a note reads "file:line:col: note: path: msg", the way
// compilers mark theirs.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Col))
	}
	b.WriteString(": ")
	if p.IsNote() {
		b.WriteString("note: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is a list of findings sorted by File, Line, Col and Path. It
// implements error so a caller can return it as is; test len(ps) > 0, not
// ps != nil, before treating it as a failure. Load, ParseWorkflow and
// ParseAlgorithm return errors only (notes are in Config.Notes), so that
// test keeps its meaning; a list that mixes both is split with Errors and
// Notes.
type Problems []Problem

// Errors returns the entries of ps that are not notes.
func (ps Problems) Errors() Problems {
	return ps.filter(func(p Problem) bool { return !p.IsNote() })
}

// Notes returns the notes of ps.
func (ps Problems) Notes() Problems {
	return ps.filter(Problem.IsNote)
}

func (ps Problems) filter(keep func(Problem) bool) Problems {
	var out Problems
	for _, p := range ps {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}

// Error prints one problem per line.
func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Sort orders ps by file and position, as Load returns them.
func (ps Problems) Sort() { ps.sort() }

// sort orders ps by file and position so output is stable and reads top to
// bottom like the file; Msg breaks the remaining ties.
func (ps Problems) sort() {
	slices.SortFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
			strings.Compare(a.Path, b.Path),
			strings.Compare(a.Msg, b.Msg),
		)
	})
}

// maxProblemsPerFile caps what one file can report: a generated or mangled
// file could otherwise produce one problem per byte, and each one costs a
// position lookup over the whole file.
const maxProblemsPerFile = 50

// report collects the problems of one file. It keeps the file's bytes so a
// problem found on the decoded value (after parsing) can still be placed on
// the key or value that caused it.
type report struct {
	file  string
	data  []byte
	probs Problems // errors
	notes Problems // notes: they never make the file invalid
	full  bool     // maxProblemsPerFile reached; the rest are dropped
}

func newReport(file string, data []byte) *report {
	return &report{file: file, data: data}
}

// at records a problem at byte offset off of the file (off < 0: no position).
func (r *report) at(off int, p path, format string, args ...any) {
	if r.full {
		return
	}
	if len(r.probs) == maxProblemsPerFile {
		r.full = true
		r.probs = append(r.probs, Problem{
			File: r.file,
			Msg:  fmt.Sprintf("more than %d problems: only the first %d are shown, fix those first", maxProblemsPerFile, maxProblemsPerFile),
		})
		return
	}
	pr := Problem{File: r.file, Path: p.String(), Msg: fmt.Sprintf(format, args...)}
	if off >= 0 && off <= len(r.data) && len(r.data) > 0 {
		pr.Line, pr.Col = lineCol(r.data, off)
	}
	r.probs = append(r.probs, pr)
}

// note records a note on the key at p (placed like key; a missing field's
// note goes on the enclosing value) and returns it. Notes are few per file
// by construction (one per kind, or one per variable a step sets), so they
// are not capped.
func (r *report) note(p path, format string, args ...any) Problem {
	pr := Problem{File: r.file, Path: p.String(), Level: LevelNote, Msg: fmt.Sprintf(format, args...)}
	k, v, _ := locate(r.data, p)
	if k < 0 {
		k = v
	}
	if k >= 0 && k <= len(r.data) && len(r.data) > 0 {
		pr.Line, pr.Col = lineCol(r.data, k)
	}
	r.notes = append(r.notes, pr)
	return pr
}

// whole records a problem about the whole file, without a position.
func (r *report) whole(format string, args ...any) {
	r.at(-1, nil, format, args...)
}

// value records a problem on the value at p, or, when p is absent from the
// file (a missing field), on the closest enclosing value.
func (r *report) value(p path, format string, args ...any) {
	if r.full {
		return // skip the lookup, a scan of the whole file
	}
	_, off, _ := locate(r.data, p)
	r.at(off, p, format, args...)
}

// key records a problem on the key of the object member at p (the value when
// p is an array element).
func (r *report) key(p path, format string, args ...any) {
	if r.full {
		return
	}
	k, v, _ := locate(r.data, p)
	if k < 0 {
		k = v
	}
	r.at(k, p, format, args...)
}

// has reports whether p is in the file.
func (r *report) has(p path) bool {
	_, _, found := locate(r.data, p)
	return found
}

func (r *report) ok() bool { return len(r.probs) == 0 }

// lineCol converts a byte offset into a 1-based line and byte column.
func lineCol(data []byte, off int) (line, col int) {
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = off - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// maxQuoted bounds how much of a user's value a message repeats: a 4 KiB
// bucket name helps nobody, and messages end up in 140-character statuses.
const maxQuoted = 48

// quote returns s as a Go/JSON-style quoted string, shortened with "..." when
// long.
func quote(s string) string {
	if len(s) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// list renders names as "a, b, c", at most max of them, for messages that
// say what would have been accepted.
func list(names []string, max int) string {
	if len(names) == 0 {
		return "(none)"
	}
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(", ... (%d more)", len(names)-max)
	}
	return strings.Join(names, ", ")
}
