package yamlpos

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Field is one key of a struct type as mapstructure decodes it.
type Field struct {
	Name  string // spelled as in the mapstructure tag, or the Go field name
	Index []int  // for reflect.Value.FieldByIndexErr
	Type  reflect.Type
}

// Fields lists the keys of struct type t the way mapstructure sees them:
// fields of embedded structs tagged ",squash" in their place, unexported
// fields, "-" and ",remain" left out.
func Fields(t reflect.Type) []Field {
	var out []Field
	var walk func(t reflect.Type, index []int, depth int)
	walk = func(t reflect.Type, index []int, depth int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
			if name == "-" {
				continue
			}
			idx := append(slices.Clone(index), i)
			optList := strings.Split(opts, ",")
			if slices.Contains(optList, "squash") {
				st := sf.Type
				if st.Kind() == reflect.Pointer {
					st = st.Elem()
				}
				if st.Kind() == reflect.Struct && depth < 32 {
					walk(st, idx, depth+1)
					continue
				}
			}
			if !sf.IsExported() || slices.Contains(optList, "remain") {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			out = append(out, Field{Name: name, Index: idx, Type: sf.Type})
		}
	}
	walk(t, nil, 0)
	return out
}

// fieldSet is the fields of one struct type and their names, in order.
type fieldSet struct {
	fields []Field
	names  []string
}

func (r *Reader) fieldsOf(t reflect.Type) fieldSet {
	fs, ok := r.fields[t]
	if !ok {
		fs.fields = Fields(t)
		for _, f := range fs.fields {
			fs.names = append(fs.names, f.Name)
		}
		r.fields[t] = fs
	}
	return fs
}

// IsText reports whether t decodes from a string through UnmarshalText.
func IsText(t reflect.Type) bool {
	return t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// IsScalar reports whether a value of type t is read from one scalar:
// text, durations, strings, booleans and numbers.
func IsScalar(t reflect.Type) bool {
	if IsText(t) || t == durationType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// Value reads n as a value of type t the way mapstructure decodes one,
// with struct keys named by their mapstructure tags, and returns its plain
// form: map[string]any for a struct (by tag name) or a map, []any for a
// list, and a string, bool, int64, uint64 or float64 for a scalar;
// anything else as YAML decodes it. ok is false when n cannot be used
// (reported). A null yields (nil, true): the value is left as it was. An
// unusable list item is a nil placeholder, so later items keep their index.
func (r *Reader) Value(n *yaml.Node, t reflect.Type, key string) (any, bool) {
	v := r.Node(n, key)
	if v == nil {
		return nil, false
	}
	for t.Kind() == reflect.Pointer && !IsText(t) {
		t = t.Elem()
	}
	if IsNull(v) {
		return nil, true
	}
	if IsScalar(t) {
		return r.scalar(n, v, t, key)
	}
	switch t.Kind() {
	case reflect.Struct:
		return r.structValue(n, v, t, key)
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return r.mapValue(n, v, t, key)
		}
	case reflect.Slice, reflect.Array:
		return r.listValue(n, v, t, key)
	}
	// Interfaces and anything else: the plain decoded value, for the
	// decoder to judge.
	var out any
	if err := v.Decode(&out); err != nil {
		r.Problemf(n, key, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, false
	}
	return out, true
}

func (r *Reader) mismatch(at, n *yaml.Node, t reflect.Type, key string) (any, bool) {
	r.Problemf(at, key, "expected %s, found %s", describe(t), Found(n))
	return nil, false
}

func (r *Reader) scalar(at, n *yaml.Node, t reflect.Type, key string) (any, bool) {
	if n.Kind != yaml.ScalarNode {
		return r.mismatch(at, n, t, key)
	}
	tag := n.ShortTag()
	if IsText(t) || t == durationType || t.Kind() == reflect.String || t.Kind() == reflect.Bool || tag == "!!str" {
		// Text, the way mapstructure's weak decoding reads it.
		if msg := CheckText(t, n.Value); msg != "" {
			r.Problemf(at, key, "%s", msg)
			return nil, false
		}
		if t.Kind() == reflect.Bool && !IsText(t) {
			b, _ := strconv.ParseBool(n.Value)
			return b, true
		}
		return n.Value, true
	}
	// A plain YAML number: YAML resolves it (0x1F, 1_000, .inf).
	var v any
	fits := false
	switch k, in := t.Kind(), reflect.New(t).Elem(); {
	case k >= reflect.Int && k <= reflect.Int64 && tag == "!!int":
		v, fits = decodeNumber(n, in.OverflowInt)
	case k >= reflect.Uint && k <= reflect.Uint64 && tag == "!!int":
		v, fits = decodeNumber(n, in.OverflowUint)
	case (k == reflect.Float32 || k == reflect.Float64) && (tag == "!!int" || tag == "!!float"):
		v, fits = decodeNumber(n, in.OverflowFloat)
	default:
		return r.mismatch(at, n, t, key)
	}
	if !fits {
		r.Problemf(at, key, "%s", outOfRange(t, quote(n.Value)))
		return nil, false
	}
	return v, true
}

// decodeNumber decodes a YAML number and reports whether it fits.
func decodeNumber[T int64 | uint64 | float64](n *yaml.Node, overflows func(T) bool) (T, bool) {
	var x T
	err := n.Decode(&x)
	return x, err == nil && !overflows(x)
}

func (r *Reader) structValue(at, n *yaml.Node, t reflect.Type, key string) (any, bool) {
	if n.Kind != yaml.MappingNode {
		return r.mismatch(at, n, t, key)
	}
	fs := r.fieldsOf(t)
	out := map[string]any{}
	for i, e := range r.pairs(n, key, fs.names) {
		f := fs.fields[i]
		if v, ok := r.Value(e.Value, f.Type, Join(key, f.Name)); ok && v != nil {
			out[f.Name] = v
		}
	}
	return out, true
}

func (r *Reader) mapValue(at, n *yaml.Node, t reflect.Type, key string) (any, bool) {
	if n.Kind != yaml.MappingNode {
		return r.mismatch(at, n, t, key)
	}
	out := map[string]any{}
	for _, e := range r.pairs(n, key, nil) {
		ek := Join(key, e.Name)
		v, ok := r.Value(e.Value, t.Elem(), ek)
		if !ok {
			continue
		}
		if v == nil {
			r.Problemf(e.Value, ek, "expected %s, found null", describe(t.Elem()))
			continue
		}
		out[e.Name] = v
	}
	return out, true
}

func (r *Reader) listValue(at, n *yaml.Node, t reflect.Type, key string) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		return r.mismatch(at, n, t, key)
	}
	if t.Kind() == reflect.Array && len(n.Content) != t.Len() {
		r.Problemf(at, key, "expected a list of %d items, found %d", t.Len(), len(n.Content))
		return nil, false
	}
	out := make([]any, 0, len(n.Content))
	for i, item := range n.Content {
		ik := r.opts.Style.Index(key, i)
		r.mark(ik, item)
		v, ok := r.Value(item, t.Elem(), ik)
		if ok && v == nil {
			r.Problemf(item, ik, "expected %s, found null", describe(t.Elem()))
		}
		out = append(out, v)
	}
	return out, true
}

