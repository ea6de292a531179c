package drill

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/yamlpos"
	"github.com/straitmesh/strait/sovereignty"
)

// FederationKind is the kind of a federation file.
const FederationKind = "Federation"

// Federation says where a drill runs: each cluster's region and cloud,
// and for each of its gateways the admin address that takes faults and
// the entry where the drill's clients send their traffic.
//
//	apiVersion: strait.io/v1
//	kind: Federation
//	clusters:
//	  - name: aws-eu-west-1
//	    region: eu-west
//	    cloud: aws
//	    gateways:
//	      - name: gw-0
//	        admin: 10.0.1.5:17000
//	        adminTokenFile: /etc/strait/drill/aws-eu-west-1.token
//	        connect: 10.0.1.5:17003
//	        imports:
//	          billing/ledger:8080: 10.0.1.5:18081
type Federation struct {
	APIVersion string              `mapstructure:"apiVersion" json:"apiVersion"`
	Kind       string              `mapstructure:"kind" json:"kind"`
	Metadata   map[string]string   `mapstructure:"metadata" json:"metadata,omitempty"`
	Clusters   []FederationCluster `mapstructure:"clusters" json:"clusters"`
	// file is where it was read from, for messages.
	file string
}

// FederationCluster is one cluster of a Federation.
type FederationCluster struct {
	Name     string              `mapstructure:"name" json:"name,omitempty"`
	Region   string              `mapstructure:"region" json:"region"`
	Cloud    string              `mapstructure:"cloud" json:"cloud,omitempty"`
	Gateways []FederationGateway `mapstructure:"gateways" json:"gateways"`
}

// FederationGateway is one gateway of a cluster.
type FederationGateway struct {
	// Name tells the gateways of a cluster apart (a step's gateway field);
	// default gw-<index>.
	Name string `mapstructure:"name" json:"name,omitempty"`
	// Admin is the gateway's admin address (listen.admin), host:port.
	Admin string `mapstructure:"admin" json:"admin"`
	// AdminTokenFile holds the gateway's admin token (admin.tokenFile),
	// when it has one.
	AdminTokenFile string `mapstructure:"adminTokenFile" json:"adminTokenFile,omitempty"`
	// Connect is the gateway's HTTP CONNECT port (listen.connect), where
	// the drill's clients in this cluster enter.
	Connect string `mapstructure:"connect" json:"connect,omitempty"`
	// Imports map a service port (namespace/name:port) to the gateway's
	// import address for it; traffic to such a service enters there
	// instead of through Connect.
	Imports map[string]string `mapstructure:"imports" json:"imports,omitempty"`

	token string // read from AdminTokenFile
}

// LoadFederation reads and checks a federation file (YAML or JSON).
// Every problem names file:line:column and the field; admin token files
// are read too, so that a drill never starts with a gateway it cannot
// reach.
func LoadFederation(path string) (*Federation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read federation file: %w", err)
	}
	f, err := ParseFederation(path, data)
	if err != nil {
		return nil, err
	}
	for ci := range f.Clusters {
		for gi := range f.Clusters[ci].Gateways {
			g := &f.Clusters[ci].Gateways[gi]
			if g.AdminTokenFile == "" {
				continue
			}
			tok, err := os.ReadFile(g.AdminTokenFile)
			if err != nil {
				return nil, fmt.Errorf("federation %s: clusters[%d].gateways[%d].adminTokenFile: %w", path, ci, gi, err)
			}
			g.token = strings.TrimSpace(string(tok))
			if g.token == "" {
				return nil, fmt.Errorf("federation %s: clusters[%d].gateways[%d].adminTokenFile %s is empty", path, ci, gi, g.AdminTokenFile)
			}
		}
	}
	return f, nil
}

