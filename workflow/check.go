package workflow

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// checker walks one file against a schema (schema.go) and reports what does
// not fit, each at the offending key or value. It allocates only for what it
// reports and for the keys of free-form maps, whose number the schema caps.
type checker struct {
	lexer
	r     *report
	stack path // path of the value being read; left as is on a syntax error
	// soft problems (unknown field, duplicate key) still let the file be
	// decoded, so the semantic checks can report more at once; hard ones
	// (wrong type, missing field, over a limit, bad syntax) do not.
	soft, hard bool
}

// problem reports at off with the current path.
func (c *checker) problem(off int, hard bool, format string, args ...any) {
	if hard {
		c.hard = true
	} else {
		c.soft = true
	}
	c.r.at(off, c.stack, format, args...)
}

// checkDocument runs the schema pass over r's file and reports whether the
// file may be decoded (no hard problem) and whether it must be decoded
// leniently (soft problems only).
func checkDocument(r *report, s *schema) (soft, hard bool) {
	c := &checker{lexer: lexer{data: r.data}, r: r}
	if len(c.data) >= 3 && c.data[0] == 0xEF && c.data[1] == 0xBB && c.data[2] == 0xBF {
		c.problem(0, true, "the file starts with a byte order mark (BOM): save it as UTF-8 without BOM")
		return c.soft, c.hard
	}
	c.skipSpace()
	if c.eof() {
		c.hard = true
		r.whole("the file is empty: it must hold one JSON object {...}")
		return c.soft, c.hard
	}
	if k := kindOf(c.data[c.pos]); k != kindObject {
		if k == kindInvalid {
			err := errValue(c.pos, c.data[c.pos])
			c.problem(err.off, true, "%s", err.msg)
		} else {
			c.problem(c.pos, true, "the file must hold one JSON object {...}, not %s", k)
		}
		return c.soft, c.hard
	}
	if err := c.value(s, 0, nil); err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			c.problem(se.off, true, "%s", se.msg)
		} else {
			c.problem(-1, true, "%v", err)
		}
		return c.soft, c.hard
	}
	c.skipSpace()
	if !c.eof() {
		c.stack = nil
		c.problem(c.pos, true, "unexpected data after the end of the top-level object: a file holds exactly one JSON object")
	}
	return c.soft, c.hard
}

// value checks the value at the current position against s (nil: any value,
// only its syntax is checked). depth is the nesting level of the container
// holding the value; f is the object field holding it, nil for list elements
// and map values.
func (c *checker) value(s *schema, depth int, f *field) error {
	if c.eof() {
		return c.errEOF("missing value")
	}
	start := c.pos
	k := kindOf(c.data[start])
	if k == kindInvalid {
		return errValue(start, c.data[start])
	}
	if s == nil {
		return c.skipValue(depth)
	}
	if k == kindObject && s.emptyObject {
		if err := c.skipValue(depth); err != nil {
			return err
		}
		if !emptyObject(c.data[start:c.pos]) {
			c.problem(start, true, "must be %s, or {} to leave it unset, not an object with fields", s.want())
		}
		return nil
	}
	if !s.accepts(k) {
		if err := c.skipValue(depth); err != nil {
			return err
		}
		hint := ""
		switch {
		case f != nil && f.typeHint != "":
			hint = f.typeHint
		case k == kindNull && f != nil && !f.required:
			hint = "; to leave it unset, remove the field"
		}
		c.problem(start, true, "must be %s, not %s%s", s.want(), k, hint)
		return nil
	}
	switch k {
	case kindObject:
		if depth+1 > maxDepth {
			return errDepth(start)
		}
		switch s.shape {
		case shapeMap:
			return c.mapValue(s, depth+1)
		case shapePort:
			return c.object(s.elem, depth+1)
		}
		return c.object(s, depth+1)
	case kindArray:
		if depth+1 > maxDepth {
			return errDepth(start)
		}
		return c.list(s, depth+1)
	case kindString:
		if _, _, _, err := c.str(); err != nil {
			return err
		}
		if s.max > 0 && c.strLen > s.max {
			c.problem(start, true, "is %d bytes long; at most %d are allowed here", c.strLen, s.max)
		}
		return nil
	case kindNumber:
		integral, err := c.number()
		if err != nil {
			return err
		}
		c.checkNumber(s, start, integral)
		return nil
	}
	return c.literal()
}

// checkNumber applies the Go type's limits to a number literal, so decoding
// cannot fail on a range error after the schema pass accepted the file.
func (c *checker) checkNumber(s *schema, start int, integral bool) {
	text := c.data[start:c.pos]
	if len(text) > maxNumberLen {
		c.problem(start, true, "is a %d-digit number; that is too long for any setting here", len(text))
		return
	}
	if s.shape == shapeNumber {
		if _, err := strconv.ParseFloat(string(text), 64); err != nil {
			c.problem(start, true, "number %s is out of range", text)
		}
		return
	}
	if !integral {
		c.problem(start, true, "must be a whole number, not %s", text)
		return
	}
	if _, err := strconv.ParseInt(string(text), 10, 32); err != nil {
		c.problem(start, true, "number %s is out of range", text)
	}
}

