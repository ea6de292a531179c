package configfile

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// field is one config key of a struct type, after squashing embedded structs.
type field struct {
	name  string // spelled as in the mapstructure tag, or the Go field name
	index []int  // for reflect.Value.FieldByIndexErr
	typ   reflect.Type
}

// fieldsOf lists the keys of struct type t the way mapstructure sees them.
func fieldsOf(t reflect.Type) []field {
	var out []field
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
			out = append(out, field{name: name, index: idx, typ: sf.Type})
		}
	}
	walk(t, nil, 0)
	return out
}

// lookupField finds key among fields the way mapstructure does: exactly, or
// else ignoring case.
func lookupField(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return field{}, false
}

// isText reports whether t decodes from a string through UnmarshalText.
func isText(t reflect.Type) bool {
	return t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textUnmarshalerType)
}

// isLeaf reports whether a value of type t is set from a single string, so
// an environment variable or a flag can set it.
func isLeaf(t reflect.Type) bool {
	if isText(t) || t == durationType {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String && !isText(t.Elem())
	case reflect.Pointer:
		return isLeaf(t.Elem())
	}
	return false
}

// leaf is a key an environment variable or a flag can set.
type leaf struct {
	segs []string // path from the root, tag spelling
	typ  reflect.Type
}

func (l leaf) path() string { return strings.Join(l.segs, ".") }

// leavesOf lists the leaf keys of struct type t, through nested structs and
// pointers to structs but not through lists or maps.
func leavesOf(t reflect.Type) []leaf {
	var out []leaf
	var onPath []reflect.Type // guards against recursive types
	var walk func(t reflect.Type, segs []string)
	walk = func(t reflect.Type, segs []string) {
		if slices.Contains(onPath, t) {
			return
		}
		onPath = append(onPath, t)
		defer func() { onPath = onPath[:len(onPath)-1] }()
		for _, f := range fieldsOf(t) {
			s := append(slices.Clone(segs), f.name)
			ft := f.typ
			for ft.Kind() == reflect.Pointer && !isLeaf(ft) {
				ft = ft.Elem()
			}
			switch {
			case isLeaf(ft):
				out = append(out, leaf{segs: s, typ: ft})
			case ft.Kind() == reflect.Struct:
				walk(ft, s)
			}
		}
	}
	walk(t, nil)
	return out
}

// describe says what a value of type t looks like, for "expected ..." messages.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer && !isText(t) {
		t = t.Elem()
	}
	switch {
	case isText(t):
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
		if t.Elem().Kind() == reflect.String && !isText(t.Elem()) {
			return "a list of strings"
		}
		return "a list"
	}
	return "a value"
}

// quote renders a found scalar, shortened so one problem stays one line.
func quote(s string) string {
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "..."
	}
	return strconv.Quote(s)
}

// checkText reports what is wrong with s as the text of a t, as viper's weak
// decoding would read it (environment variables, flags, quoted YAML
// scalars), or "" when s is fine.
func checkText(t reflect.Type, s string) string {
	for t.Kind() == reflect.Pointer && !isText(t) {
		t = t.Elem()
	}
	bad := func() string { return fmt.Sprintf("expected %s, found %s", describe(t), quote(s)) }
	switch {
	case isText(t):
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
	switch t.Kind() {
	case reflect.Bool:
		if _, err := strconv.ParseBool(s); err != nil {
			return bad()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 0, 64)
		if err != nil && !isRange(err) {
			return bad()
		}
		if err != nil || reflect.New(t).Elem().OverflowInt(i) {
			return outOfRange(t, quote(s))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(s, 0, 64)
		if err != nil && !isRange(err) {
			return bad()
		}
		if err != nil || reflect.New(t).Elem().OverflowUint(u) {
			return outOfRange(t, quote(s))
		}
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !isRange(err) {
			return bad()
		}
		if err != nil || reflect.New(t).Elem().OverflowFloat(f) {
			return outOfRange(t, quote(s))
		}
	}
	return ""
}

func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
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

// suggest returns ` (did you mean "x"?)` for the known name closest to key,
// or a short list of the known names when none is close.
func suggest(key string, fields []field) string {
	best, bestD := "", -1
	for _, f := range fields {
		d := editDistance(strings.ToLower(key), strings.ToLower(f.name))
		if bestD < 0 || d < bestD {
			best, bestD = f.name, d
		}
	}
	if bestD >= 0 && bestD <= max(1, min(len([]rune(key)), len([]rune(best)))/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(fields) > 0 && len(fields) <= 8 {
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.name
		}
		return " (known keys: " + strings.Join(names, ", ") + ")"
	}
	return ""
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
