package catalog

import (
	"slices"
	"sort"

	"github.com/hashicorp/memberlist"
)

// memberlist hands out pointers to its own member records (Members, the
// event callbacks) and keeps writing them under its lock as alive
// messages arrive (protocol versions, address, metadata). Reading one
// outside that lock is a data race, so the catalog keeps copies: taken in
// the event callbacks, which memberlist calls with its lock held, and
// replaced whole, never changed, so that a copy handed out stays valid.

// rememberMember stores a copy of n (called from an event callback) and
// returns it.
func (c *Catalog) rememberMember(n *memberlist.Node) *memberlist.Node {
	cp := *n
	cp.Addr = slices.Clone(n.Addr)
	cp.Meta = slices.Clone(n.Meta)
	c.peersMu.Lock()
	c.peers[cp.Name] = &cp
	c.peersMu.Unlock()
	return &cp
}

func (c *Catalog) forgetMember(name string) {
	c.peersMu.Lock()
	delete(c.peers, name)
	c.peersMu.Unlock()
}

// members returns the live members (this gateway too), by name. The
// values must not be changed.
func (c *Catalog) members() []*memberlist.Node {
	c.peersMu.Lock()
	out := make([]*memberlist.Node, 0, len(c.peers))
	for _, n := range c.peers {
		out = append(out, n)
	}
	c.peersMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
