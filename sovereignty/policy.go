package sovereignty

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/internal/yamlpos"
)

// APIVersion is the policy file version this package reads.
const APIVersion = "strait.io/v1"

// Kind is the kind of a residency policy document.
const Kind = "ResidencyPolicy"

// Catalog scopes of a class.
const (
	// CatalogAll lets every gateway learn about the class's services (default).
	CatalogAll = "all"
	// CatalogRegionOnly keeps the class's services out of the catalog of
	// gateways outside the class's allowed regions.
	CatalogRegionOnly = "region-only"
)

// What a flow gets whose classifying header carries a value no matcher
// names (spec.onUnknownValue).
const (
	// OnUnknownRefuse refuses the flow (default): a misspelt or
	// differently cased marker can never slip past its class.
	OnUnknownRefuse = "refuse"
	// OnUnknownIgnore classifies the flow as if the header were absent.
	OnUnknownIgnore = "ignore"
)

// What a flow the gateway cannot read (TLS inside CONNECT, the passthrough
// port, tcp ports) gets from a class with header matchers (a class's
// unreadable field).
const (
	// UnreadableRestrict treats the flow as carrying the class (default):
	// a header the gateway cannot see cannot take traffic out of its class.
	UnreadableRestrict = "restrict"
	// UnreadableAllow leaves the flow out of the class unless another
	// matcher puts it in.
	UnreadableAllow = "allow"
)

// Limits of one policy; they keep the decision path allocation-free.
const (
	MaxClasses = 256
	MaxRegions = 256
)

// policy is a parsed policy file, every value with the node it came from.
type policy struct {
	file       string
	apiVersion string
	name       string
	regions    []yamlpos.Scalar // spec.regions: regions named outside any group
	groups     []group          // spec.regionGroups, in file order
	classes    []classSpec      // spec.classes
	deflt      string           // spec.default: allow or deny
	defaultAt  *yaml.Node       // spec.default's value node, or nil
	// onUnknownValue is spec.onUnknownValue: refuse (default) or ignore.
	onUnknownValue string
	specAt         *yaml.Node // spec's key node
	root           *yaml.Node // the document's mapping
	digest         string
	source         []byte
}

type group struct {
	name    string
	node    *yaml.Node
	members []yamlpos.Scalar
}

type classSpec struct {
	path        string // spec.classes[i]
	name        string
	nameNode    *yaml.Node
	node        *yaml.Node // the class mapping
	description string
	allowed     []yamlpos.Scalar
	allowedNode *yaml.Node
	allowedList bool // allowedRegions held a list
	services    []serviceMatch
	sources     []sourceMatch
	headers     []headerMatch
	headersNode *yaml.Node // match.headers' key node, or nil
	matchNode   *yaml.Node
	catalog     string
	catalogNode *yaml.Node
	// unreadable is the unreadable field as written, "" when absent.
	unreadable     string
	unreadableNode *yaml.Node
}

type serviceMatch struct {
	path      string
	node      *yaml.Node
	namespace string
	name      string
	labels    []yamlpos.Pair
}

type sourceMatch struct {
	path       string
	node       *yaml.Node
	cluster    string
	region     string
	regionNode *yaml.Node
	namespace  string
}

type headerMatch struct {
	path     string
	node     *yaml.Node
	name     string
	value    string
	hasValue bool
}

// LoadFile reads, validates and compiles the policy at path.
func LoadFile(path string) (*Engine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{What: "policy", Problems: []Problem{{File: path, Msg: "cannot read policy: " + readErr(err)}}}
	}
	return Compile(path, data)
}

