package clusterset

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
)

// maxOffsets caps the addresses of a block Assign uses: an IPv6 /64 has
// more than any gateway needs.
const maxOffsets = 1 << 32

// Usable returns how many addresses of block Assign hands out: all but
// the first and last of an IPv4 block larger than /31 (network and
// broadcast), all but the first of an IPv6 block larger than /127
// (subnet-router anycast), at most 2^32.
func Usable(block netip.Prefix) uint64 {
	_, n := span(block)
	return n
}

// span returns the offset of the first usable address and the number of
// usable addresses of block.
func span(block netip.Prefix) (first, n uint64) {
	hostBits := block.Addr().BitLen() - block.Bits()
	if hostBits >= 33 {
		return 1, maxOffsets
	}
	size := uint64(1) << hostBits
	switch {
	case block.Addr().Is4() && size > 2:
		return 1, size - 2
	case block.Addr().Is6() && size > 2:
		return 1, size - 1
	}
	return 0, size
}

// CheckBlock reports whether block can give out addresses: a valid
// prefix without host bits, not the unspecified address.
func CheckBlock(block netip.Prefix) error {
	switch {
	case !block.IsValid():
		return fmt.Errorf("not an address block")
	case block.Masked() != block:
		return fmt.Errorf("%s has host bits set: want %s", block, block.Masked())
	case block.Addr().IsUnspecified() && block.Bits() == 0:
		return fmt.Errorf("%s is every address", block)
	case block.Addr().Is4In6():
		return fmt.Errorf("%s is IPv4 written as IPv6: write it as IPv4", block)
	}
	return nil
}

// Assign gives each service key (namespace/name) one address of block.
// A key's first choice is the FNV-1a hash of the key over the usable
// addresses; keys are placed in sorted order and a taken address moves a
// key to the next free one (linear probing), so the result depends only on
// the block and the set of keys. Duplicate keys get one address.
func Assign(block netip.Prefix, keys []string) (map[string]netip.Addr, error) {
	if err := CheckBlock(block); err != nil {
		return nil, err
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	first, n := span(block)
	if uint64(len(keys)) > n {
		return nil, fmt.Errorf("%d services need an address and %s has %d", len(keys), block, n)
	}
	taken := make(map[uint64]bool, len(keys))
	out := make(map[string]netip.Addr, len(keys))
	for _, k := range keys {
		h := fnv.New64a()
		h.Write([]byte(k))
		off := h.Sum64() % n
		for taken[off] {
			off = (off + 1) % n
		}
		taken[off] = true
		out[k] = addrAt(block, first+off)
	}
	return out, nil
}

// addrAt is the address at offset off of block (off below the block's size).
func addrAt(block netip.Prefix, off uint64) netip.Addr {
	if block.Addr().Is4() {
		b := block.Addr().As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(off))
		return netip.AddrFrom4(b)
	}
	b := block.Addr().As16()
	lo := binary.BigEndian.Uint64(b[8:])
	binary.BigEndian.PutUint64(b[8:], lo+off)
	return netip.AddrFrom16(b)
}
