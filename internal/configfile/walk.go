package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"strconv"
	"strings"

	"github.com/straitmesh/strait/internal/yamlpos"

	"go.yaml.in/yaml/v3"
)

// nodeBudget bounds the nodes one walk visits, aliases expanded, so an
// aliased document cannot make Load do unbounded work. Real config files
// are far below it.
const nodeBudget = 200_000

// parse reads the single YAML document in data. A nil node with no
// problems means the file is empty or holds only comments.
func parse(file string, data []byte) (*yaml.Node, []Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, []Problem{syntaxProblem(file, data, err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return &doc, nil
	case err != nil:
		return nil, []Problem{syntaxProblem(file, data, err)}
	default:
		return &doc, []Problem{{File: file, Line: extra.Line, Column: extra.Column, Source: "file",
			Msg: "a second YAML document starts here; the file must hold exactly one"}}
	}
}

func syntaxProblem(file string, data []byte, err error) Problem {
	p := Problem{File: file, Source: "file"}
	p.Line, p.Msg = yamlpos.Syntax(err, data)
	return p
}

// walker checks a YAML node tree against a struct type, recording problems
// and key positions, and builds the map handed to viper from what is valid.
type walker struct {
	file     string
	problems []Problem
	pos      map[string]*yaml.Node // lower-cased dotted key -> its key node, or the item of a list
	present  map[string]bool       // lower-cased dotted keys whose value goes to viper
	fields   map[reflect.Type][]field
	budget   int
	tooLarge bool // the walk was cut short and that was reported
}

func newWalker(file string) *walker {
	return &walker{
		file:    file,
		pos:     map[string]*yaml.Node{},
		present: map[string]bool{},
		fields:  map[reflect.Type][]field{},
		budget:  nodeBudget,
	}
}

func (w *walker) fieldsOf(t reflect.Type) []field {
	fs, ok := w.fields[t]
	if !ok {
		fs = fieldsOf(t)
		w.fields[t] = fs
	}
	return fs
}

// maxFileProblems stops the walk of a file that is mostly wrong, usually
// not a config file at all.
const maxFileProblems = 1000

func (w *walker) problem(at *yaml.Node, key, format string, args ...any) {
	if w.tooLarge {
		return
	}
	w.problems = append(w.problems, Problem{File: w.file, Line: at.Line, Column: at.Column,
		Key: key, Msg: fmt.Sprintf(format, args...), Source: "file"})
	if len(w.problems) >= maxFileProblems {
		w.tooLarge, w.budget = true, 0
		w.problems = append(w.problems, Problem{File: w.file, Source: "file",
			Msg: fmt.Sprintf("stopped after %d problems", maxFileProblems)})
	}
}

// spend charges one node to the budget and reports whether work may go on.
func (w *walker) spend() bool {
	if w.budget <= 0 {
		return false
	}
	w.budget--
	if w.budget == 0 && !w.tooLarge {
		w.tooLarge = true
		w.problems = append(w.problems, Problem{File: w.file, Source: "file",
			Msg: fmt.Sprintf("document too large: more than %d nodes with aliases expanded", nodeBudget)})
	}
	return w.budget > 0
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 1000; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func found(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return quote(n.Value)
	}
	return "nothing"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w *walker) mark(path string, n *yaml.Node) {
	if _, ok := w.pos[strings.ToLower(path)]; !ok {
		w.pos[strings.ToLower(path)] = n
	}
}

// document checks the top-level node against struct type t.
func (w *walker) document(doc *yaml.Node, t reflect.Type) map[string]any {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	r := resolve(n)
	if r == nil || isNull(r) {
		return nil
	}
	v, ok := w.value(n, t, "")
	if !ok {
		return nil
	}
	m, _ := v.(map[string]any)
	return m
}

// entry is one key/value pair of a mapping; merged pairs come from "<<".
type entry struct {
	key, val *yaml.Node
	merged   bool
}

// entries yields the pairs of mapping m, explicit ones first, then those
// merged in with "<<" in order, so the first occurrence of a key wins as the
// YAML merge-key spec says. It allocates nothing per pair, so a document of
// nested merges costs only its node budget.
func (w *walker) entries(m *yaml.Node, path string) iter.Seq[entry] {
	return func(yield func(entry) bool) {
		w.eachEntry(m, path, false, yield)
	}
}

func isMergeKey(k *yaml.Node) bool {
	rk := resolve(k)
	return rk != nil && rk.Kind == yaml.ScalarNode && rk.ShortTag() == "!!merge"
}

func (w *walker) eachEntry(m *yaml.Node, path string, merged bool, yield func(entry) bool) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !w.spend() {
			return false
		}
		if k := m.Content[i]; !isMergeKey(k) && !yield(entry{key: k, val: m.Content[i+1], merged: merged}) {
			return false
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if isMergeKey(m.Content[i]) && !w.eachMerged(m.Content[i+1], path, yield) {
			return false
		}
	}
	return true
}

