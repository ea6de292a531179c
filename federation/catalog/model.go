package catalog

import "sort"

// Port is one port of a service.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Service is what a cluster tells the federation about one service it
// exports: never its endpoint addresses, only how many there are.
// Labels maps handed out by the catalog are shared and must not be
// modified.
type Service struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Ports     []Port            `json:"ports"`
	Labels    map[string]string `json:"labels,omitempty"`
	Healthy   int               `json:"healthy"`
	Total     int               `json:"total"`
	// Weight is the share of traffic the cluster asks for relative to
	// others of equal priority; 0 means the default (1).
	Weight int `json:"weight,omitempty"`
}

// Key returns "namespace/name".
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// HasPort reports whether the service exposes port.
func (s Service) HasPort(port int) bool {
	for _, p := range s.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// Entry is one gateway's part of its cluster's catalog entry: the cluster
// it fronts, where its data plane listens, and the services it exports.
// A cluster with an HA pair of gateways has two entries, each written only
// by its own gateway, so the pair never fights over one record; the
// cluster's catalog is their union.
type Entry struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	Region  string `json:"region"`
	Zone    string `json:"zone,omitempty"`
	Cloud   string `json:"cloud,omitempty"`
	// Gateway is the data-plane address other gateways dial.
	Gateway string `json:"gateway"`
	// Control is the gateway's control-API address, if it has one.
	Control string `json:"control,omitempty"`
	// Version is the newest change of this entry the viewer knows of.
	Version  uint64    `json:"version"`
	Services []Service `json:"services"` // sorted by namespace/name
	// Leaving is set when the gateway announced a graceful shutdown.
	Leaving bool `json:"leaving,omitempty"`
}

// Limits on what a decoder accepts. Anything larger is refused, not truncated.
const (
	// MaxMessageBytes bounds one decoded (decompressed) message.
	MaxMessageBytes = 256 << 20
	// MaxServices bounds the services of one gateway.
	MaxServices = 100000
	// MaxNodes bounds the gateways in one full-state message.
	MaxNodes   = 10000
	MaxNameLen = 253
	MaxLabels  = 64
	MaxPorts   = 64
	maxStrLen  = 1024
)

// ClusterView is an immutable view of one gateway's entry.
type ClusterView struct {
	Entry
	// Reachable is true while gossip says the gateway is alive.
	Reachable bool `json:"reachable"`
	// State is alive, dead (failed), left (shut down gracefully) or
	// unknown (heard of through others, not yet seen by memberlist).
	State string `json:"state"`
}

// SortServices puts services in the order views keep them (by
// namespace/name), which ClusterView.Service relies on.
func SortServices(s []Service) {
	sort.Slice(s, func(i, j int) bool { return s[i].Key() < s[j].Key() })
}

// Service returns the view's service ns/name; Services must be sorted
// (SortServices).
func (c *ClusterView) Service(ns, name string) (Service, bool) {
	key := ns + "/" + name
	i := sort.Search(len(c.Services), func(i int) bool { return c.Services[i].Key() >= key })
	if i < len(c.Services) && c.Services[i].Namespace == ns && c.Services[i].Name == name {
		return c.Services[i], true
	}
	return Service{}, false
}

// Snapshot is an immutable view of the whole catalog. Readers never lock.
type Snapshot struct {
	Local    string         // node name of this gateway
	Clusters []*ClusterView // one per gateway, sorted by cluster, then node
}

// Exporters returns the reachable gateways that export ns/name on port
// with at least one healthy endpoint, in snapshot order.
func (s *Snapshot) Exporters(ns, name string, port int) []*ClusterView {
	var out []*ClusterView
	for _, c := range s.Clusters {
		if !c.Reachable {
			continue
		}
		if svc, ok := c.Service(ns, name); ok && svc.HasPort(port) && svc.Healthy > 0 {
			out = append(out, c)
		}
	}
	return out
}

// Known reports whether any gateway, reachable or not, exports ns/name.
func (s *Snapshot) Known(ns, name string) bool {
	for _, c := range s.Clusters {
		if _, ok := c.Service(ns, name); ok {
			return true
		}
	}
	return false
}

// ClusterReachable reports whether any gateway of cluster is alive.
func (s *Snapshot) ClusterReachable(cluster string) bool {
	for _, c := range s.Clusters {
		if c.Cluster == cluster && c.Reachable {
			return true
		}
	}
	return false
}
