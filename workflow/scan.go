package workflow

import (
	"encoding/json"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds object/array nesting. The deepest legitimate path,
// process.algorithms[i].port[j].port, is 5 levels; 32 leaves room for
// anything reasonable while keeping recursion (and the work a hostile file
// can cause) small.
const maxDepth = 32

// lexer is a small JSON scanner over a byte slice. It exists instead of
// json.Decoder.Token because Token allocates for every value (about 60 bytes
// of garbage per byte of "[0,0,0,...]" input, measured), which breaks the
// promise that no file costs more than ~10x its size in memory; this scanner
// allocates nothing and knows the byte offset of everything it reads.
type lexer struct {
	data   []byte
	pos    int
	strLen int // decoded length of the last string read by str
}

// syntaxError is a fatal problem: after it the rest of the file cannot be
// read reliably, so checking stops.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return e.msg }

func errAt(off int, format string, args ...any) *syntaxError {
	return &syntaxError{off: off, msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (l *lexer) skipSpace() {
	for l.pos < len(l.data) && isSpace(l.data[l.pos]) {
		l.pos++
	}
}

func (l *lexer) eof() bool { return l.pos >= len(l.data) }

func (l *lexer) errEOF(what string) *syntaxError {
	return errAt(len(l.data), "unexpected end of file: %s", what)
}

// str reads a string starting at its opening quote and returns the bounds of
// its raw content and whether it holds escapes. It also sets l.strLen to the
// length of the decoded string, so limits apply to the value and not to how
// it is spelled: a re-encoded file (where json.Marshal writes "<" as \u003c)
// must pass the same limits as the original.
func (l *lexer) str() (start, end int, esc bool, err error) {
	open := l.pos
	l.pos++
	start = l.pos
	n := 0
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		switch {
		case c == '"':
			end = l.pos
			l.pos++
			l.strLen = n
			return start, end, esc, nil
		case c == '\\':
			esc = true
			if l.pos+1 >= len(l.data) {
				return 0, 0, false, l.errEOF(`string not closed: add the closing "`)
			}
			switch l.data[l.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				l.pos += 2
				n++
			case 'u':
				r, ok := l.hex4(l.pos + 2)
				if !ok {
					return 0, 0, false, errAt(l.pos, `invalid escape in string: \u needs four hex digits`)
				}
				l.pos += 6
				switch {
				case utf16.IsSurrogate(r):
					// A valid pair decodes to one 4-byte rune; a lone
					// surrogate to U+FFFD, as encoding/json does.
					if r2, ok := l.hex4(l.pos + 2); ok && r < 0xDC00 && l.data[l.pos] == '\\' && l.data[l.pos+1] == 'u' &&
						utf16.DecodeRune(r, r2) != utf8.RuneError {
						l.pos += 6
						n += 4
					} else {
						n += 3
					}
				default:
					n += utf8.RuneLen(r)
				}
			default:
				return 0, 0, false, errAt(l.pos, `invalid escape \%c in string: write a backslash as \\`, l.data[l.pos+1])
			}
		case c == '\n':
			return 0, 0, false, errAt(open, `string not closed before the end of the line: add the closing "`)
		case c < 0x20:
			return 0, 0, false, errAt(l.pos, `control character %U in a string: write it as an escape such as \n or \t`, rune(c))
		case c < utf8.RuneSelf:
			l.pos++
			n++
		default:
			// JSON text is UTF-8 (RFC 8259). encoding/json would quietly
			// turn bad bytes into U+FFFD, merging distinct keys.
			r, size := utf8.DecodeRune(l.data[l.pos:])
			if r == utf8.RuneError && size == 1 {
				return 0, 0, false, errAt(l.pos, "invalid UTF-8 in a string: save the file as UTF-8")
			}
			l.pos += size
			n += size
		}
	}
	return 0, 0, false, errAt(open, `string not closed: add the closing "`)
}

// hex4 reads the four hex digits at off, if they are there.
func (l *lexer) hex4(off int) (rune, bool) {
	if off+4 > len(l.data) {
		return 0, false
	}
	var r rune
	for _, c := range l.data[off : off+4] {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number reads a JSON number and reports whether it is written as an integer
// (no fraction, no exponent).
func (l *lexer) number() (integral bool, err error) {
	start := l.pos
	integral = true
	if l.data[l.pos] == '-' {
		l.pos++
	}
	switch {
	case l.eof() || !isDigit(l.data[l.pos]):
		return false, errAt(start, "invalid number: a digit must follow the minus sign")
	case l.data[l.pos] == '0':
		l.pos++
		if !l.eof() && isDigit(l.data[l.pos]) {
			return false, errAt(start, "invalid number: leading zeros are not allowed in JSON (quote it if it is an id)")
		}
	default:
		for !l.eof() && isDigit(l.data[l.pos]) {
			l.pos++
		}
	}
	if !l.eof() && l.data[l.pos] == '.' {
		integral = false
		l.pos++
		if l.eof() || !isDigit(l.data[l.pos]) {
			return false, errAt(start, "invalid number: a digit must follow the decimal point")
		}
		for !l.eof() && isDigit(l.data[l.pos]) {
			l.pos++
		}
	}
	if !l.eof() && (l.data[l.pos] == 'e' || l.data[l.pos] == 'E') {
		integral = false
		l.pos++
		if !l.eof() && (l.data[l.pos] == '+' || l.data[l.pos] == '-') {
			l.pos++
		}
		if l.eof() || !isDigit(l.data[l.pos]) {
			return false, errAt(start, "invalid number: a digit must follow the exponent")
		}
		for !l.eof() && isDigit(l.data[l.pos]) {
			l.pos++
		}
	}
	return integral, nil
}

// literal reads true, false or null.
func (l *lexer) literal() error {
	for _, w := range [...]string{"true", "false", "null"} {
		if len(l.data)-l.pos >= len(w) && string(l.data[l.pos:l.pos+len(w)]) == w {
			l.pos += len(w)
			return nil
		}
	}
	return errAt(l.pos, "invalid value: strings must be in double quotes; the only bare words are true, false and null")
}

// jsonKind is what a value is, judged by its first byte.
type jsonKind uint8

const (
	kindInvalid jsonKind = iota
	kindObject
	kindArray
	kindString
	kindNumber
	kindBool
	kindNull
)

func (k jsonKind) String() string {
	switch k {
	case kindObject:
		return "an object"
	case kindArray:
		return "a list"
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "true or false"
	case kindNull:
		return "null"
	}
	return "invalid"
}

func kindOf(c byte) jsonKind {
	switch {
	case c == '{':
		return kindObject
	case c == '[':
		return kindArray
	case c == '"':
		return kindString
	case c == '-' || isDigit(c):
		return kindNumber
	case c == 't' || c == 'f':
		return kindBool
	case c == 'n':
		return kindNull
	}
	return kindInvalid
}

// errValue explains a byte that cannot start a value.
func errValue(off int, c byte) *syntaxError {
	switch c {
	case '\'':
		return errAt(off, "strings must be in double quotes, not single quotes")
	case '}', ']':
		return errAt(off, "expected a value before \"%c\"", c)
	case ',':
		return errAt(off, "expected a value before \",\" (an empty entry?)")
	}
	if c >= 0x20 && c < 0x7f {
		return errAt(off, "invalid character %q: expected a value (strings must be in double quotes)", c)
	}
	return errAt(off, "invalid byte 0x%02x: expected a value", c)
}

// sep reads what follows a member or element: a comma (more follows) or the
// closing bracket.
func (l *lexer) sep(closer byte) (more bool, err error) {
	l.skipSpace()
	if l.eof() {
		return false, l.errEOF(fmt.Sprintf("missing \"%c\"", closer))
	}
	switch l.data[l.pos] {
	case ',':
		comma := l.pos
		l.pos++
		l.skipSpace()
		if !l.eof() && l.data[l.pos] == closer {
			return false, errAt(comma, "trailing comma before \"%c\": remove it", closer)
		}
		return true, nil
	case closer:
		l.pos++
		return false, nil
	}
	return false, errAt(l.pos, "expected \",\" or \"%c\" here (is a comma missing?)", closer)
}

// memberKey reads `"key":` and leaves the lexer at the member's value.
func (l *lexer) memberKey() (start, end int, esc bool, err error) {
	l.skipSpace()
	if l.eof() {
		return 0, 0, false, l.errEOF(`missing "}"`)
	}
	if l.data[l.pos] != '"' {
		if l.data[l.pos] == '}' {
			return 0, 0, false, errAt(l.pos, "trailing comma before \"}\": remove it")
		}
		if l.data[l.pos] == '\'' {
			return 0, 0, false, errAt(l.pos, "field names must be in double quotes, not single quotes")
		}
		return 0, 0, false, errAt(l.pos, "expected a field name in double quotes")
	}
	if start, end, esc, err = l.str(); err != nil {
		return 0, 0, false, err
	}
	l.skipSpace()
	if l.eof() {
		return 0, 0, false, l.errEOF(`missing ":" and value`)
	}
	if l.data[l.pos] != ':' {
		return 0, 0, false, errAt(l.pos, "expected \":\" after the field name")
	}
	l.pos++
	l.skipSpace()
	return start, end, esc, nil
}

// skipValue reads and checks one value of any shape, without a schema. depth
// is the nesting level of the container holding the value.
func (l *lexer) skipValue(depth int) error {
	if l.eof() {
		return l.errEOF("missing value")
	}
	c := l.data[l.pos]
	switch kindOf(c) {
	case kindObject:
		if depth+1 > maxDepth {
			return errDepth(l.pos)
		}
		l.pos++
		l.skipSpace()
		if !l.eof() && l.data[l.pos] == '}' {
			l.pos++
			return nil
		}
		for {
			if _, _, _, err := l.memberKey(); err != nil {
				return err
			}
			if err := l.skipValue(depth + 1); err != nil {
				return err
			}
			more, err := l.sep('}')
			if err != nil || !more {
				return err
			}
		}
	case kindArray:
		if depth+1 > maxDepth {
			return errDepth(l.pos)
		}
		l.pos++
		l.skipSpace()
		if !l.eof() && l.data[l.pos] == ']' {
			l.pos++
			return nil
		}
		for {
			l.skipSpace()
			if err := l.skipValue(depth + 1); err != nil {
				return err
			}
			more, err := l.sep(']')
			if err != nil || !more {
				return err
			}
		}
	case kindString:
		_, _, _, err := l.str()
		return err
	case kindNumber:
		_, err := l.number()
		return err
	case kindBool, kindNull:
		return l.literal()
	}
	return errValue(l.pos, c)
}

func errDepth(off int) *syntaxError {
	return errAt(off, "nested more than %d levels deep: workflow and algorithm files are shallow, is this the right file?", maxDepth)
}

// keyEqual compares a raw key (as in the file) with k, decoding escapes only
// when there are any, so the common case allocates nothing.
func keyEqual(raw []byte, esc bool, k string) bool {
	if !esc {
		return string(raw) == k
	}
	return unescape(raw) == k
}

// unescape decodes the raw content of a string that holds escapes. The input
// has already been checked by str, so decoding cannot fail.
func unescape(raw []byte) string {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(quoted, '"')
	quoted = append(quoted, raw...)
	quoted = append(quoted, '"')
	var s string
	_ = json.Unmarshal(quoted, &s)
	return s
}

// rawString returns the decoded content of the string at [start, end).
func (l *lexer) rawString(start, end int, esc bool) string {
	if esc {
		return unescape(l.data[start:end])
	}
	return string(l.data[start:end])
}
