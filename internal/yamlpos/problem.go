package yamlpos

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Style is how a Problem writes its key, and how a Reader keys list items.
type Style uint8

const (
	// ConfigKeys writes "key listen.admin: ..." and keys list items as
	// "services.2.name": the key names a setting, which environment
	// variables and flags can set too, so it is labelled as one.
	ConfigKeys Style = iota
	// DocumentPaths writes "spec.classes[0].name: ...": a field path in
	// one document.
	DocumentPaths
)

// Index returns the key of item i of the list at key.
func (s Style) Index(key string, i int) string {
	if s == DocumentPaths {
		return key + "[" + strconv.Itoa(i) + "]"
	}
	return Join(key, strconv.Itoa(i))
}

// Join returns the key of name inside the mapping at key.
func Join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

// Problem is one thing wrong with what was read, positioned at the node it
// is about.
type Problem struct {
	File   string // the file read; "" when there is none
	Line   int    // 1-based; 0 when unknown or not from the file
	Column int    // 1-based; 0 when unknown
	Key    string // dotted key or field path: "listen.admin", "spec.classes[0]"; "" for the whole file
	Msg    string // what is wrong: what was expected and what was found
	// Source says which layer the value came from: "file", "env STRAIT_X",
	// "flag --x", or "" for a default or a missing value. A source other
	// than "file" stands in place of the file position.
	Source string
	Style  Style // how Key is written
}

// String renders the problem for people, e.g.
//
//	gw.yaml:12:3: key listen.dta: unknown key (did you mean "data"?)
//	env STRAIT_LISTEN_PORT: key listen.port: expected an integer, found "abc"
//	policy.yaml:14:16: spec.classes[0].catalog: expected all or region-only, found "regional"
func (p Problem) String() string {
	var b strings.Builder
	if p.Source != "" && p.Source != "file" {
		b.WriteString(p.Source)
	} else {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
			if p.Column > 0 {
				b.WriteString(":" + strconv.Itoa(p.Column))
			}
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Key != "" {
		if p.Style == ConfigKeys {
			b.WriteString("key ")
		}
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error holds every problem found in what was read. Callers branch on it
// with errors.As; the CLI exits with code 2 for it.
type Error struct {
	// What names what was read, for the header "invalid <What> <file>":
	// "policy", "topology"; "" reads "config".
	What     string
	Problems []Problem
}

// MaxRendered caps the problems Error renders; Problems holds them all.
const MaxRendered = 100

// Error returns a header naming the file of the first problem that has
// one, then one problem per line, at most MaxRendered of them.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid " + cmp.Or(e.What, "config"))
	for _, p := range e.Problems {
		if p.File != "" {
			b.WriteString(" " + p.File)
			break
		}
	}
	s := "s"
	if len(e.Problems) == 1 {
		s = ""
	}
	fmt.Fprintf(&b, " (%d problem%s):", len(e.Problems), s)
	for i, p := range e.Problems {
		if i == MaxRendered {
			fmt.Fprintf(&b, "\n  ... and %d more", len(e.Problems)-i)
			break
		}
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Sort orders problems by position; those at one position keep their order.
func Sort(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