func readErr(err error) string {
	if os.IsNotExist(err) {
		return "file does not exist"
	}
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// Compile parses and validates a policy document and compiles it into an
// Engine. file names the document in problems. Every problem found is
// reported at once in an *Error; a policy with any problem never compiles.
func Compile(file string, data []byte) (*Engine, error) {
	p, probs := parse(file, data)
	if p.root != nil {
		probs = append(probs, p.validate()...)
	}
	if len(probs) > 0 {
		yamlpos.Sort(probs)
		return nil, &Error{What: "policy", Problems: probs}
	}
	return compile(p), nil
}

// parse reads the structure of a policy: types, known keys, required keys.
func parse(file string, data []byte) (*policy, []Problem) {
	r := newReader(file)
	sum := sha256.Sum256(data)
	p := &policy{file: file, digest: "sha256:" + hex.EncodeToString(sum[:]), source: append([]byte(nil), data...)}
	root := r.document(data)
	if root == nil {
		return p, r.Problems()
	}
	if root.Kind != yaml.MappingNode {
		r.Problemf(root, "", "expected a policy (a mapping with apiVersion, kind, metadata and spec), found %s", yamlpos.Found(root))
		return p, r.Problems()
	}
	p.root = root
	top := r.Mapping(root, "", "apiVersion", "kind", "metadata", "spec")
	if f, ok := top["apiVersion"]; !ok {
		r.Missing(root, "apiVersion", fmt.Sprintf("the policy file version, %q", APIVersion))
	} else if v, ok := r.Text(f.Value, "apiVersion"); ok {
		p.apiVersion = v
		if v != APIVersion {
			r.Problemf(f.Value, "apiVersion", "unsupported version %q; this gateway reads %q", v, APIVersion)
		}
	}
	if f, ok := top["kind"]; !ok {
		r.Missing(root, "kind", strconv.Quote(Kind))
	} else if v, ok := r.Text(f.Value, "kind"); ok && v != Kind {
		r.Problemf(f.Value, "kind", "expected %q, found %q", Kind, v)
	}
	if f, ok := top["metadata"]; !ok {
		r.Missing(root, "metadata", "a mapping with the policy's name")
	} else {
		md := r.Mapping(f.Value, "metadata", "name", "description")
		if nf, ok := md["name"]; !ok {
			if yamlpos.IsNull(f.Value) || f.Value.Kind == yaml.MappingNode {
				r.Missing(f.Key, "metadata.name", "the policy's name")
			}
		} else if v, ok := r.Text(nf.Value, "metadata.name"); ok {
			p.name = v
			if !IsLabel(v) {
				r.Problemf(nf.Value, "metadata.name", "%q is not a DNS label (lower-case letters, digits, '-')", v)
			}
		}
		if df, ok := md["description"]; ok {
			r.Text(df.Value, "metadata.description")
		}
	}
	f, ok := top["spec"]
	if !ok {
		r.Missing(root, "spec", "the region groups and classes")
		return p, r.Problems()
	}
	p.specAt = f.Key
	spec := r.Mapping(f.Value, "spec", "regions", "regionGroups", "classes", "default", "onUnknownValue")
	if yamlpos.IsNull(f.Value) {
		r.Missing(f.Key, "spec", "the region groups and classes")
	}
	if rf, ok := spec["regions"]; ok {
		p.regions = r.Texts(rf.Value, "spec.regions")
	}
	if gf, ok := spec["regionGroups"]; ok {
		p.groups = r.groups(gf.Value)
	}
	if cf, ok := spec["classes"]; ok {
		for i, item := range r.List(cf.Value, "spec.classes") {
			p.classes = append(p.classes, r.class(item, index("spec.classes", i)))
		}
	}
	p.deflt = "allow"
	if df, ok := spec["default"]; ok {
		if v, ok := r.Text(df.Value, "spec.default"); ok {
			p.deflt, p.defaultAt = v, df.Value
			if v != "allow" && v != "deny" {
				r.Problemf(df.Value, "spec.default", "expected allow or deny, found %q", v)
			}
		}
	}
	p.onUnknownValue = OnUnknownRefuse
	if uf, ok := spec["onUnknownValue"]; ok {
		if v, ok := r.Text(uf.Value, "spec.onUnknownValue"); ok {
			p.onUnknownValue = v
			if v != OnUnknownRefuse && v != OnUnknownIgnore {
				r.Problemf(uf.Value, "spec.onUnknownValue", "expected refuse or ignore, found %q", v)
			}
		}
	}
	return p, r.Problems()
}

func (r reader) groups(n *yaml.Node) []group {
	var out []group
	if r.Node(n, "spec.regionGroups") == nil || yamlpos.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		r.Problemf(n, "spec.regionGroups", "expected a mapping of group name to regions, found %s", yamlpos.Found(n))
		return nil
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := r.Text(k, "spec.regionGroups")
		if !ok {
			continue
		}
		path := "spec.regionGroups." + name
		if first, dup := seen[name]; dup {
			r.Problemf(k, path, "duplicate group (already defined at line %d)", first.Line)
			continue
		}
		seen[name] = k
		g := group{name: name, node: k}
		if r.Node(v, path) != nil && v.Kind != yaml.SequenceNode {
			r.Problemf(v, path, "expected a list of regions, found %s", yamlpos.Found(v))
		} else {
			g.members = r.Texts(v, path)
		}
		out = append(out, g)
	}
	return out
}