func (w *walker) eachMerged(v *yaml.Node, path string, yield func(entry) bool) bool {
	const msg = "merge key \"<<\" expects a mapping or a list of mappings, found %s"
	r := resolve(v)
	switch {
	case r != nil && r.Kind == yaml.MappingNode:
		return w.eachEntry(r, path, true, yield)
	case r != nil && r.Kind == yaml.SequenceNode:
		for _, item := range r.Content {
			if !w.spend() {
				return false
			}
			ri := resolve(item)
			if ri == nil || ri.Kind != yaml.MappingNode {
				w.problem(item, path, msg, foundOrNothing(ri))
				continue
			}
			if !w.eachEntry(ri, path, true, yield) {
				return false
			}
		}
		return true
	}
	w.problem(v, path, msg, foundOrNothing(r))
	return true
}

func foundOrNothing(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	return found(n)
}

// value checks node at against type t and returns what viper should get for
// it; ok is false when the node is unusable. A null node yields (nil, true).
func (w *walker) value(at *yaml.Node, t reflect.Type, path string) (any, bool) {
	if !w.spend() {
		return nil, false
	}
	n := resolve(at)
	if n == nil {
		w.problem(at, path, "alias refers to itself")
		return nil, false
	}
	for t.Kind() == reflect.Pointer && !isText(t) {
		t = t.Elem()
	}
	if isNull(n) {
		return nil, true
	}
	if isText(t) || isLeaf(t) && t.Kind() != reflect.Slice {
		return w.scalar(at, n, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		return w.structValue(at, n, t, path)
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			return w.mapValue(at, n, t, path)
		}
	case reflect.Slice, reflect.Array:
		return w.listValue(at, n, t, path)
	}
	// Interfaces and anything else: hand over the plain decoded value and
	// let mapstructure judge it.
	var v any
	if err := n.Decode(&v); err != nil {
		w.problem(at, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, false
	}
	return v, true
}

func (w *walker) mismatch(at, n *yaml.Node, t reflect.Type, path string) (any, bool) {
	w.problem(at, path, "expected %s, found %s", describe(t), found(n))
	return nil, false
}

func (w *walker) scalar(at, n *yaml.Node, t reflect.Type, path string) (any, bool) {
	if n.Kind != yaml.ScalarNode {
		return w.mismatch(at, n, t, path)
	}
	tag := n.ShortTag()
	if isText(t) || t == durationType || t.Kind() == reflect.String || t.Kind() == reflect.Bool || tag == "!!str" {
		// Text the way viper's weak decoding reads it.
		if msg := checkText(t, n.Value); msg != "" {
			w.problem(at, path, "%s", msg)
			return nil, false
		}
		switch {
		case isText(t) || t.Kind() == reflect.String:
			return n.Value, true
		case t == durationType:
			return n.Value, true
		case t.Kind() == reflect.Bool:
			b, _ := strconv.ParseBool(n.Value)
			return b, true
		}
		return n.Value, true
	}
	// A plain YAML number: let YAML resolve it (0x1F, 1_000, .inf).
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if tag != "!!int" {
			return w.mismatch(at, n, t, path)
		}
		if err := n.Decode(&i); err != nil || reflect.New(t).Elem().OverflowInt(i) {
			w.problem(at, path, "%s", outOfRange(t, quote(n.Value)))
			return nil, false
		}
		return i, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if tag != "!!int" {
			return w.mismatch(at, n, t, path)
		}
		if err := n.Decode(&u); err != nil || reflect.New(t).Elem().OverflowUint(u) {
			w.problem(at, path, "%s", outOfRange(t, quote(n.Value)))
			return nil, false
		}
		return u, true
	case reflect.Float32, reflect.Float64:
		var f float64
		if tag != "!!int" && tag != "!!float" {
			return w.mismatch(at, n, t, path)
		}
		if err := n.Decode(&f); err != nil || reflect.New(t).Elem().OverflowFloat(f) {
			w.problem(at, path, "%s", outOfRange(t, quote(n.Value)))
			return nil, false
		}
		return f, true
	}
	return w.mismatch(at, n, t, path)
}

// seenKey remembers the first key node of a name in one mapping.
type seenKey struct {
	node   *yaml.Node
	merged bool
}

