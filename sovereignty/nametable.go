package sovereignty

// nameTable finds one of a fixed set of names (the regions of a policy,
// the header names it reads) with one hash and a few comparisons: an
// open-addressed table at most half full whose hash multiplier is chosen
// when the policy compiles so that every name sits within maxProbes
// slots of where its hash points. Any name, one from a request or not,
// costs at most maxProbes comparisons, most of them of lengths only;
// nothing a client sends can make a lookup longer. When no multiplier
// within the sizes tried keeps every name that close, newNameTable
// returns nil and the caller keeps its map.
type nameTable struct {
	mult  uint64
	shift uint
	mask  uint64
	names []string // by slot; "" where no name is
	index []int    // by slot: the name's index in the names the table was built from
}

// maxProbes is the most slots a lookup reads; nameTableTries how many
// multipliers newNameTable tries per table size, and nameTableGrowth how
// many times it doubles the size (from the power of two at or above
// twice the names).
const (
	maxProbes       = 4
	nameTableTries  = 32
	nameTableGrowth = 3
)

// newNameTable builds the table of names, or returns nil when names is
// empty, holds "" or a name twice, or when no multiplier tried keeps
// every name within maxProbes slots of its hash.
func newNameTable(names []string) *nameTable {
	if len(names) == 0 {
		return nil
	}
	bitsFor := uint(1)
	for 1<<bitsFor < 2*len(names) {
		bitsFor++
	}
	seed := uint64(0x9e3779b97f4a7c15)
	for range nameTableGrowth + 1 {
		size := 1 << bitsFor
		for range nameTableTries {
			seed = splitmix(seed)
			t := &nameTable{mult: seed | 1, shift: 64 - bitsFor, mask: uint64(size - 1), names: make([]string, size), index: make([]int, size)}
			if t.fill(names) {
				return t
			}
		}
		bitsFor++
	}
	return nil
}

// fill places every name in the first free slot from where its hash
// points; false when one is further than maxProbes, or a name is "" or
// given twice.
func (t *nameTable) fill(names []string) bool {
	for i, n := range names {
		if n == "" || t.find(n) >= 0 {
			return false
		}
		s := t.slot(n)
		for p := 0; ; p++ {
			if p == maxProbes {
				return false
			}
			if t.names[s] == "" {
				t.names[s], t.index[s] = n, i
				break
			}
			s = (s + 1) & t.mask
		}
	}
	return true
}

// find returns the index of name among the names the table was built
// from, or -1.
func (t *nameTable) find(name string) int {
	if name == "" {
		return -1
	}
	s := t.slot(name)
	for range maxProbes {
		switch n := t.names[s]; {
		case n == "":
			return -1
		case sameName(n, name):
			return t.index[s]
		}
		s = (s + 1) & t.mask
	}
	return -1
}

func (t *nameTable) slot(name string) uint64 {
	return (nameHash(name) * t.mult) >> t.shift
}

// nameHash mixes a name's length and its bytes: in words of eight, the
// last of them overlapping the one before for a length not a multiple of
// eight.
func nameHash(s string) uint64 {
	n := len(s)
	var h uint64
	switch {
	case n > 16:
		for i := 0; i+8 < n; i += 8 {
			h = (h ^ load64(s, i)) * 0xff51afd7ed558ccd
			h ^= h >> 32
		}
		h ^= load64(s, n-8) * 0xc4ceb9fe1a85ec53
	case n >= 8:
		h = load64(s, 0)*0xff51afd7ed558ccd ^ load64(s, n-8)*0xc4ceb9fe1a85ec53
	case n >= 4:
		h = (load32(s, 0) | load32(s, n-4)<<32) * 0xff51afd7ed558ccd
	case n > 0:
		h = (uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16) * 0xc4ceb9fe1a85ec53
	}
	h ^= uint64(n) * 0x94d049bb133111eb
	return h ^ h>>29
}

// sameName is a == b, by a word or two of each for names of 4 to 16
// bytes rather than a call to compare memory.
func sameName(a, b string) bool {
	n := len(a)
	switch {
	case n != len(b):
		return false
	case n >= 8 && n <= 16:
		return load64(a, 0) == load64(b, 0) && load64(a, n-8) == load64(b, n-8)
	case n >= 4 && n < 8:
		return load32(a, 0) == load32(b, 0) && load32(a, n-4) == load32(b, n-4)
	}
	return a == b
}

// shortName is a name of at most 16 bytes as two words and its length:
// two names are equal when their shortNames are, so a short list of them
// is searched without touching the names' bytes again.
type shortName struct {
	a, b uint64
	n    int
}

// maxShortName is the longest name a shortName holds.
const maxShortName = 16

// short returns s as a shortName; s is at most maxShortName bytes. The
// words may overlap (bytes 0-7 and n-8..n-1); with the length they still
// tell every name apart.
func short(s string) shortName {
	n := len(s)
	switch {
	case n >= 8:
		return shortName{load64(s, 0), load64(s, n-8), n}
	case n >= 4:
		return shortName{load32(s, 0), load32(s, n-4), n}
	}
	var a uint64
	for i := range n {
		a |= uint64(s[i]) << (8 * i)
	}
	return shortName{a, 0, n}
}

// shortList finds a name among a few short names by comparing words.
type shortList []shortName

// newShortList returns the list of names, or nil when there are more
// than maxShortList of them or one is longer than maxShortName.
func newShortList(names []string) shortList {
	if len(names) == 0 || len(names) > maxShortList {
		return nil
	}
	l := make(shortList, len(names))
	for i, n := range names {
		if len(n) > maxShortName {
			return nil
		}
		l[i] = short(n)
	}
	return l
}

// maxShortList is the most names a shortList holds: beyond it a
// nameTable finds a name sooner.
const maxShortList = 16

// find returns the index of name in the list, or -1.
func (l shortList) find(name string) int {
	if len(name) > maxShortName {
		return -1
	}
	k := short(name)
	for i := range l {
		if l[i] == k {
			return i
		}
	}
	return -1
}

// load64 reads s[i:i+8] as a little-endian word.
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// load32 reads s[i:i+4] as a little-endian word.
func load32(s string, i int) uint64 {
	s = s[i : i+4]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24
}

// splitmix is one step of the SplitMix64 generator: the multipliers
// tried, the same for every compile of a policy.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