func (r reader) class(n *yaml.Node, path string) classSpec {
	c := classSpec{path: path, node: n}
	fs := r.Mapping(n, path, "name", "description", "allowedRegions", "match", "catalog", "unreadable")
	if n != nil && (n.Kind != yaml.MappingNode || yamlpos.IsNull(n)) {
		if yamlpos.IsNull(n) {
			r.Problemf(n, path, "expected a class (a mapping with name, allowedRegions and match), found nothing")
		}
		return c
	}
	if f, ok := fs["name"]; !ok {
		r.Missing(n, path+".name", "the class name")
	} else if v, ok := r.Text(f.Value, path+".name"); ok {
		c.name, c.nameNode = v, f.Value
	}
	if f, ok := fs["description"]; ok {
		c.description, _ = r.Text(f.Value, path+".description")
	}
	if f, ok := fs["allowedRegions"]; !ok {
		r.Missing(n, path+".allowedRegions", "the regions or region groups this class may touch")
	} else {
		c.allowedNode = f.Key
		c.allowedList = f.Value.Kind == yaml.SequenceNode
		c.allowed = r.Texts(f.Value, path+".allowedRegions")
	}
	if f, ok := fs["match"]; !ok {
		r.Missing(n, path+".match", "services, sources or headers that put traffic in this class")
	} else {
		c.matchNode = f.Key
		mp := path + ".match"
		m := r.Mapping(f.Value, mp, "services", "sources", "headers")
		if sf, ok := m["services"]; ok {
			for i, item := range r.List(sf.Value, mp+".services") {
				c.services = append(c.services, r.serviceMatch(item, index(mp+".services", i)))
			}
		}
		if sf, ok := m["sources"]; ok {
			for i, item := range r.List(sf.Value, mp+".sources") {
				c.sources = append(c.sources, r.sourceMatch(item, index(mp+".sources", i)))
			}
		}
		if hf, ok := m["headers"]; ok {
			c.headersNode = hf.Key
			for i, item := range r.List(hf.Value, mp+".headers") {
				c.headers = append(c.headers, r.headerMatch(item, index(mp+".headers", i)))
			}
		}
	}
	c.catalog = CatalogAll
	if f, ok := fs["catalog"]; ok {
		if v, ok := r.Text(f.Value, path+".catalog"); ok {
			c.catalog, c.catalogNode = v, f.Value
			if v != CatalogAll && v != CatalogRegionOnly {
				r.Problemf(f.Value, path+".catalog", "expected %s or %s, found %q", CatalogAll, CatalogRegionOnly, v)
			}
		}
	}
	if f, ok := fs["unreadable"]; ok {
		if v, ok := r.Text(f.Value, path+".unreadable"); ok {
			c.unreadable, c.unreadableNode = v, f.Value
			if v != UnreadableRestrict && v != UnreadableAllow {
				r.Problemf(f.Value, path+".unreadable", "expected %s or %s, found %q", UnreadableRestrict, UnreadableAllow, v)
			}
		}
	}
	return c
}

func (r reader) serviceMatch(n *yaml.Node, path string) serviceMatch {
	m := serviceMatch{path: path, node: n}
	fs := r.Mapping(n, path, "namespace", "name", "labels")
	m.namespace = r.optText(fs, path, "namespace")
	m.name = r.optText(fs, path, "name")
	if f, ok := fs["labels"]; ok {
		m.labels = r.TextMap(f.Value, path+".labels")
	}
	return m
}

func (r reader) sourceMatch(n *yaml.Node, path string) sourceMatch {
	m := sourceMatch{path: path, node: n}
	fs := r.Mapping(n, path, "cluster", "region", "namespace")
	m.cluster = r.optText(fs, path, "cluster")
	m.region, m.regionNode = r.optText(fs, path, "region"), fs["region"].Value
	m.namespace = r.optText(fs, path, "namespace")
	return m
}

func (r reader) headerMatch(n *yaml.Node, path string) headerMatch {
	m := headerMatch{path: path, node: n}
	fs := r.Mapping(n, path, "name", "value")
	m.name = r.optText(fs, path, "name")
	if f, ok := fs["value"]; ok {
		m.value, m.hasValue = r.Text(f.Value, path+".value")
	}
	return m
}

// optText reads field name of a matcher at path as text: "" when it is
// absent or not text (reported).
func (r reader) optText(fs map[string]yamlpos.Entry, path, name string) string {
	f, ok := fs[name]
	if !ok {
		return ""
	}
	v, _ := r.Text(f.Value, path+"."+name)
	return v
}

// at renders a node's position as "file:line:column".
func at(file string, n *yaml.Node) string {
	if n == nil {
		return file
	}
	return fmt.Sprintf("%s:%d:%d", file, n.Line, n.Column)
}