// key checks a mapping key and returns its text; ok is false when it cannot
// name anything (already reported) or was already set (reported unless a
// merge supplied one of the two).
func (w *walker) key(e entry, path string, seen map[string]seenKey) (string, bool) {
	k := resolve(e.key)
	if k == nil || k.Kind != yaml.ScalarNode {
		w.problem(e.key, path, "expected a key, found %s", foundOrNothing(k))
		return "", false
	}
	name := k.Value
	switch {
	case name == "":
		w.problem(e.key, path, "empty key")
		return "", false
	case strings.ContainsRune(name, 0):
		w.problem(e.key, join(path, name), "key contains a NUL character")
		return "", false
	}
	lname := strings.ToLower(name)
	if first, dup := seen[lname]; dup {
		if !e.merged && !first.merged {
			msg := fmt.Sprintf("duplicate key (already set at line %d)", first.node.Line)
			if first.node.Value != name {
				msg = fmt.Sprintf("duplicate key (already set at line %d as %q; keys are not case-sensitive)",
					first.node.Line, first.node.Value)
			}
			w.problem(e.key, join(path, name), "%s", msg)
		}
		return "", false
	}
	seen[lname] = seenKey{node: k, merged: e.merged}
	return name, true
}

func (w *walker) structValue(at, n *yaml.Node, t reflect.Type, path string) (any, bool) {
	if n.Kind != yaml.MappingNode {
		return w.mismatch(at, n, t, path)
	}
	fields := w.fieldsOf(t)
	out := map[string]any{}
	seen := map[string]seenKey{}
	for e := range w.entries(n, path) {
		name, ok := w.key(e, path, seen)
		if !ok {
			continue
		}
		f, ok := lookupField(fields, name)
		if !ok {
			w.problem(e.key, join(path, name), "unknown key%s", suggest(name, fields))
			continue
		}
		kpath := join(path, f.name)
		w.mark(kpath, e.key)
		v, ok := w.value(e.val, f.typ, kpath)
		if !ok || v == nil {
			continue
		}
		out[f.name] = v
		w.present[strings.ToLower(kpath)] = true
	}
	return out, true
}

func (w *walker) mapValue(at, n *yaml.Node, t reflect.Type, path string) (any, bool) {
	if n.Kind != yaml.MappingNode {
		return w.mismatch(at, n, t, path)
	}
	out := map[string]any{}
	seen := map[string]seenKey{}
	for e := range w.entries(n, path) {
		name, ok := w.key(e, path, seen)
		if !ok {
			continue
		}
		kpath := join(path, name)
		w.mark(kpath, e.key)
		v, ok := w.value(e.val, t.Elem(), kpath)
		if !ok {
			continue
		}
		if v == nil {
			w.problem(e.val, kpath, "expected %s, found null", describe(t.Elem()))
			continue
		}
		out[name] = v
	}
	return out, true
}

func (w *walker) listValue(at, n *yaml.Node, t reflect.Type, path string) (any, bool) {
	if n.Kind != yaml.SequenceNode {
		return w.mismatch(at, n, t, path)
	}
	if t.Kind() == reflect.Array && len(n.Content) != t.Len() {
		w.problem(at, path, "expected a list of %d items, found %d", t.Len(), len(n.Content))
		return nil, false
	}
	out := make([]any, 0, len(n.Content))
	for i, item := range n.Content {
		ipath := join(path, strconv.Itoa(i))
		w.mark(ipath, item)
		v, ok := w.value(item, t.Elem(), ipath)
		if ok && v == nil {
			w.problem(item, ipath, "expected %s, found null", describe(t.Elem()))
		}
		// A placeholder keeps later items at their index.
		out = append(out, v)
	}
	return out, true
}

// restore puts back the case of map keys written in the file, which viper
// lower-cases, walking the file's nodes alongside the decoded value v.
func (w *walker) restore(at *yaml.Node, v reflect.Value) {
	if !w.spend() {
		return
	}
	n := resolve(at)
	if n == nil || isNull(n) {
		return
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if isText(v.Type()) {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := w.fieldsOf(v.Type())
		for e := range w.entries(n, "") {
			k := resolve(e.key)
			if k == nil || k.Kind != yaml.ScalarNode {
				continue
			}
			f, ok := lookupField(fields, k.Value)
			if !ok {
				continue
			}
			if fv, err := v.FieldByIndexErr(f.index); err == nil {
				w.restore(e.val, fv)
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i := 0; i < len(n.Content) && i < v.Len(); i++ {
			w.restore(n.Content[i], v.Index(i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String || v.IsNil() {
			return
		}
		kt, et := v.Type().Key(), v.Type().Elem()
		for e := range w.entries(n, "") {
			k := resolve(e.key)
			if k == nil || k.Kind != yaml.ScalarNode {
				continue
			}
			key := reflect.ValueOf(k.Value).Convert(kt)
			if lower := reflect.ValueOf(strings.ToLower(k.Value)).Convert(kt); !v.MapIndex(key).IsValid() {
				if lv := v.MapIndex(lower); lv.IsValid() {
					v.SetMapIndex(key, lv)
					v.SetMapIndex(lower, reflect.Value{})
				}
			}
			ev := v.MapIndex(key)
			if !ev.IsValid() {
				continue
			}
			cp := reflect.New(et).Elem()
			cp.Set(ev)
			w.restore(e.val, cp)
			v.SetMapIndex(key, cp)
		}
	}
}
