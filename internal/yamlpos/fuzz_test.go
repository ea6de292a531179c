package yamlpos

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/fuzzseed"
)

// FuzzReader reads arbitrary documents by a Go type and by hand, with
// aliases resolved and refused: no input panics, every problem names the
// file and says something, and an Error of them renders.
func FuzzReader(f *testing.F) {
	fuzzseed.Files(f, "testdata/seed/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []Options{
			{File: "fuzz.yaml", Aliases: true, FoldCase: true, MaxNodes: 10_000},
			{File: "fuzz.yaml", Style: DocumentPaths, MaxBytes: 1 << 16},
			{File: "fuzz.yaml", Subset: true, Aliases: true},
		} {
			r := NewReader(opts)
			if root, _ := r.Parse(data); root != nil {
				r.Value(root, reflect.TypeFor[server](), "")
				readAll(r, root, "", 0)
			}
			for _, p := range r.Problems() {
				if p.File != "fuzz.yaml" || p.Msg == "" || p.Line < 0 || p.Column < 0 {
					t.Fatalf("problem without file or message: %+v", p)
				}
			}
			_ = (&Error{Problems: r.Problems()}).Error()
		}
	})
}

// readAll reads every node under n by hand: mappings as known keys (a few
// names the seeds use), scalars as text, lists item by item.
func readAll(r *Reader, n *yaml.Node, key string, depth int) {
	v := r.Node(n, key)
	if v == nil || depth > 50 {
		return
	}
	switch v.Kind {
	case yaml.MappingNode:
		if depth%2 == 1 {
			r.TextMap(n, key)
			return
		}
		for name, e := range r.Mapping(n, key, "name", "tags", "env", "tls", "regions", "labels") {
			readAll(r, e.Value, Join(key, name), depth+1)
		}
	case yaml.SequenceNode:
		r.Texts(n, key)
		for i, item := range r.List(n, key) {
			readAll(r, item, r.opts.Style.Index(key, i), depth+1)
		}
	default:
		r.Text(n, key)
	}
}
