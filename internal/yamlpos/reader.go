package yamlpos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Options say what a Reader accepts and how it reports.
type Options struct {
	// File names the document in problems.
	File string
	// Style is how problems write keys and how list items are keyed.
	Style Style
	// Aliases resolves aliases (*name) and merge keys ("<<"), counting
	// every node an alias expands to against MaxNodes. Without it an alias
	// is a problem (a small file cannot expand into a large one) and "<<"
	// is a key like any other.
	Aliases bool
	// FoldCase matches keys to known names ignoring case, as mapstructure
	// does; two keys of one mapping that differ only in case are then
	// duplicates.
	FoldCase bool
	// Subset reads a part of a larger document: keys of a Value's structs
	// and of a Mapping that name nothing known are skipped, not reported.
	Subset bool
	// MaxBytes is the largest document Parse reads; 0 means no limit.
	MaxBytes int
	// MaxNodes bounds the nodes read, aliases expanded; reading stops with
	// a problem when it is reached. 0 means 100 000.
	MaxNodes int
	// MaxProblems stops the reading of a document that is mostly wrong,
	// usually not the kind of document expected at all. 0 means 500.
	MaxProblems int
}

// A Reader reads one YAML document, collecting every problem it finds,
// each positioned at the node it is about. It is not safe for concurrent
// use.
type Reader struct {
	opts     Options
	problems []Problem
	seen     map[Problem]bool
	nodes    int
	stopped  bool
	at       map[string]*yaml.Node // key as matched (lower-cased with FoldCase) -> its key node, or the list item
	fields   map[reflect.Type]fieldSet
}

// NewReader returns a Reader with opts.
func NewReader(opts Options) *Reader {
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = 100_000
	}
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = 500
	}
	return &Reader{opts: opts, seen: map[Problem]bool{}, at: map[string]*yaml.Node{}, fields: map[reflect.Type]fieldSet{}}
}

// Problemf reports a problem with the value at key, positioned at node at
// (nil: the whole file). The same problem is reported once.
func (r *Reader) Problemf(at *yaml.Node, key, format string, args ...any) {
	p := Problem{Key: key, Msg: fmt.Sprintf(format, args...)}
	if at != nil {
		p.Line, p.Column = at.Line, at.Column
	}
	r.add(p)
}

func (r *Reader) add(p Problem) {
	if r.stopped {
		return
	}
	p.File, p.Source, p.Style = r.opts.File, "file", r.opts.Style
	if r.seen[p] {
		return // the same node reached twice, e.g. by two readings of one value
	}
	r.seen[p] = true
	r.problems = append(r.problems, p)
	if len(r.problems) >= r.opts.MaxProblems {
		r.stop(fmt.Sprintf("stopped after %d problems", r.opts.MaxProblems))
	}
}

// stop ends the reading with a problem about the whole file.
func (r *Reader) stop(msg string) {
	r.stopped = true
	r.problems = append(r.problems, Problem{File: r.opts.File, Msg: msg, Source: "file", Style: r.opts.Style})
}

// Problems returns the problems found so far, in the order found.
func (r *Reader) Problems() []Problem { return slices.Clone(r.problems) }

// Stopped reports whether reading stopped early, at MaxNodes or
// MaxProblems: what was read is then incomplete.
func (r *Reader) Stopped() bool { return r.stopped }

// Parse reads the single YAML document in data and returns its top node:
// nil when data is empty or holds only comments. ok is false when there
// is a problem: data too large or not YAML (root is then nil), or a
// second document (root is then the first).
func (r *Reader) Parse(data []byte) (root *yaml.Node, ok bool) {
	if r.opts.MaxBytes > 0 && len(data) > r.opts.MaxBytes {
		r.Problemf(nil, "", "file is %d bytes; the limit is %d", len(data), r.opts.MaxBytes)
		return nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		r.syntax(err, data)
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return root, true
	case err != nil:
		r.syntax(err, data)
		return nil, false
	default:
		r.Problemf(&extra, "", "a second YAML document starts here; the file must hold exactly one")
		return root, false
	}
}

func (r *Reader) syntax(err error, data []byte) {
	var p Problem
	p.Line, p.Msg = Syntax(err, data)
	r.add(p)
}

// Node charges n against MaxNodes and returns the node it stands for: n
// itself, or an alias's target. It returns nil for nil, once reading has
// stopped, and for an alias it refuses or that refers to itself
// (reported at key).
func (r *Reader) Node(n *yaml.Node, key string) *yaml.Node {
	if n == nil || !r.spend() {
		return nil
	}
	return r.deref(n, key)
}

func (r *Reader) spend() bool {
	if r.stopped {
		return false
	}
	r.nodes++
	if r.nodes >= r.opts.MaxNodes {
		expanded := ""
		if r.opts.Aliases {
			expanded = " with aliases expanded"
		}
		r.stop(fmt.Sprintf("document too large: more than %d nodes%s", r.opts.MaxNodes, expanded))
		return false
	}
	return true
}

