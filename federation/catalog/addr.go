package catalog

import (
	"net"

	"github.com/hashicorp/memberlist"
)

// ClusterAt returns the cluster of the gateway whose gossip address is
// addr, as that gateway's accepted (signed) entry names it, never as its
// unsigned memberlist metadata claims. An address with another port
// (an inbound TCP stream's ephemeral port) matches by host when exactly
// one other gateway has that host. "" when none is known.
func (c *Catalog) ClusterAt(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	var name, byHost string
	hosts := 0
	for _, n := range c.members() {
		if n.Name == c.name {
			continue
		}
		if n.Address() == addr {
			name = n.Name
			break
		}
		if n.Addr.String() == host {
			byHost = n.Name
			hosts++
		}
	}
	if name == "" && hosts == 1 {
		name = byHost
	}
	if name == "" {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if nd := c.nodes[name]; nd != nil && nd.verified {
		return nd.Cluster
	}
	return ""
}

// GossipAddrs returns the gossip addresses of the other live members.
func (c *Catalog) GossipAddrs() []string {
	var out []string
	for _, n := range c.members() {
		if n.Name != c.name {
			out = append(out, n.Address())
		}
	}
	return out
}

// wrapTransport applies Options.WrapTransport.
func (o Options) wrapTransport(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	if o.WrapTransport == nil {
		return t
	}
	return o.WrapTransport(t)
}