// ParseFederation parses and checks a federation document; file names it
// in problems. All problems are reported together in an *Error.
func ParseFederation(file string, data []byte) (*Federation, error) {
	r := yamlpos.NewReader(yamlpos.Options{File: file, MaxBytes: MaxFileBytes, MaxNodes: 100_000, MaxProblems: 200})
	fail := func() error {
		ps := r.Problems()
		yamlpos.Sort(ps)
		return &Error{What: "federation", Problems: ps}
	}
	root, ok := r.Parse(data)
	if !ok {
		return nil, fail()
	}
	if root == nil || yamlpos.IsNull(root) || root.Kind != yaml.MappingNode {
		r.Problemf(root, "", "expected a mapping with apiVersion, kind and clusters, found %s", yamlpos.Found(root))
		return nil, fail()
	}
	v, _ := r.Value(root, reflect.TypeFor[Federation](), "")
	if len(r.Problems()) > 0 || r.Stopped() {
		return nil, fail()
	}
	f := &Federation{file: file}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: f, ErrorUnused: true})
	if err != nil {
		return nil, fmt.Errorf("federation %s: %w", file, err)
	}
	if err := dec.Decode(v); err != nil {
		r.Problemf(root, "", "cannot decode: %v", err)
		return nil, fail()
	}
	at := func(key string) *yaml.Node {
		if n, ok := r.At(key); ok {
			return n
		}
		return root
	}
	if f.APIVersion != APIVersion {
		r.Problemf(at("apiVersion"), "apiVersion", "expected %q, found %q", APIVersion, f.APIVersion)
	}
	if f.Kind != FederationKind {
		r.Problemf(at("kind"), "kind", "expected %q, found %q", FederationKind, f.Kind)
	}
	if len(f.Clusters) == 0 {
		r.Problemf(at("clusters"), "clusters", "expected at least one cluster")
	}
	seen := map[string]bool{}
	for ci := range f.Clusters {
		c := &f.Clusters[ci]
		key := fmt.Sprintf("clusters.%d", ci)
		if !isLabel(c.Name) {
			r.Problemf(at(key), key+".name", "expected a cluster name (a DNS label), found %q", c.Name)
		} else if seen[c.Name] {
			r.Problemf(at(key+".name"), key+".name", "cluster %s is listed twice", c.Name)
		}
		seen[c.Name] = true
		if !isLabel(c.Region) {
			r.Problemf(at(key), key+".region", "expected a region (a DNS label), found %q", c.Region)
		}
		if c.Cloud != "" && !isLabel(c.Cloud) {
			r.Problemf(at(key+".cloud"), key+".cloud", "expected a cloud (a DNS label), found %q", c.Cloud)
		}
		if len(c.Gateways) == 0 {
			r.Problemf(at(key), key+".gateways", "expected at least one gateway with its admin address")
		}
		names := map[string]bool{}
		for gi := range c.Gateways {
			g := &c.Gateways[gi]
			gk := fmt.Sprintf("%s.gateways.%d", key, gi)
			if g.Name == "" {
				g.Name = fmt.Sprintf("gw-%d", gi)
			}
			if names[g.Name] {
				r.Problemf(at(gk), gk+".name", "gateway %s is listed twice in cluster %s", g.Name, c.Name)
			}
			names[g.Name] = true
			if _, _, err := net.SplitHostPort(g.Admin); err != nil {
				r.Problemf(at(gk), gk+".admin", "expected the gateway's admin address host:port, found %q", g.Admin)
			}
			if g.Connect != "" {
				if _, _, err := net.SplitHostPort(g.Connect); err != nil {
					r.Problemf(at(gk+".connect"), gk+".connect", "expected host:port, found %q", g.Connect)
				}
			}
			for k, addr := range g.Imports {
				if _, err := parseService(k); err != nil {
					r.Problemf(at(gk+".imports"), gk+".imports", "%s: expected namespace/name:port", k)
				}
				if _, _, err := net.SplitHostPort(addr); err != nil {
					r.Problemf(at(gk+".imports"), gk+".imports."+k, "expected host:port, found %q", addr)
				}
			}
		}
	}
	if len(r.Problems()) > 0 {
		return nil, fail()
	}
	return f, nil
}

// File is where the federation was read from.
func (f *Federation) File() string { return f.file }

// Cluster returns the named cluster.
func (f *Federation) Cluster(name string) (*FederationCluster, bool) {
	for i := range f.Clusters {
		if f.Clusters[i].Name == name {
			return &f.Clusters[i], true
		}
	}
	return nil, false
}

// Infos lists the clusters as a Result holds them.
func (f *Federation) Infos() []ClusterInfo {
	out := make([]ClusterInfo, 0, len(f.Clusters))
	for _, c := range f.Clusters {
		out = append(out, ClusterInfo{Name: c.Name, Region: c.Region, Cloud: c.Cloud})
	}
	return out
}

// Check says which names the drill uses that the federation lacks:
// clusters, gateways, regions and clouds of its traffic and steps.
func (f *Federation) Check(d *Drill) error {
	regions, clouds := map[string]bool{}, map[string]bool{}
	for _, c := range f.Clusters {
		regions[c.Region] = true
		if c.Cloud != "" {
			clouds[c.Cloud] = true
		}
	}
	var probs []string
	cluster := func(where, name string) {
		if _, ok := f.Cluster(name); !ok {
			probs = append(probs, fmt.Sprintf("%s: no cluster %s in the federation%s", where, name, suggest(name, f.names())))
		}
	}
	for i, t := range d.Traffic {
		for _, c := range t.From {
			cluster(fmt.Sprintf("traffic[%d] (%s).from", i, t.Name), c)
		}
	}
	for i, s := range d.Timeline {
		where := fmt.Sprintf("timeline[%d] (%s)", i, s.Name)
		for _, c := range slices.Concat([]string{s.Cluster}, s.Clusters, s.Link) {
			if c != "" {
				cluster(where, c)
			}
		}
		if s.Gateway != "" {
			if c, ok := f.Cluster(s.Cluster); ok && !slices.ContainsFunc(c.Gateways, func(g FederationGateway) bool { return g.Name == s.Gateway }) {
				probs = append(probs, fmt.Sprintf("%s: cluster %s has no gateway %s", where, s.Cluster, s.Gateway))
			}
		}
		for _, r := range append([]string{s.Region}, s.Regions...) {
			if r != "" && !regions[r] {
				probs = append(probs, fmt.Sprintf("%s: no cluster of the federation is in region %s", where, r))
			}
		}
		if s.Cloud != "" && !clouds[s.Cloud] {
			probs = append(probs, fmt.Sprintf("%s: no cluster of the federation is in cloud %s", where, s.Cloud))
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("drill %s does not fit federation %s:\n  %s", d.Name, f.file, strings.Join(probs, "\n  "))
	}
	return nil
}

func (f *Federation) names() []string {
	out := make([]string, 0, len(f.Clusters))
	for _, c := range f.Clusters {
		out = append(out, c.Name)
	}
	return out
}

func suggest(name string, known []string) string {
	return yamlpos.Suggest(name, known)
}

func isLabel(s string) bool { return sovereignty.IsLabel(s) }

// parseService reads namespace/name:port.
func parseService(s string) (Service, error) {
	svc, portText, _ := strings.Cut(s, ":")
	ns, name, cut := strings.Cut(svc, "/")
	p, err := strconv.Atoi(portText)
	if !cut || !isLabel(ns) || !isLabel(name) || err != nil || p < 1 || p > 65535 {
		return Service{}, fmt.Errorf("expected namespace/name:port, found %q", s)
	}
	return Service{Namespace: ns, Name: name, Port: p}, nil
}