func (r *Reader) deref(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.AliasNode {
		return n
	}
	if !r.opts.Aliases {
		r.Problemf(n, key, "YAML aliases (*name) are not supported; write the value out")
		return nil
	}
	t := resolve(n)
	if t == nil {
		r.Problemf(n, key, "alias refers to itself")
	}
	return t
}

// resolve follows aliases to the node they name; nil for a cycle.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 1000; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

// IsNull reports whether n is a YAML null ("key:" with no value, "~", "null").
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Found says what n is, for "expected ..., found ..." messages: "a
// mapping", "a list", "null" or the scalar quoted and shortened.
func Found(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if IsNull(n) {
			return "null"
		}
		return quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// quote renders a found scalar, shortened so one problem stays one line.
func quote(s string) string {
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "..."
	}
	return strconv.Quote(s)
}

// Missing reports that the required value at key is absent from the
// mapping at; what says what belongs there ("" for nothing more).
func (r *Reader) Missing(at *yaml.Node, key, what string) {
	if what == "" {
		r.Problemf(at, key, "required")
		return
	}
	r.Problemf(at, key, "required: %s", what)
}

// of returns the node n stands for when it is of kind k, nil for a null
// or an unusable node, and reports any other kind: what says what k looks
// like.
func (r *Reader) of(n *yaml.Node, key string, k yaml.Kind, what string) *yaml.Node {
	v := r.Node(n, key)
	if v == nil || IsNull(v) {
		return nil
	}
	if v.Kind != k {
		r.Problemf(n, key, "expected %s, found %s", what, Found(v))
		return nil
	}
	return v
}

// Entry is one key/value pair of a mapping, as written: Key is the key's
// node (an alias where one was written) and Name its text.
type Entry struct {
	Name       string
	Key, Value *yaml.Node
	merged     bool // supplied by a merge key
}

// Mapping reads n as a mapping whose keys are all in known, reports
// unknown keys (with a suggestion) and duplicates, and returns the entries
// by known name. A null node yields an empty result and no problem.
func (r *Reader) Mapping(n *yaml.Node, key string, known ...string) map[string]Entry {
	out := map[string]Entry{}
	if m := r.of(n, key, yaml.MappingNode, "a mapping"); m != nil {
		for i, e := range r.pairs(m, key, known) {
			out[known[i]] = e
		}
	}
	return out
}

// Text reads a scalar as text: numbers and booleans are taken as written.
func (r *Reader) Text(n *yaml.Node, key string) (string, bool) {
	v := r.Node(n, key)
	if v == nil {
		return "", false
	}
	if v.Kind != yaml.ScalarNode || IsNull(v) {
		r.Problemf(n, key, "expected a string, found %s", Found(v))
		return "", false
	}
	return v.Value, true
}

// List reads n as a list and returns its items; null is an empty list.
func (r *Reader) List(n *yaml.Node, key string) []*yaml.Node {
	if l := r.of(n, key, yaml.SequenceNode, "a list"); l != nil {
		return l.Content
	}
	return nil
}

// Scalar is a text with the node it was read from.
type Scalar struct {
	Value string
	Node  *yaml.Node
}

// Texts reads n as a list of texts, leaving out the items that are not.
func (r *Reader) Texts(n *yaml.Node, key string) []Scalar {
	var out []Scalar
	for i, item := range r.List(n, key) {
		ik := r.opts.Style.Index(key, i)
		r.mark(ik, item)
		if s, ok := r.Text(item, ik); ok {
			out = append(out, Scalar{s, item})
		}
	}
	return out
}

// Pair is one entry of a mapping of texts, with its key's node.
type Pair struct {
	Key, Value string
	Node       *yaml.Node
}

// TextMap reads n as a mapping of texts to texts, in file order, leaving
// out the entries that are not.
func (r *Reader) TextMap(n *yaml.Node, key string) []Pair {
	var out []Pair
	if m := r.of(n, key, yaml.MappingNode, "a mapping"); m != nil {
		for _, e := range r.pairs(m, key, nil) {
			if v, ok := r.Text(e.Value, Join(key, e.Name)); ok {
				out = append(out, Pair{e.Name, v, e.Key})
			}
		}
	}
	return out
}

// At returns the key node of the key, or the node of the list item, a
// reading went through at key: the first one when a key was met twice.
func (r *Reader) At(key string) (*yaml.Node, bool) {
	n, ok := r.at[r.fold(key)]
	return n, ok
}

func (r *Reader) mark(key string, n *yaml.Node) {
	if _, ok := r.at[r.fold(key)]; !ok {
		r.at[r.fold(key)] = n
	}
}

func (r *Reader) fold(name string) string {
	if r.opts.FoldCase {
		return strings.ToLower(name)
	}
	return name
}

