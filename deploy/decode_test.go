package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// decodeAPIJSON decodes data, a request in an AWS JSON-protocol service's
// wire format (what `aws ecs register-task-definition --cli-input-json`
// takes), into v, a pointer to the SDK's input struct. The SDK structs carry
// no JSON tags; ECS names every member after its Go field with the first
// letter lowercased (executionRoleArn -> ExecutionRoleArn), which is the
// mapping used here.
//
// It is as strict as json.Decoder with DisallowUnknownFields, and stricter:
// an unknown or misspelt key, a duplicate key, a wrong type, a number out of
// range, or a value an SDK enum does not list is an error naming its JSON
// path. The AWS CLI refuses unknown keys too; this catches them in a test.
func decodeAPIJSON(data []byte, v any) error {
	if err := checkDuplicateKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the top-level value")
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decodeAPIJSON needs a non-nil pointer, got %T", v)
	}
	return assign(rv.Elem(), raw, "$")
}

func assign(dst reflect.Value, raw any, path string) error {
	t := dst.Type()
	if raw == nil {
		return fmt.Errorf("%s: null is not allowed: leave the key out", path)
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		if err := assign(p.Elem(), raw, path); err != nil {
			return err
		}
		dst.Set(p)
		return nil
	case reflect.Struct:
		obj, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object for %s, got %s", path, t.Name(), jsonKind(raw))
		}
		for _, key := range sortedKeys(obj) {
			f, ok := apiField(t, key)
			if !ok {
				return fmt.Errorf("%s.%s: unknown field of %s (known: %s)", path, key, t.Name(), strings.Join(apiFieldNames(t), ", "))
			}
			if err := assign(dst.FieldByIndex(f.Index), obj[key], path+"."+key); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("%s: want a list, got %s", path, jsonKind(raw))
		}
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, e := range list {
			if err := assign(s.Index(i), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		dst.Set(s)
		return nil
	case reflect.Map:
		obj, ok := raw.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return fmt.Errorf("%s: want an object, got %s", path, jsonKind(raw))
		}
		m := reflect.MakeMapWithSize(t, len(obj))
		for _, k := range sortedKeys(obj) {
			e := reflect.New(t.Elem()).Elem()
			if err := assign(e, obj[k], path+"."+k); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
		dst.Set(m)
		return nil
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %s", path, jsonKind(raw))
		}
		if allowed := enumValues(t); allowed != nil && !slices.Contains(allowed, s) {
			return fmt.Errorf("%s: %q is not a %s; one of %s", path, s, t.Name(), strings.Join(allowed, ", "))
		}
		dst.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return fmt.Errorf("%s: want true or false, got %s", path, jsonKind(raw))
		}
		dst.SetBool(b)
		return nil
	case reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := raw.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want a whole number, got %s", path, jsonKind(raw))
		}
		i, err := strconv.ParseInt(n.String(), 10, t.Bits())
		if err != nil {
			return fmt.Errorf("%s: %s is not a %d-bit whole number", path, n, t.Bits())
		}
		dst.SetInt(i)
		return nil
	case reflect.Float64, reflect.Float32:
		n, ok := raw.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want a number, got %s", path, jsonKind(raw))
		}
		f, err := strconv.ParseFloat(n.String(), t.Bits())
		if err != nil {
			return fmt.Errorf("%s: %s: %v", path, n, err)
		}
		dst.SetFloat(f)
		return nil
	}
	return fmt.Errorf("%s: %s values are not supported by this decoder", path, t)
}

// apiField finds the exported field of t that key names on the wire.
func apiField(t reflect.Type, key string) (reflect.StructField, bool) {
	if key == "" || key[0] < 'a' || key[0] > 'z' {
		return reflect.StructField{}, false // wire names start lowercase
	}
	f, ok := t.FieldByName(strings.ToUpper(key[:1]) + key[1:])
	if !ok || !f.IsExported() {
		return reflect.StructField{}, false
	}
	return f, true
}

func apiFieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, strings.ToLower(f.Name[:1])+f.Name[1:])
		}
	}
	return names
}

// enumValues returns the values an SDK enum type lists (its Values method),
// or nil for a plain string.
func enumValues(t reflect.Type) []string {
	if t.PkgPath() == "" {
		return nil
	}
	m, ok := t.MethodByName("Values")
	if !ok || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 || m.Type.Out(0).Kind() != reflect.Slice {
		return nil
	}
	vals := m.Func.Call([]reflect.Value{reflect.Zero(t)})[0]
	out := make([]string, vals.Len())
	for i := range out {
		out[i] = vals.Index(i).String()
	}
	return out
}

func jsonKind(raw any) string {
	switch raw.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkDuplicateKeys walks data's tokens and fails on an object with the same
// key twice, which encoding/json would silently resolve to the last one.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object    bool
		keys      map[string]bool
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{object: tok == '{', keys: map[string]bool{}, expectKey: true})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].expectKey = true
				}
			}
		default:
			if top == nil || !top.object {
				continue
			}
			if top.expectKey {
				k := tok.(string)
				if top.keys[k] {
					return fmt.Errorf("duplicate key %q", k)
				}
				top.keys[k] = true
				top.expectKey = false
			} else {
				top.expectKey = true
			}
		}
	}
}
