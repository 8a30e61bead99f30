package workflow

import (
	"strconv"
	"strings"
)

// seg is one step of a JSON path: an object key, or an array index when
// index >= 0.
type seg struct {
	key   string
	index int
}

// path is a JSON path from the top-level object, e.g. process.algorithms[0].
// Its methods never modify the receiver's backing array, so a path can be
// extended in a loop without the results aliasing each other.
type path []seg

func (p path) key(k string) path {
	return append(p[:len(p):len(p)], seg{key: k, index: -1})
}

func (p path) index(i int) path {
	return append(p[:len(p):len(p)], seg{index: i})
}

// String renders p for people: keys joined by dots, indexes in brackets, and
// keys that would be ambiguous in that notation quoted, like
// secrets["my.key"]. Very long keys are shortened.
func (p path) String() string {
	var b strings.Builder
	for i, s := range p {
		switch {
		case s.index >= 0:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		case plainKey(s.key):
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
		default:
			b.WriteByte('[')
			b.WriteString(quote(s.key))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// plainKey reports whether k can be written after a dot without quoting.
func plainKey(k string) bool {
	if k == "" || len(k) > maxQuoted {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// locate finds p in data, a document that already passed the schema pass,
// and returns the byte offsets of the member's key (-1 for an array element
// or the root) and of its value. When p is not in the document (found is
// false), for example a missing field, it returns the closest enclosing
// value, so the problem points at the opening brace of the object the field
// belongs in.
//
// Positions are looked up only when a problem is reported, which keeps the
// happy path free of a position index that would cost memory per value.
func locate(data []byte, p path) (keyOff, valOff int, found bool) {
	l := lexer{data: data}
	l.skipSpace()
	keyOff, valOff = -1, l.pos
	for _, s := range p {
		if l.pos >= len(data) {
			return keyOff, valOff, false
		}
		var found bool
		if s.index >= 0 {
			found = l.findIndex(s.index)
		} else {
			var k int
			k, found = l.findKey(s.key)
			if found {
				keyOff = k
			}
		}
		if !found {
			return keyOff, valOff, false
		}
		if s.index >= 0 {
			keyOff = -1
		}
		valOff = l.pos
	}
	return keyOff, valOff, true
}

// findIndex moves from an array's '[' to the start of element i.
func (l *lexer) findIndex(i int) bool {
	if l.data[l.pos] != '[' {
		return false
	}
	l.pos++
	for n := 0; ; n++ {
		l.skipSpace()
		if l.pos >= len(l.data) || l.data[l.pos] == ']' {
			return false
		}
		if n == i {
			return true
		}
		if l.skipValue(0) != nil {
			return false
		}
		l.skipSpace()
		if l.pos >= len(l.data) || l.data[l.pos] != ',' {
			return false
		}
		l.pos++
	}
}

// findKey moves from an object's '{' to the value of member k and returns the
// offset of its key.
func (l *lexer) findKey(k string) (int, bool) {
	if l.data[l.pos] != '{' {
		return -1, false
	}
	l.pos++
	for {
		l.skipSpace()
		if l.pos >= len(l.data) || l.data[l.pos] != '"' {
			return -1, false
		}
		keyOff := l.pos
		s, e, esc, err := l.str()
		if err != nil {
			return -1, false
		}
		l.skipSpace()
		if l.pos >= len(l.data) || l.data[l.pos] != ':' {
			return -1, false
		}
		l.pos++
		l.skipSpace()
		if keyEqual(l.data[s:e], esc, k) {
			return keyOff, true
		}
		if l.skipValue(0) != nil {
			return -1, false
		}
		l.skipSpace()
		if l.pos >= len(l.data) || l.data[l.pos] != ',' {
			return -1, false
		}
		l.pos++
	}
}