// object checks an object with fixed fields.
func (c *checker) object(s *schema, depth int) error {
	open := c.pos
	c.pos++
	var seen uint64 // bit i: field i was present
	c.skipSpace()
	if c.eof() {
		return c.errEOF(`missing "}"`)
	}
	if c.data[c.pos] == '}' {
		c.pos++
	} else {
		for {
			ks, ke, esc, err := c.memberKey()
			if err != nil {
				return err
			}
			i := s.fieldIndex(c.data[ks:ke], esc)
			switch {
			case i < 0:
				var name string
				if !c.r.full { // spend nothing on names no one will see
					name = c.rawString(ks, ke, esc)
				}
				c.stack = append(c.stack, seg{key: name, index: -1})
				if c.r.full {
					c.soft = true
				} else {
					c.problem(ks-1, false, "%s", unknownField(name, s))
				}
				// Check the syntax of its value, nothing else: the field
				// means nothing to us.
				if err := c.skipValue(depth); err != nil {
					return err
				}
				c.stack = c.stack[:len(c.stack)-1]
			default:
				f := &s.fields[i]
				c.stack = append(c.stack, seg{key: f.name, index: -1})
				if seen&(1<<i) != 0 {
					c.problem(ks-1, false, "duplicate field %q: remove one of them (only the last one would count)", f.name)
				}
				seen |= 1 << i
				if err := c.value(f.s, depth, f); err != nil {
					return err
				}
				c.stack = c.stack[:len(c.stack)-1]
			}
			more, err := c.sep('}')
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
	}
	for i, f := range s.fields {
		if f.required && seen&(1<<i) == 0 {
			c.stack = append(c.stack, seg{key: f.name, index: -1})
			c.problem(open, true, "required field is missing: add \"%s\": %s", f.name, f.example)
			c.stack = c.stack[:len(c.stack)-1]
		}
	}
	return nil
}

// mapValue checks an object with free-form keys, such as variables.
func (c *checker) mapValue(s *schema, depth int) error {
	open := c.pos
	c.pos++
	c.skipSpace()
	if c.eof() {
		return c.errEOF(`missing "}"`)
	}
	if c.data[c.pos] == '}' {
		c.pos++
		return nil
	}
	var seen map[string]struct{}
	for n := 0; ; n++ {
		ks, ke, esc, err := c.memberKey()
		if err != nil {
			return err
		}
		switch {
		case n >= s.max:
			// Over the limit: check the syntax only, and spend no memory
			// on keys.
			if n == s.max {
				c.problem(open, true, "has more than %d %s: that is the limit", s.max, s.items)
			}
			if err := c.skipValue(depth); err != nil {
				return err
			}
		case c.strLen > maxKeyLen:
			c.stack = append(c.stack, seg{key: c.rawString(ks, ks+maxQuoted+1, false), index: -1})
			c.problem(ks-1, true, "key is %d bytes long; at most %d are allowed", c.strLen, maxKeyLen)
			if err := c.skipValue(depth); err != nil {
				return err
			}
			c.stack = c.stack[:len(c.stack)-1]
		default:
			key := c.rawString(ks, ke, esc)
			c.stack = append(c.stack, seg{key: key, index: -1})
			if seen == nil {
				seen = make(map[string]struct{})
			}
			if _, dup := seen[key]; dup {
				c.problem(ks-1, false, "duplicate key %s: remove one of them (only the last one would count)", quote(key))
			}
			seen[key] = struct{}{}
			if err := c.value(s.elem, depth, nil); err != nil {
				return err
			}
			c.stack = c.stack[:len(c.stack)-1]
		}
		more, err := c.sep('}')
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// list checks an array.
func (c *checker) list(s *schema, depth int) error {
	open := c.pos
	c.pos++
	c.skipSpace()
	if c.eof() {
		return c.errEOF(`missing "]"`)
	}
	if c.data[c.pos] == ']' {
		c.pos++
		return nil
	}
	for i := 0; ; i++ {
		c.skipSpace()
		if i >= s.max {
			if i == s.max {
				c.problem(open, true, "has more than %d %s: that is the limit", s.max, s.items)
			}
			if err := c.skipValue(depth); err != nil {
				return err
			}
		} else {
			c.stack = append(c.stack, seg{index: i})
			if err := c.value(s.elem, depth, nil); err != nil {
				return err
			}
			c.stack = c.stack[:len(c.stack)-1]
		}
		more, err := c.sep(']')
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// emptyObject reports whether raw, a syntactically valid object, is {} with
// nothing but white space inside.
func emptyObject(raw []byte) bool {
	return len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

// unknownField says what to do about a field the format does not have:
// usually a typo, so suggest the nearest known name.
func unknownField(name string, s *schema) string {
	known := s.fieldNames()
	if guess := closest(name, known); guess != "" {
		return "unknown field " + quote(name) + ": did you mean \"" + guess + "\"?"
	}
	return "unknown field " + quote(name) + ": remove it; the fields here are " + strings.Join(known, ", ")
}
