package sovereignty

import (
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// Problem is one thing wrong with a policy or topology file, positioned at
// the node it is about; its Key is a field path such as
// spec.classes[0].allowedRegions[1].
type Problem = yamlpos.Problem

// Error holds every problem found in one file; What is "policy" or
// "topology". Callers branch on it with errors.As; the CLI exits with code
// 2 for it.
type Error = yamlpos.Error

// Limits on what the readers accept. Larger input is refused, not truncated.
const (
	MaxFileBytes = 1 << 20
	maxNodes     = 100_000
	maxProblems  = 500
)

// reader reads one policy or topology document: aliases are refused, so
// that a small file cannot expand into a large one, and keys are
// case-sensitive.
type reader struct{ *yamlpos.Reader }

func newReader(file string) reader {
	return reader{yamlpos.NewReader(yamlpos.Options{File: file, Style: yamlpos.DocumentPaths,
		MaxBytes: MaxFileBytes, MaxNodes: maxNodes, MaxProblems: maxProblems})}
}

// document parses data and returns its top node, or nil when there is
// none to read (reported).
func (r reader) document(data []byte) *yaml.Node {
	root, ok := r.Parse(data)
	if ok && root == nil {
		r.Problemf(nil, "", "file is empty")
	}
	if !ok || r.Node(root, "") == nil {
		return nil
	}
	return root
}

func index(path string, i int) string { return yamlpos.DocumentPaths.Index(path, i) }

// IsLabel reports whether s is a DNS label: lower-case letters, digits and
// '-', not starting or ending with '-', at most 63 bytes. Regions,
// clusters, namespaces, service and class names are labels, in policies
// and on the wire alike.
func IsLabel(s string) bool {
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
			if !IsLabel(part) {
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
