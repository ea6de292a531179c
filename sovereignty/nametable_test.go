package sovereignty

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// randomNames returns n distinct names of 1 to 40 bytes, many of them a
// byte or a letter's case away from another, as header and region names
// of one policy are.
func randomNames(r *rand.Rand, n int) []string {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		var s string
		if len(out) > 0 && r.IntN(2) == 0 {
			b := []byte(out[r.IntN(len(out))])
			b[r.IntN(len(b))] ^= byte(1 << r.IntN(6))
			s = string(b)
		} else {
			b := make([]byte, 1+r.IntN(40))
			for i := range b {
				b[i] = "abcdefghijklmnopqrstuvwxyz-0123456789XYZ"[r.IntN(40)]
			}
			s = string(b)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// checkFinds fails t unless find returns each name's index in names, and
// -1 for names next to them that are not in names: one byte changed, one
// added or taken away, twenty added, another case, a space or NUL
// before, a NUL after, empty.
func checkFinds(t *testing.T, r *rand.Rand, round int, names []string, find func(string) int) {
	t.Helper()
	in := map[string]bool{}
	for i, n := range names {
		in[n] = true
		if got := find(n); got != i {
			t.Fatalf("round %d: find(%q) = %d, want %d (names %q)", round, n, got, i, names)
		}
	}
	for _, n := range names {
		b := []byte(n)
		b[r.IntN(len(b))]++
		for _, other := range []string{"", string(b), n + "x", n + strings.Repeat("y", 20), n[1:], n[:len(n)-1], strings.ToUpper(n),
			" " + n, "\x00" + n, n + "\x00"} {
			if !in[other] && find(other) != -1 {
				t.Fatalf("round %d: find(%q) = %d, a name not in %q", round, other, find(other), names)
			}
		}
	}
}

// TestNameTableFindsEveryNameAndNoOther: for random sets of names (up to
// 300, many a byte apart, some alike in every byte the hash reads), a
// table is built, find returns each name's index, and -1 for names next
// to them (one byte changed, one added or taken away, another case,
// empty).
func TestNameTableFindsEveryNameAndNoOther(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		names := randomNames(r, 1+r.IntN(300))
		tab := newNameTable(names)
		if tab == nil {
			t.Fatalf("round %d: no table for %d names", round, len(names))
		}
		checkFinds(t, r, round, names, tab.find)
	}
}

// alikeNames returns n names of 16 bytes that nameHash maps to one
// value: their slots are one whatever the multiplier.
func alikeNames(n int) []string {
	const k1, k2 = 0xff51afd7ed558ccd, 0xc4ceb9fe1a85ec53
	inv := uint64(k2) // k2's inverse modulo 2^64, by Newton's iteration
	for range 6 {
		inv *= 2 - k2*inv
	}
	var out []string
	for i := range n {
		a := uint64(0x6161616161616161) + uint64(i)
		b := (0x0123456789abcdef ^ a*k1) * inv // a*k1 ^ b*k2 is the same for every i
		var w [16]byte
		binary.LittleEndian.PutUint64(w[:8], a)
		binary.LittleEndian.PutUint64(w[8:], b)
		out = append(out, string(w[:]))
	}
	return out
}

// TestNameTableFallsBackToMap: more names alike to the hash than a
// lookup may compare get no table (nor do "" or a name twice), and an
// engine without tables finds its regions and header names by map.
func TestNameTableFallsBackToMap(t *testing.T) {
	alike := alikeNames(maxProbes + 1)
	if h := nameHash(alike[0]); nameHash(alike[maxProbes]) != h {
		t.Fatalf("alikeNames made names that hash apart")
	}
	if tab := newNameTable(alike[:maxProbes]); tab == nil {
		t.Fatalf("no table for %d names alike to the hash", maxProbes)
	} else {
		for i, n := range alike[:maxProbes] {
			if tab.find(n) != i {
				t.Fatalf("find(%q) = %d, want %d", n, tab.find(n), i)
			}
		}
		if tab.find(alike[maxProbes]) != -1 {
			t.Fatalf("find found a name alike to the hash but not in the table")
		}
	}
	if tab := newNameTable(alike); tab != nil {
		t.Fatalf("a table was built for %d names the hash cannot tell apart", len(alike))
	}
	if tab := newNameTable([]string{"a", "a"}); tab != nil {
		t.Fatalf("a table was built for a name given twice")
	}
	if tab := newNameTable([]string{""}); tab != nil {
		t.Fatalf("a table was built for an empty name")
	}
	twin := func(c byte) string {
		b := []byte(strings.Repeat("r", 40))
		b[10] = c
		return string(b)
	}
	var twins []string
	for c := range byte(5) {
		twins = append(twins, twin('a'+c))
	}
	doc := fmt.Sprintf(`apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: twins}
spec:
  regions: [%[1]s, %[2]s, %[3]s, %[4]s, %[5]s]
  classes:
    - name: a
      allowedRegions: [%[1]s]
      match:
        headers:
          - {name: x-%[1]s, value: one}
    - name: b
      allowedRegions: [%[1]s, %[2]s]
      match:
        headers:
          - {name: x-%[2]s, value: two}
    - {name: c, allowedRegions: [%[1]s, %[3]s], match: {headers: [{name: x-%[3]s, value: three}]}}
    - {name: d, allowedRegions: [%[1]s, %[4]s], match: {headers: [{name: x-%[4]s, value: four}]}}
    - {name: e, allowedRegions: [%[1]s, %[5]s], match: {headers: [{name: x-%[5]s, value: five}]}}
`, twins[0], twins[1], twins[2], twins[3], twins[4])
	e, err := Compile("twins.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if e.regionTable == nil || e.hdrTable == nil {
		t.Fatalf("no tables for names a byte apart")
	}
	e.regionTable, e.hdrTable = nil, nil // as newNameTable leaves them when it finds none
	for want, name := range e.regions {
		if i, ok := e.region(name); !ok || i != want {
			t.Errorf("region(%q) = %d, %v; want %d", name, i, ok, want)
		}
	}
	f := Flow{Namespace: "ns", Name: "svc", SourceRegion: twin('a'),
		Headers: http.Header{http.CanonicalHeaderKey("x-" + twin('a')): {"one"}, "Accept": {"*/*"}}}
	if d := e.Decide(&f, Candidate{Cluster: "c", Region: twin('b')}); d.Allow || d.Rule.ID != "class:a" {
		t.Fatalf("a flow of class a to the other region decided %+v", d)
	}
	f.Headers = http.Header{http.CanonicalHeaderKey("x-" + twin('b')): {"two"}}
	if d := e.Decide(&f, Candidate{Cluster: "c", Region: twin('b')}); !d.Allow || d.Rule.ID != "class:b" {
		t.Fatalf("a flow of class b decided %+v", d)
	}
}

// TestSameName: sameName is ==, for names of every length up to 40 and
// pairs that differ in one byte anywhere.
func TestSameName(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		n := r.IntN(41)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + r.IntN(3))
		}
		a := string(b)
		if n > 0 && r.IntN(2) == 0 {
			b[r.IntN(n)] = byte('a' + r.IntN(3))
		}
		if r.IntN(8) == 0 {
			b = append(b, 'a')
		}
		other := string(b)
		if got := sameName(a, other); got != (a == other) {
			t.Fatalf("sameName(%q, %q) = %v", a, other, got)
		}
	}
}

