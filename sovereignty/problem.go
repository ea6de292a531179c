package sovereignty

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/straitmesh/strait/internal/yamlpos"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a policy or topology file, positioned at
// the node it is about.
type Problem struct {
	File   string // the file being read; "" for data without a name
	Line   int    // 1-based; 0 when the problem is about the whole file
	Column int    // 1-based; 0 when unknown
	Path   string // field path such as spec.classes[0].allowedRegions[1]; "" for the file
	Msg    string // what was expected and what was found
}

// String renders the problem as "file:line:column: path: message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
		if p.Column > 0 {
			b.WriteString(":" + strconv.Itoa(p.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error holds every problem found in one file. Callers branch on it with
// errors.As; the CLI exits with code 2 for it.
type Error struct {
	// What is "policy" or "topology".
	What     string
	File     string
	Problems []Problem
}

// maxRendered caps the problems Error renders; Problems holds them all.
const maxRendered = 100

func (e *Error) Error() string {
	var b strings.Builder
	name := e.File
	if name == "" {
		name = "(unnamed)"
	}
	s := "s"
	if len(e.Problems) == 1 {
		s = ""
	}
	fmt.Fprintf(&b, "invalid %s %s (%d problem%s):", e.What, name, len(e.Problems), s)
	for i, p := range e.Problems {
		if i == maxRendered {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Problems)-i)
			break
		}
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Limits on what the readers accept. Larger input is refused, not truncated.
const (
	MaxFileBytes = 1 << 20
	maxNodes     = 100_000
	maxProblems  = 500
)

// reader walks a YAML node tree, collecting positioned problems.
type reader struct {
	file     string
	problems []Problem
	nodes    int
	stopped  bool
}

func (r *reader) problem(n *yaml.Node, path, format string, args ...any) {
	if r.stopped {
		return
	}
	p := Problem{File: r.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	for _, q := range r.problems {
		if q == p {
			return // the same node reached twice, e.g. an alias checked by two readers
		}
	}
	r.problems = append(r.problems, p)
	if len(r.problems) >= maxProblems {
		r.stopped = true
		r.problems = append(r.problems, Problem{File: r.file, Msg: fmt.Sprintf("stopped after %d problems", maxProblems)})
	}
}

// sortProblems orders problems by position so output is stable.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Column < ps[j].Column
	})
}

// parseDocument reads exactly one YAML document from data.
func (r *reader) parseDocument(data []byte) *yaml.Node {
	if len(data) > MaxFileBytes {
		r.problem(nil, "", "file is %d bytes; the limit is %d", len(data), MaxFileBytes)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			r.problem(nil, "", "file is empty")
			return nil
		}
		r.syntax(err, data)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		r.syntax(err, data)
		return nil
	default:
		r.problem(&extra, "", "a second YAML document starts here; the file must hold exactly one")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		r.problem(nil, "", "file is empty")
		return nil
	}
	return doc.Content[0]
}

func (r *reader) syntax(err error, data []byte) {
	p := Problem{File: r.file}
	p.Line, p.Msg = yamlpos.Syntax(err, data)
	r.problems = append(r.problems, p)
}

// spend charges one node against the budget.
func (r *reader) spend(n *yaml.Node) bool {
	r.nodes++
	if r.nodes == maxNodes {
		r.problem(n, "", "document too large: more than %d nodes", maxNodes)
		r.stopped = true
	}
	return !r.stopped
}

// usable reports whether n can be read at all: aliases are refused so that
// a small file cannot expand into a large one.
func (r *reader) usable(n *yaml.Node, path string) bool {
	if n == nil || !r.spend(n) {
		return false
	}
	if n.Kind == yaml.AliasNode {
		r.problem(n, path, "YAML aliases (*name) are not supported; write the value out")
		return false
	}
	return true
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		s := n.Value
		if r := []rune(s); len(r) > 40 {
			s = string(r[:40]) + "..."
		}
		return strconv.Quote(s)
	}
	return "an alias"
}

