package sovereignty

import (
	"net/http"
	"net/textproto"
	"os"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// Topology is a federation as the tooling sees it: clusters, their
// regions and zones, and the services each exports. It comes from a
// topology file, a `strait dev --info` file or a live gateway's status.
type Topology struct {
	Clusters []TopologyCluster `json:"clusters"`
}

// TopologyCluster is one cluster of a Topology.
type TopologyCluster struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Zone   string `json:"zone,omitempty"`
	// Down marks a cluster whose gateway is not reachable.
	Down     bool              `json:"down,omitempty"`
	Services []TopologyService `json:"services"`
}

// TopologyService is one exported service of a cluster.
type TopologyService struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Ports     []int             `json:"ports"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Healthy counts healthy endpoints; 0 means none can take traffic.
	Healthy int `json:"healthy"`
}

// Key returns "namespace/name".
func (s TopologyService) Key() string { return s.Namespace + "/" + s.Name }

// Cluster returns the named cluster.
func (t *Topology) Cluster(name string) (*TopologyCluster, bool) {
	for i := range t.Clusters {
		if t.Clusters[i].Name == name {
			return &t.Clusters[i], true
		}
	}
	return nil, false
}

// Services returns every service key exported anywhere, sorted.
func (t *Topology) Services() []string {
	seen := map[string]bool{}
	for _, c := range t.Clusters {
		for _, s := range c.Services {
			seen[s.Key()] = true
		}
	}
	return sortedKeys(seen)
}

// LoadTopology reads a topology file (see docs/residency.md). A
// `strait dev --info` file is one too: its address keys are ignored.
func LoadTopology(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{What: "topology", Problems: []Problem{{File: path, Msg: "cannot read topology: " + readErr(err)}}}
	}
	return ParseTopology(path, data)
}

// ParseTopology parses and validates a topology document.
func ParseTopology(file string, data []byte) (*Topology, error) {
	r := newReader(file)
	top := &Topology{}
	if root := r.document(data); root != nil {
		fs := r.Mapping(root, "", "clusters", "trustDomain", "stateDir", "policy", "meshCA")
		if f, ok := fs["clusters"]; !ok {
			r.Missing(root, "clusters", "the list of clusters")
		} else {
			seen := map[string]*yaml.Node{}
			for i, item := range r.List(f.Value, "clusters") {
				path := index("clusters", i)
				c, ok := r.topologyCluster(item, path)
				if !ok {
					continue
				}
				if first := seen[c.Name]; first != nil {
					r.Problemf(item, path+".name", "cluster %q listed twice (first at line %d)", c.Name, first.Line)
					continue
				}
				seen[c.Name] = item
				top.Clusters = append(top.Clusters, c)
			}
		}
	}
	if probs := r.Problems(); len(probs) > 0 {
		yamlpos.Sort(probs)
		return nil, &Error{What: "topology", Problems: probs}
	}
	return top, nil
}

func (r reader) topologyCluster(n *yaml.Node, path string) (TopologyCluster, bool) {
	var c TopologyCluster
	ok := true
	fs := r.Mapping(n, path, "name", "region", "zone", "down", "services",
		"cloud", "admin", "connect", "passthrough", "data", "gossip", "imports", "control", "voter", "cliConfig") // the last ones: strait dev --info
	label := func(key string, required bool) string {
		f, present := fs[key]
		if !present {
			if required {
				r.Missing(n, path+"."+key, "")
				ok = false
			}
			return ""
		}
		v, good := r.Text(f.Value, path+"."+key)
		if good && !IsLabel(v) {
			r.Problemf(f.Value, path+"."+key, "%q is not a DNS label (lower-case letters, digits, '-')", v)
			good = false
		}
		ok = ok && good
		return v
	}
	c.Name = label("name", true)
	c.Region = label("region", true)
	c.Zone = label("zone", false)
	if f, present := fs["down"]; present {
		v, good := r.Text(f.Value, path+".down")
		b, err := strconv.ParseBool(v)
		if good && err != nil {
			r.Problemf(f.Value, path+".down", "expected true or false, found %q", v)
		}
		c.Down = b
	}
	if f, present := fs["services"]; present {
		seen := map[string]bool{}
		for i, item := range r.List(f.Value, path+".services") {
			sp := index(path+".services", i)
			s, good := r.topologyService(item, sp)
			if !good {
				ok = false
				continue
			}
			if seen[s.Key()] {
				r.Problemf(item, sp+".service", "service %s listed twice", s.Key())
				ok = false
				continue
			}
			seen[s.Key()] = true
			c.Services = append(c.Services, s)
		}
	}
	return c, ok
}

func (r reader) topologyService(n *yaml.Node, path string) (TopologyService, bool) {
	s := TopologyService{Healthy: 1}
	ok := true
	fs := r.Mapping(n, path, "service", "ports", "labels", "healthy", "endpoint")
	if f, present := fs["service"]; !present {
		r.Missing(n, path+".service", "namespace/name")
		ok = false
	} else if v, good := r.Text(f.Value, path+".service"); good {
		ns, name, cut := strings.Cut(v, "/")
		if !cut || !IsLabel(ns) || !IsLabel(name) {
			r.Problemf(f.Value, path+".service", "want namespace/name with DNS labels, found %q", v)
			ok = false
		}
		s.Namespace, s.Name = ns, name
	} else {
		ok = false
	}
	if f, present := fs["ports"]; present {
		for i, p := range r.Texts(f.Value, path+".ports") {
			port, err := strconv.Atoi(p.Value)
			if err != nil || port < 1 || port > 65535 {
				r.Problemf(p.Node, index(path+".ports", i), "expected a port 1-65535, found %q", p.Value)
				ok = false
				continue
			}
			s.Ports = append(s.Ports, port)
		}
	}
	if f, present := fs["labels"]; present {
		for _, l := range r.TextMap(f.Value, path+".labels") {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[l.Key] = l.Value
		}
	}
	if f, present := fs["healthy"]; present {
		v, good := r.Text(f.Value, path+".healthy")
		h, err := strconv.Atoi(v)
		if good && (err != nil || h < 0) {
			r.Problemf(f.Value, path+".healthy", "expected a count of healthy endpoints (0 or more), found %q", v)
			ok = false
		}
		s.Healthy = h
	}
	return s, ok
}

// Variant is one way a flow can present itself to the classifier besides
// its service and source: as L4, with a classifying header value, from a
// namespace a source matcher names, or unreadable. The tooling tries each.
type Variant struct {
	// Label says it for people: "tcp", "X-Data-Residency: eu",
	// "namespace eu-customers", "unreadable".
	Label     string
	Headers   http.Header
	Namespace string
	// Unreadable marks a flow the gateway cannot read (Flow.Unreadable);
	// such a variant has no Headers.
	Unreadable bool
}

// Variants returns the flow variants that can change a classification
// under this policy: plain L4 first, then each header value and each
// source namespace the policy names, sorted.
func (e *Engine) Variants() []Variant {
	out := []Variant{{Label: "tcp"}}
	seen := map[string]Variant{}
	for i := range e.classes {
		for _, m := range e.classes[i].headers {
			v := m.value
			if !m.hasValue {
				v = "(any)"
			}
			label := m.key + ": " + v
			seen[label] = Variant{Label: label, Headers: http.Header{textproto.CanonicalMIMEHeaderKey(m.key): {v}}}
		}
		for _, m := range e.classes[i].sources {
			if m.namespace != "" {
				label := "namespace " + m.namespace
				seen[label] = Variant{Label: label, Namespace: m.namespace}
			}
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, seen[k])
	}
	return out
}