// TestShortList: a shortList finds each of up to sixteen names of up to
// sixteen bytes and no other name (one byte apart, longer, shorter,
// another case, empty); more or longer names get no list.
func TestShortList(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 2000 {
		var names []string
		for _, n := range randomNames(r, 1+r.IntN(maxShortList)) {
			if len(n) <= maxShortName {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			continue
		}
		l := newShortList(names)
		if l == nil {
			t.Fatalf("round %d: no list for %q", round, names)
		}
		checkFinds(t, r, round, names, l.find)
	}
	if newShortList([]string{strings.Repeat("a", maxShortName+1)}) != nil {
		t.Fatalf("a list was built for a name longer than %d bytes", maxShortName)
	}
	many := make([]string, maxShortList+1)
	for i := range many {
		many[i] = fmt.Sprint("r", i)
	}
	if newShortList(many) != nil {
		t.Fatalf("a list was built for %d names", len(many))
	}
}

// TestHeaderValueTable: a header whose matchers name more values than
// exactValues finds them in a table; values written in another case
// (ASCII or Unicode folding, such as the Kelvin sign for k), with
// spaces, unknown, or several, are classified as the reference walk
// does.
func TestHeaderValueTable(t *testing.T) {
	values := []string{"k", "eu", "ü", "europe", "us-east", "ap", "a-longer-value-than-sixteen"}
	var b strings.Builder
	b.WriteString("apiVersion: strait.io/v1\nkind: ResidencyPolicy\nmetadata: {name: values}\nspec:\n  regions: [r0, r1]\n  classes:\n")
	for i, v := range values {
		fmt.Fprintf(&b, "    - {name: c%d, allowedRegions: [r0%s], match: {headers: [{name: x-class, value: %q}]}}\n", i, []string{"", ", r1"}[i%2], v)
	}
	e, err := Compile("values.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	k, ok := e.header("X-Class")
	if !ok || k.exact == nil {
		t.Fatalf("no value table for %d values", len(values))
	}
	sent := append([]string{}, values...)
	sent = append(sent, "K", "\u212a", "EU", "Ü", "EUROPE", " eu ", "A-LONGER-VALUE-THAN-SIXTEEN", "e", "eux", "", "eu, us-east", "eu, EU", "unknown")
	for _, v := range sent {
		for _, region := range []string{"r0", "r1"} {
			f := Flow{Namespace: "ns", Name: "svc", SourceRegion: "r0", Headers: http.Header{"X-Class": {v}, "Accept": {"*/*"}}}
			c := Candidate{Cluster: "c", Region: region}
			if got, want := e.Decide(&f, c), e.ReferenceDecide(&f, c); got != want {
				t.Errorf("x-class %q to %s: decided %+v, the reference %+v", v, region, got, want)
			}
			if got, want := e.Classify(&f), e.refClassify(&f); got != want {
				t.Errorf("x-class %q: classes %+v, the reference %+v", v, got, want)
			}
		}
	}
}