// field is one key/value pair of a mapping that passed the key checks.
type field struct {
	key, val *yaml.Node
}

// object checks that n is a mapping whose keys are all in known, reports
// unknown (with a suggestion) and duplicate keys, and returns the fields
// by name. A null node yields an empty result and no problem.
func (r *reader) object(n *yaml.Node, path string, known ...string) map[string]field {
	out := map[string]field{}
	if !r.usable(n, path) || isNull(n) {
		return out
	}
	if n.Kind != yaml.MappingNode {
		r.problem(n, path, "expected a mapping, found %s", describe(n))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !r.usable(k, path) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			r.problem(k, path, "expected a key, found %s", describe(k))
			continue
		}
		name := k.Value
		kp := join(path, name)
		if first, dup := out[name]; dup {
			r.problem(k, kp, "duplicate key (already set at line %d)", first.key.Line)
			continue
		}
		if !contains(known, name) {
			r.problem(k, kp, "unknown key%s", suggest(name, known))
			continue
		}
		out[name] = field{key: k, val: v}
	}
	return out
}

// str reads a scalar as text. Numbers and booleans are taken as written.
func (r *reader) str(n *yaml.Node, path string) (string, bool) {
	if !r.usable(n, path) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || isNull(n) {
		r.problem(n, path, "expected a string, found %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// list checks that n is a sequence and returns its items.
func (r *reader) list(n *yaml.Node, path string) []*yaml.Node {
	if !r.usable(n, path) || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.problem(n, path, "expected a list, found %s", describe(n))
		return nil
	}
	return n.Content
}

// named is a string with the node it came from.
type named struct {
	Value string
	Node  *yaml.Node
}

func (r *reader) strList(n *yaml.Node, path string) []named {
	var out []named
	for i, item := range r.list(n, path) {
		if s, ok := r.str(item, index(path, i)); ok {
			out = append(out, named{s, item})
		}
	}
	return out
}

// pair is one entry of a string-to-string mapping, in file order.
type pair struct {
	Key, Value string
	Node       *yaml.Node // the key node
}

func (r *reader) strMap(n *yaml.Node, path string) []pair {
	var out []pair
	if !r.usable(n, path) || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		r.problem(n, path, "expected a mapping, found %s", describe(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ks, ok := r.str(k, path)
		if !ok {
			continue
		}
		kp := join(path, ks)
		if first, dup := seen[ks]; dup {
			r.problem(k, kp, "duplicate key (already set at line %d)", first.Line)
			continue
		}
		seen[ks] = k
		vs, ok := r.str(v, kp)
		if !ok {
			continue
		}
		out = append(out, pair{ks, vs, k})
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns ` (did you mean "x"?)` for the closest known key, or the
// list of known keys when none is close.
func suggest(key string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		d := editDistance(strings.ToLower(key), strings.ToLower(k))
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && bestD <= max(1, min(len(key), len(best))/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(known) > 0 {
		return " (known keys: " + strings.Join(known, ", ") + ")"
	}
	return ""
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return max(len(ra), len(rb))
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// isLabel reports whether s is a DNS label: lower-case letters, digits and
// '-', not starting or ending with '-', at most 63 bytes.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isLabelKey reports whether s is a Kubernetes-style label key: an optional
// DNS prefix and '/', then a name of letters, digits, '-', '_' and '.'.
func isLabelKey(s string) bool {
	if s == "" || len(s) > 317 {
		return false
	}
	name := s
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		prefix := s[:i]
		name = s[i+1:]
		if prefix == "" || len(prefix) > 253 {
			return false
		}
		for _, part := range strings.Split(prefix, ".") {
			if !isLabel(part) {
				return false
			}
		}
	}
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(name)-1 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

// isHeaderName reports whether s is an HTTP header field name (an RFC 9110 token).
func isHeaderName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
