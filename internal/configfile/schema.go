package configfile

import (
	"reflect"
	"slices"
	"strings"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// isLeaf reports whether a value of type t is set from a single string, so
// an environment variable or a flag can set it.
func isLeaf(t reflect.Type) bool {
	switch {
	case yamlpos.IsScalar(t):
		return true
	case t.Kind() == reflect.Slice:
		return t.Elem().Kind() == reflect.String && !yamlpos.IsText(t.Elem())
	case t.Kind() == reflect.Pointer:
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
		for _, f := range yamlpos.Fields(t) {
			s := append(slices.Clone(segs), f.Name)
			ft := f.Type
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