// describe says what a value of type t looks like, for "expected ..." messages.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer && !IsText(t) {
		t = t.Elem()
	}
	switch {
	case IsText(t):
		return "a valid " + t.String()
	case t == durationType:
		return `a duration like "2s"`
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.String && !IsText(t.Elem()) {
			return "a list of strings"
		}
		return "a list"
	}
	return "a value"
}

// CheckText says what is wrong with s as the text of a value of type t,
// as mapstructure's weak decoding reads it (environment variables, flags,
// quoted YAML scalars), or returns "" when s is fine.
func CheckText(t reflect.Type, s string) string {
	for t.Kind() == reflect.Pointer && !IsText(t) {
		t = t.Elem()
	}
	bad := func() string { return fmt.Sprintf("expected %s, found %s", describe(t), quote(s)) }
	switch {
	case IsText(t):
		u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(s)); err != nil {
			return fmt.Sprintf("expected %s, found %s: %v", describe(t), quote(s), err)
		}
		return ""
	case t == durationType:
		if _, err := time.ParseDuration(s); err != nil {
			return bad()
		}
		return ""
	}
	var err error
	var fits bool
	switch t.Kind() {
	case reflect.Bool:
		if _, err := strconv.ParseBool(s); err != nil {
			return bad()
		}
		return ""
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		i, err = strconv.ParseInt(s, 0, 64)
		fits = err == nil && !reflect.New(t).Elem().OverflowInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		u, err = strconv.ParseUint(s, 0, 64)
		fits = err == nil && !reflect.New(t).Elem().OverflowUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		f, err = strconv.ParseFloat(s, 64)
		fits = err == nil && !reflect.New(t).Elem().OverflowFloat(f)
	default:
		return ""
	}
	if ne, ok := err.(*strconv.NumError); err != nil && !(ok && ne.Err == strconv.ErrRange) {
		return bad()
	}
	if !fits {
		return outOfRange(t, quote(s))
	}
	return ""
}

// outOfRange is the message for a number that does not fit t.
func outOfRange(t reflect.Type, found string) string {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("expected an integer from %d to %d, found %s",
			int64(-1)<<(bits-1), int64(1)<<(bits-1)-1, found)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("expected an integer from 0 to %d, found %s", uint64(math.MaxUint64)>>(64-bits), found)
	}
	return fmt.Sprintf("expected a number that fits in %d bits, found %s", bits, found)
}
