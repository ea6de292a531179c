package federation

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Port is one port of a service.
type Port struct {
	Name     string `json:"name,omitempty"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Service is what a cluster tells the federation about one service it
// exports: never its endpoint addresses, only how many there are.
type Service struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Ports     []Port            `json:"ports"`
	Labels    map[string]string `json:"labels,omitempty"`
	Healthy   int               `json:"healthy"`
	Total     int               `json:"total"`
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

// Entry is one gateway's catalog entry: the cluster it fronts, where its
// data plane listens, and the services it exports.
type Entry struct {
	Node     string    `json:"node"`
	Cluster  string    `json:"cluster"`
	Region   string    `json:"region"`
	Zone     string    `json:"zone,omitempty"`
	Cloud    string    `json:"cloud,omitempty"`
	Gateway  string    `json:"gateway"`
	Version  uint64    `json:"version"`
	Services []Service `json:"services"`
	// Leaving is set in the last version a gateway sends before a graceful
	// shutdown, so others can tell "left" from "dead".
	Leaving bool `json:"leaving,omitempty"`
}

// Limits on what a decoder accepts. Anything larger is refused, not truncated.
const (
	MaxMessageBytes  = 4 << 20
	MaxServices      = 10000
	MaxNameLen       = 253
	MaxLabels        = 64
	MaxPorts         = 64
	maxEntriesPerMsg = 100000
)

// message is the envelope of every gossip payload.
type message struct {
	Kind    string   `json:"kind"` // "entry" or "state"
	Entries []*Entry `json:"entries"`
}

// ErrMalformed is wrapped by every decoding failure.
var ErrMalformed = errors.New("malformed gossip message")

func encodeMessage(kind string, entries []*Entry) ([]byte, error) {
	b, err := json.Marshal(message{Kind: kind, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", kind, err)
	}
	return b, nil
}

// DecodeMessage parses and validates one gossip payload.
func DecodeMessage(b []byte) (kind string, entries []*Entry, err error) {
	if len(b) > MaxMessageBytes {
		return "", nil, fmt.Errorf("%w: %d bytes exceeds limit of %d", ErrMalformed, len(b), MaxMessageBytes)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m.Kind != "entry" && m.Kind != "state" {
		return "", nil, fmt.Errorf("%w: unknown kind %q", ErrMalformed, m.Kind)
	}
	if len(m.Entries) > maxEntriesPerMsg {
		return "", nil, fmt.Errorf("%w: %d entries", ErrMalformed, len(m.Entries))
	}
	for i, e := range m.Entries {
		if err := e.validate(); err != nil {
			return "", nil, fmt.Errorf("%w: entries[%d]: %v", ErrMalformed, i, err)
		}
	}
	return m.Kind, m.Entries, nil
}

func (e *Entry) validate() error {
	if e == nil {
		return errors.New("null entry")
	}
	for _, f := range []struct{ name, v string }{{"node", e.Node}, {"cluster", e.Cluster}, {"region", e.Region}} {
		if f.v == "" {
			return fmt.Errorf("%s: missing", f.name)
		}
		if len(f.v) > MaxNameLen {
			return fmt.Errorf("%s: longer than %d bytes", f.name, MaxNameLen)
		}
	}
	if len(e.Services) > MaxServices {
		return fmt.Errorf("services: %d exceeds limit of %d", len(e.Services), MaxServices)
	}
	for i, s := range e.Services {
		if s.Namespace == "" || s.Name == "" {
			return fmt.Errorf("services[%d]: namespace and name are required", i)
		}
		if len(s.Ports) > MaxPorts || len(s.Labels) > MaxLabels {
			return fmt.Errorf("services[%d]: too many ports or labels", i)
		}
		for _, p := range s.Ports {
			if p.Port < 1 || p.Port > 65535 {
				return fmt.Errorf("services[%d]: port %d out of range", i, p.Port)
			}
		}
		if s.Healthy < 0 || s.Total < 0 || s.Healthy > s.Total {
			return fmt.Errorf("services[%d]: healthy %d, total %d", i, s.Healthy, s.Total)
		}
	}
	return nil
}

// ClusterView is an immutable view of one remote or local gateway.
type ClusterView struct {
	Entry
	Reachable bool   `json:"reachable"`
	State     string `json:"state"` // alive, suspect, dead, left
}

// Snapshot is an immutable view of the whole catalog. Readers never lock.
type Snapshot struct {
	Local    string         // node name of this gateway
	Clusters []*ClusterView // sorted by cluster, then node
}

// Exporters returns the reachable gateways that export ns/name on port
// with at least one healthy endpoint, in snapshot order.
func (s *Snapshot) Exporters(ns, name string, port int) []*ClusterView {
	var out []*ClusterView
	for _, c := range s.Clusters {
		if !c.Reachable {
			continue
		}
		for _, svc := range c.Services {
			if svc.Namespace == ns && svc.Name == name && svc.HasPort(port) && svc.Healthy > 0 {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// Known reports whether any cluster, reachable or not, ever exported ns/name.
func (s *Snapshot) Known(ns, name string) bool {
	for _, c := range s.Clusters {
		for _, svc := range c.Services {
			if svc.Namespace == ns && svc.Name == name {
				return true
			}
		}
	}
	return false
}

func sortViews(v []*ClusterView) {
	sort.Slice(v, func(i, j int) bool {
		if c := strings.Compare(v[i].Cluster, v[j].Cluster); c != 0 {
			return c < 0
		}
		return v[i].Node < v[j].Node
	})
}