// pairs yields the entries of mapping m whose keys pass the checks, with
// the index in names of the name each key matches; names nil accepts
// every key, at index -1. Keys that match no name are reported with a
// suggestion, or skipped when reading a Subset.
func (r *Reader) pairs(m *yaml.Node, key string, names []string) iter.Seq2[int, Entry] {
	return func(yield func(int, Entry) bool) {
		seen := map[string]seenKey{}
		for e := range r.entries(m, key) {
			if names != nil && r.opts.Subset && r.lookup(names, r.peek(e.Key)) < 0 {
				continue
			}
			if !r.name(&e, key, seen) {
				continue
			}
			i, ek := -1, Join(key, e.Name)
			if names != nil {
				if i = r.lookup(names, e.Name); i < 0 {
					r.Problemf(e.Key, ek, "unknown key%s", Suggest(e.Name, names))
					continue
				}
				ek = Join(key, names[i])
			}
			r.mark(ek, e.Key)
			if !yield(i, e) {
				return
			}
		}
	}
}

// peek returns the text of key node k without reporting anything, or ""
// when it has none.
func (r *Reader) peek(k *yaml.Node) string {
	if r.opts.Aliases {
		k = resolve(k)
	}
	if k == nil || k.Kind != yaml.ScalarNode {
		return ""
	}
	return k.Value
}

// lookup returns the index in names of name, matched exactly or else,
// with FoldCase, ignoring case; -1 when none matches.
func (r *Reader) lookup(names []string, name string) int {
	if name == "" {
		return -1
	}
	if i := slices.Index(names, name); i >= 0 || !r.opts.FoldCase {
		return i
	}
	return slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, name) })
}

// entries yields the pairs of mapping m: explicit ones first, then, with
// Aliases, those merged in with "<<" in order, so that the first
// occurrence of a key wins as the YAML merge-key spec says. It allocates
// nothing per pair, so a document of nested merges costs only its nodes.
func (r *Reader) entries(m *yaml.Node, key string) iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		r.eachEntry(m, key, false, yield)
	}
}

func (r *Reader) isMergeKey(k *yaml.Node) bool {
	if !r.opts.Aliases {
		return false
	}
	rk := resolve(k)
	return rk != nil && rk.Kind == yaml.ScalarNode && rk.ShortTag() == "!!merge"
}

func (r *Reader) eachEntry(m *yaml.Node, key string, merged bool, yield func(Entry) bool) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !r.spend() {
			return false
		}
		if k := m.Content[i]; !r.isMergeKey(k) && !yield(Entry{Key: k, Value: m.Content[i+1], merged: merged}) {
			return false
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if r.isMergeKey(m.Content[i]) && !r.eachMerged(m.Content[i+1], key, yield) {
			return false
		}
	}
	return true
}

func (r *Reader) eachMerged(v *yaml.Node, key string, yield func(Entry) bool) bool {
	const msg = "merge key \"<<\" expects a mapping or a list of mappings, found %s"
	rv := resolve(v)
	switch {
	case rv != nil && rv.Kind == yaml.MappingNode:
		return r.eachEntry(rv, key, true, yield)
	case rv != nil && rv.Kind == yaml.SequenceNode:
		for _, item := range rv.Content {
			if !r.spend() {
				return false
			}
			ri := resolve(item)
			if ri == nil || ri.Kind != yaml.MappingNode {
				r.Problemf(item, key, msg, Found(ri))
				continue
			}
			if !r.eachEntry(ri, key, true, yield) {
				return false
			}
		}
		return true
	}
	r.Problemf(v, key, msg, Found(rv))
	return true
}

// seenKey remembers the first key node of a name in one mapping.
type seenKey struct {
	node   *yaml.Node
	merged bool
}

// name checks the key of e and sets e.Name to its text. It returns false
// when the key cannot name anything (reported) or repeats an earlier key
// of the mapping (reported unless a merge supplied one of the two).
func (r *Reader) name(e *Entry, key string, seen map[string]seenKey) bool {
	k := r.deref(e.Key, key)
	if k == nil {
		return false
	}
	if k.Kind != yaml.ScalarNode {
		r.Problemf(e.Key, key, "expected a key, found %s", Found(k))
		return false
	}
	name := k.Value
	switch {
	case name == "":
		r.Problemf(e.Key, key, "empty key")
		return false
	case strings.ContainsRune(name, 0):
		r.Problemf(e.Key, Join(key, name), "key contains a NUL character")
		return false
	}
	if first, dup := seen[r.fold(name)]; dup {
		switch {
		case e.merged || first.merged:
		case first.node.Value != name:
			r.Problemf(e.Key, Join(key, name), "duplicate key (already set at line %d as %q; keys are not case-sensitive)",
				first.node.Line, first.node.Value)
		default:
			r.Problemf(e.Key, Join(key, name), "duplicate key (already set at line %d)", first.node.Line)
		}
		return false
	}
	seen[r.fold(name)] = seenKey{node: k, merged: e.merged}
	e.Name = name
	return true
}

// Suggest returns ` (did you mean "x"?)` for the known name closest to
// key, or else the known names when they are few, for a message about an
// unknown key or value.
func Suggest(key string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		d := editDistance(strings.ToLower(key), strings.ToLower(k))
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && bestD <= max(1, min(len([]rune(key)), len([]rune(best)))/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(known) > 0 && len(known) <= 8 {
		return " (known keys: " + strings.Join(known, ", ") + ")"
	}
	return ""
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours cost one.
// Past 64 runes it is only the longer length: no name is that long.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return max(len(ra), len(rb))
	}
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
