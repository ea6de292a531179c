package drill

import (
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"

	"github.com/straitmesh/strait/internal/yamlpos"
	"github.com/straitmesh/strait/sovereignty"
)

// Problem is one thing wrong with a drill file, positioned at the node it
// is about; its Key is a field path such as timeline[2].kind.
type Problem = yamlpos.Problem

// Error holds every problem found in one drill file, What "drill". It is
// the type policy files fail with too: the CLI exits with code 2 for it.
type Error = yamlpos.Error

// stepFields are the keys a step may have; which apply depends on its kind.
var stepFields = []string{"name", "at", "kind", "description", "cluster", "gateway", "region", "cloud",
	"regions", "clusters", "link", "delay", "jitter", "percent", "step"}

// kindFields are the target and parameter keys each kind takes, required
// ones first (count in kindRequired).
var kindFields = map[FaultKind][]string{
	Kill:       {"cluster", "gateway"},
	Freeze:     {"cluster", "gateway"},
	Blackhole:  {"cluster"},
	Drain:      {"cluster"},
	Partition:  {"regions", "clusters"},
	Latency:    {"link", "delay", "jitter"},
	Loss:       {"link", "percent"},
	LoseRegion: {"region"},
	LoseCloud:  {"cloud"},
	Restore:    {"step"},
}

// commonStepFields apply to every kind.
var commonStepFields = []string{"name", "at", "kind", "description"}

// LoadFile reads and parses the drill file at path.
func LoadFile(path string) (*Drill, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*os.PathError); ok {
			msg = pe.Err.Error()
		}
		return nil, &Error{What: "drill", Problems: []Problem{{File: path, Msg: "cannot read drill: " + msg}}}
	}
	return Parse(path, data)
}

// Parse parses and validates a drill document; filename names it in
// problems. Every problem found is reported at once, sorted by position,
// in an *Error; a drill with any problem is not returned.
func Parse(filename string, data []byte) (*Drill, error) {
	r := &reader{Reader: yamlpos.NewReader(yamlpos.Options{File: filename, Style: yamlpos.DocumentPaths,
		MaxBytes: MaxFileBytes, MaxNodes: 100_000, MaxProblems: 500})}
	d := r.drill(data)
	if probs := r.Problems(); len(probs) > 0 {
		yamlpos.Sort(probs)
		return nil, &Error{What: "drill", Problems: probs}
	}
	return d, nil
}

type reader struct {
	*yamlpos.Reader
	steps map[string]stepRef // by name
}

// stepRef is what later steps and expectations need of a step.
type stepRef struct {
	kind     FaultKind // "" when the step's kind is not known
	at       time.Duration
	node     *yaml.Node // the step's mapping
	restores string     // for a restore, the step it undoes
}

func (r *reader) drill(data []byte) *Drill {
	root, ok := r.Parse(data)
	if ok && root == nil {
		r.Problemf(nil, "", "file is empty")
	}
	if !ok || r.Node(root, "") == nil {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		r.Problemf(root, "", "expected a drill (a mapping with apiVersion, kind, metadata, duration, traffic and timeline), found %s", yamlpos.Found(root))
		return nil
	}
	d := &Drill{}
	top := r.Mapping(root, "", "apiVersion", "kind", "metadata", "duration", "traffic", "timeline", "expect", "stop")
	if f, ok := top["apiVersion"]; !ok {
		r.Missing(root, "apiVersion", strconv.Quote(APIVersion))
	} else if v, ok := r.Text(f.Value, "apiVersion"); ok && v != APIVersion {
		r.Problemf(f.Value, "apiVersion", "unsupported version %q; this strait reads %q", v, APIVersion)
	}
	if f, ok := top["kind"]; !ok {
		r.Missing(root, "kind", strconv.Quote(Kind))
	} else if v, ok := r.Text(f.Value, "kind"); ok && v != Kind {
		r.Problemf(f.Value, "kind", "expected %q, found %q", Kind, v)
	}
	if f, ok := top["metadata"]; !ok {
		r.Missing(root, "metadata", "a mapping with the drill's name")
	} else {
		md := r.Mapping(f.Value, "metadata", "name", "description")
		if nf, ok := md["name"]; !ok {
			r.Missing(f.Key, "metadata.name", "the drill's name")
		} else {
			d.Name = r.label(nf.Value, "metadata.name")
		}
		if df, ok := md["description"]; ok {
			d.Description, _ = r.Text(df.Value, "metadata.description")
		}
	}
	if f, ok := top["duration"]; !ok {
		r.Missing(root, "duration", "how long the drill runs, e.g. 2m")
	} else {
		d.Duration = r.duration(f.Value, "duration", false)
		if d.Duration > MaxDuration {
			r.Problemf(f.Value, "duration", "at most %s, found %s", MaxDuration, d.Duration)
			d.Duration = 0
		}
	}
	if f, ok := top["traffic"]; !ok {
		r.Missing(root, "traffic", "the requests the drill drives")
	} else {
		items := r.List(f.Value, "traffic")
		if len(items) == 0 {
			r.Problemf(f.Value, "traffic", "expected at least one traffic entry")
		}
		names := map[string]*yaml.Node{}
		for i, item := range items {
			path := yamlpos.DocumentPaths.Index("traffic", i)
			t := r.traffic(item, path, d.Duration)
			if t.Name == "" {
				t.Name = path
			} else if first := names[t.Name]; first != nil {
				r.Problemf(item, path+".name", "traffic %q named twice (first at line %d)", t.Name, first.Line)
			}
			names[t.Name] = item
			d.Traffic = append(d.Traffic, t)
		}
	}
	r.steps = map[string]stepRef{}
	if f, ok := top["timeline"]; !ok {
		r.Missing(root, "timeline", "the faults and restores, in order")
	} else {
		var prev *stepRef
		for i, item := range r.List(f.Value, "timeline") {
			path := yamlpos.DocumentPaths.Index("timeline", i)
			s, at, ok := r.step(item, path, d.Duration)
			if ok && prev != nil && s.At < prev.at {
				r.Problemf(at, path+".at", "%s is before the previous step's %s; list steps in the order they happen", s.At, prev.at)
			}
			if ok {
				prev = &stepRef{at: s.At}
			}
			d.Timeline = append(d.Timeline, s)
		}
	}
	if f, ok := top["expect"]; ok {
		d.Expect = r.expect(f.Value, d.Traffic)
	}
	if f, ok := top["stop"]; ok {
		d.Stop = r.stop(f.Value)
	}
	return d
}

func (r *reader) traffic(n *yaml.Node, path string, drill time.Duration) Traffic {
	t := Traffic{Protocol: ProtocolHTTP}
	fs := r.Mapping(n, path, "name", "from", "to", "protocol", "rate", "start", "duration", "path", "headers")
	if yamlpos.IsNull(n) {
		r.Problemf(n, path, "expected a traffic entry (a mapping with from, to and rate), found nothing")
		return t
	}
	if f, ok := fs["name"]; ok {
		t.Name = r.label(f.Value, path+".name")
	}
	if f, ok := fs["from"]; !ok {
		r.Missing(n, path+".from", "the clusters the clients run in")
	} else {
		t.From = r.labels(f.Value, path+".from", "cluster", 1, 0)
	}
	if f, ok := fs["to"]; !ok {
		r.Missing(n, path+".to", "the service as namespace/name:port")
	} else {
		t.To = r.service(f.Value, path+".to", true)
	}
	if f, ok := fs["protocol"]; ok {
		if v, ok := r.Text(f.Value, path+".protocol"); ok {
			t.Protocol = v
			if !slices.Contains([]string{ProtocolHTTP, ProtocolGRPC, ProtocolTCP}, v) {
				r.Problemf(f.Value, path+".protocol", "unknown protocol %q%s", v, oneOf(v, []string{ProtocolHTTP, ProtocolGRPC, ProtocolTCP}))
			}
		}
	}
	if f, ok := fs["rate"]; !ok {
		r.Missing(n, path+".rate", "requests per second")
	} else if v, ok := r.Text(f.Value, path+".rate"); ok {
		rate, err := strconv.Atoi(v)
		if err != nil || rate < 1 || rate > MaxRate {
			r.Problemf(f.Value, path+".rate", "expected requests per second, an integer from 1 to %d, found %q", MaxRate, v)
		}
		t.Rate = rate
	}
	if f, ok := fs["start"]; ok {
		t.Start = r.duration(f.Value, path+".start", true)
		if drill > 0 && t.Start >= drill {
			r.Problemf(f.Value, path+".start", "%s is not within the drill's duration %s", t.Start, drill)
		}
	}
	if f, ok := fs["duration"]; ok {
		t.Duration = r.duration(f.Value, path+".duration", false)
		if drill > 0 && t.Start+t.Duration > drill {
			r.Problemf(f.Value, path+".duration", "traffic would run to %s, past the drill's duration %s; leave duration out to run to the end", t.Start+t.Duration, drill)
		}
	}
	if f, ok := fs["path"]; ok {
		if v, ok := r.Text(f.Value, path+".path"); ok {
			t.Path = v
			switch {
			case t.Protocol != ProtocolHTTP:
				r.Problemf(f.Key, path+".path", "only http traffic has a path; this traffic is %s", t.Protocol)
			case !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t\r\n"):
				r.Problemf(f.Value, path+".path", "expected a request path starting with '/', found %q", v)
			}
		}
	}
	if f, ok := fs["headers"]; ok {
		if t.Protocol == ProtocolTCP {
			r.Problemf(f.Key, path+".headers", "tcp traffic has no headers; use http or grpc")
		}
		for _, h := range r.TextMap(f.Value, path+".headers") {
			hk := path + ".headers." + h.Key
			switch {
			case !httpguts.ValidHeaderFieldName(h.Key):
				r.Problemf(h.Node, hk, "%q is not an HTTP header name", h.Key)
			case !httpguts.ValidHeaderFieldValue(h.Value):
				r.Problemf(h.Node, hk, "the value holds a character a header cannot carry")
			}
			if t.Headers == nil {
				t.Headers = map[string]string{}
			}
			t.Headers[h.Key] = h.Value
		}
	}
	return t
}

// step reads one timeline entry; at is the node of its offset, ok false
// when the offset could not be read.
func (r *reader) step(n *yaml.Node, path string, drill time.Duration) (s Step, at *yaml.Node, ok bool) {
	fs := r.Mapping(n, path, stepFields...)
	if yamlpos.IsNull(n) {
		r.Problemf(n, path, "expected a step (a mapping with name, at and kind), found nothing")
		return s, nil, false
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return s, nil, false
	}
	defer func() {
		if s.Name == "" {
			return
		}
		ref := stepRef{at: s.At, node: n, restores: s.Restores}
		if _, known := kindFields[s.Kind]; known {
			ref.kind = s.Kind
		}
		r.steps[s.Name] = ref
	}()
	if f, present := fs["name"]; !present {
		r.Missing(n, path+".name", "the step's name, for restores and reports")
	} else if s.Name = r.label(f.Value, path+".name"); s.Name != "" {
		if first, dup := r.steps[s.Name]; dup {
			r.Problemf(f.Value, path+".name", "step %q named twice (first at line %d)", s.Name, first.node.Line)
			s.Name = ""
		}
	}
	if f, present := fs["at"]; !present {
		r.Missing(n, path+".at", "the offset from the drill's start, e.g. 10s")
	} else if v, good := r.Text(f.Value, path+".at"); good {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			r.Problemf(f.Value, path+".at", "expected an offset such as 0s, 10s or 1m30s, found %q", v)
		case d < 0:
			r.Problemf(f.Value, path+".at", "an offset cannot be negative, found %s", v)
		case drill > 0 && d >= drill:
			r.Problemf(f.Value, path+".at", "%s is not within the drill's duration %s", d, drill)
		default:
			s.At, at, ok = d, f.Value, true
		}
	}
	f, present := fs["kind"]
	if !present {
		r.Missing(n, path+".kind", "one of "+kindList())
		return s, at, ok
	}
	v, good := r.Text(f.Value, path+".kind")
	if !good {
		return s, at, ok
	}
	s.Kind = FaultKind(v)
	takes, known := kindFields[s.Kind]
	if !known {
		names := make([]string, len(FaultKinds))
		for i, k := range FaultKinds {
			names[i] = string(k)
		}
		r.Problemf(f.Value, path+".kind", "unknown fault %q%s", v, oneOf(v, names))
		return s, at, ok
	}
	for _, name := range stepFields {
		if e, set := fs[name]; set && !slices.Contains(commonStepFields, name) && !slices.Contains(takes, name) {
			r.Problemf(e.Key, path+"."+name, "a %s step takes no %s (it takes %s)", s.Kind, name, strings.Join(takes, ", "))
		}
	}
	need := func(key, what string) (yamlpos.Entry, bool) {
		e, set := fs[key]
		if !set {
			r.Missing(n, path+"."+key, what)
		}
		return e, set
	}
	switch s.Kind {
	case Kill, Freeze, Blackhole, Drain:
		if e, set := need("cluster", "the cluster whose gateways the fault hits"); set {
			s.Cluster = r.label(e.Value, path+".cluster")
		}
		if e, set := fs["gateway"]; set && slices.Contains(takes, "gateway") {
			s.Gateway = r.label(e.Value, path+".gateway")
		}
	case LoseRegion:
		if e, set := need("region", "the region to lose"); set {
			s.Region = r.label(e.Value, path+".region")
		}
	case LoseCloud:
		if e, set := need("cloud", "the cloud to lose, as clusters name it"); set {
			s.Cloud = r.label(e.Value, path+".cloud")
		}
	case Partition:
		re, hasR := fs["regions"]
		ce, hasC := fs["clusters"]
		switch {
		case hasR && hasC:
			r.Problemf(ce.Key, path+".clusters", "a partition is between two regions or two clusters, not both")
		case hasR:
			s.Regions = r.labels(re.Value, path+".regions", "region", 2, 2)
		case hasC:
			s.Clusters = r.labels(ce.Value, path+".clusters", "cluster", 2, 2)
		default:
			r.Missing(n, path+".regions", "the two sides of the partition: regions: [a, b] or clusters: [a, b]")
		}
	case Latency, Loss:
		if e, set := need("link", "the two clusters at the ends of the link: [a, b]"); set {
			s.Link = r.labels(e.Value, path+".link", "cluster", 2, 2)
		}
		if s.Kind == Latency {
			if e, set := need("delay", "the delay added, e.g. 200ms"); set {
				s.Delay = r.duration(e.Value, path+".delay", false)
			}
			if e, set := fs["jitter"]; set {
				s.Jitter = r.duration(e.Value, path+".jitter", true)
			}
		} else if e, set := need("percent", "the share of packets dropped, 0 to 100"); set {
			s.Percent = r.percent(e.Value, path+".percent")
		}
	case Restore:
		if e, set := need("step", "the name of the earlier step to undo"); set {
			if target, good := r.Text(e.Value, path+".step"); good {
				s.Restores = target
				ref, found := r.steps[target]
				switch {
				case !found:
					r.Problemf(e.Value, path+".step", "no earlier step named %q%s", target, r.stepSuggestion(target))
				case ref.kind == Restore:
					r.Problemf(e.Value, path+".step", "step %q is a restore; name the fault it undid", target)
				}
				first := 0
				for _, other := range r.steps {
					if found && other.kind == Restore && other.restores == target && (first == 0 || other.node.Line < first) {
						first = other.node.Line
					}
				}
				if first > 0 {
					r.Problemf(e.Value, path+".step", "step %q is already restored by the step at line %d", target, first)
				}
			}
		}
	}
	return s, at, ok
}

func (r *reader) stepSuggestion(name string) string {
	var names []string
	for k, ref := range r.steps {
		if ref.kind != Restore {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	if s := yamlpos.Suggest(name, names); strings.HasPrefix(s, " (did you mean") {
		return s
	}
	return ""
}

func (r *reader) expect(n *yaml.Node, traffic []Traffic) Expect {
	var e Expect
	fs := r.Mapping(n, "expect", "services", "residency")
	if f, ok := fs["services"]; ok {
		for i, item := range r.List(f.Value, "expect.services") {
			path := yamlpos.DocumentPaths.Index("expect.services", i)
			e.Services = append(e.Services, r.serviceExpectation(item, path, traffic))
		}
	}
	if f, ok := fs["residency"]; ok {
		for i, item := range r.List(f.Value, "expect.residency") {
			path := yamlpos.DocumentPaths.Index("expect.residency", i)
			e.Residency = append(e.Residency, r.residencyExpectation(item, path))
		}
	}
	return e
}

func (r *reader) serviceExpectation(n *yaml.Node, path string, traffic []Traffic) ServiceExpectation {
	var x ServiceExpectation
	fs := r.Mapping(n, path, "service", "maxFailoverTime", "maxErrorRate", "maxAddedP99")
	if n == nil || yamlpos.IsNull(n) || n.Kind != yaml.MappingNode {
		if yamlpos.IsNull(n) {
			r.Problemf(n, path, "expected an expectation (a mapping with service and bounds), found nothing")
		}
		return x
	}
	if f, ok := fs["service"]; !ok {
		r.Missing(n, path+".service", "namespace/name or namespace/name:port")
	} else {
		x.Service = r.service(f.Value, path+".service", false)
		if x.Service.Name != "" && !slices.ContainsFunc(traffic, func(t Traffic) bool {
			return t.To.Key() == x.Service.Key() && (x.Service.Port == 0 || t.To.Port == x.Service.Port)
		}) {
			r.Problemf(f.Value, path+".service", "no traffic goes to %s; an expectation needs traffic to measure", x.Service)
		}
	}
	bounds := 0
	if f, ok := fs["maxFailoverTime"]; ok {
		x.MaxFailoverTime = r.duration(f.Value, path+".maxFailoverTime", false)
		bounds++
	}
	if f, ok := fs["maxErrorRate"]; ok {
		p := r.percent(f.Value, path+".maxErrorRate")
		x.MaxErrorRate = &p
		bounds++
	}
	if f, ok := fs["maxAddedP99"]; ok {
		x.MaxAddedP99 = r.duration(f.Value, path+".maxAddedP99", true)
		bounds++
	}
	if bounds == 0 {
		r.Problemf(n, path, "expected at least one of maxFailoverTime, maxErrorRate and maxAddedP99")
	}
	return x
}

func (r *reader) residencyExpectation(n *yaml.Node, path string) ResidencyExpectation {
	var x ResidencyExpectation
	fs := r.Mapping(n, path, "class", "neverReaches", "refusedWhile")
	if n == nil || yamlpos.IsNull(n) || n.Kind != yaml.MappingNode {
		if yamlpos.IsNull(n) {
			r.Problemf(n, path, "expected a residency verdict (a mapping with class and neverReaches or refusedWhile), found nothing")
		}
		return x
	}
	if f, ok := fs["class"]; !ok {
		r.Missing(n, path+".class", "the residency class, as the policy names it")
	} else {
		x.Class = r.label(f.Value, path+".class")
	}
	nf, hasNever := fs["neverReaches"]
	wf, hasWhile := fs["refusedWhile"]
	if !hasNever && !hasWhile {
		r.Problemf(n, path, "expected neverReaches, refusedWhile or both")
	}
	if hasNever {
		x.NeverReaches = r.labels(nf.Value, path+".neverReaches", "region", 1, 0)
	}
	if hasWhile {
		if v, ok := r.Text(wf.Value, path+".refusedWhile"); ok {
			x.RefusedWhile = v
			ref, found := r.steps[v]
			switch {
			case !found:
				r.Problemf(wf.Value, path+".refusedWhile", "no step named %q%s", v, r.stepSuggestion(v))
			case ref.kind == Restore:
				r.Problemf(wf.Value, path+".refusedWhile", "step %q is a restore; name the fault during which the class is refused", v)
			}
		}
	}
	return x
}

func (r *reader) stop(n *yaml.Node) Stop {
	var s Stop
	fs := r.Mapping(n, "stop", "errorRateAbove", "anyResidencyViolation", "gatewayNotReadyFor")
	if f, ok := fs["errorRateAbove"]; ok {
		m := r.Mapping(f.Value, "stop.errorRateAbove", "percent", "for")
		if f.Value.Kind == yaml.MappingNode {
			e := &ErrorRateStop{}
			if pf, ok := m["percent"]; !ok {
				r.Missing(f.Value, "stop.errorRateAbove.percent", "the error rate, 0 to 100")
			} else {
				e.Percent = r.percent(pf.Value, "stop.errorRateAbove.percent")
			}
			if ff, ok := m["for"]; !ok {
				r.Missing(f.Value, "stop.errorRateAbove.for", "how long the rate must hold, e.g. 10s")
			} else {
				e.For = r.duration(ff.Value, "stop.errorRateAbove.for", false)
			}
			s.ErrorRateAbove = e
		}
	}
	if f, ok := fs["anyResidencyViolation"]; ok {
		if v, ok := r.Text(f.Value, "stop.anyResidencyViolation"); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				r.Problemf(f.Value, "stop.anyResidencyViolation", "expected true or false, found %q", v)
			}
			s.AnyResidencyViolation = b
		}
	}
	if f, ok := fs["gatewayNotReadyFor"]; ok {
		s.GatewayNotReadyFor = r.duration(f.Value, "stop.gatewayNotReadyFor", false)
	}
	return s
}

// label reads a DNS label: a cluster, region, cloud, gateway or name.
func (r *reader) label(n *yaml.Node, key string) string {
	v, ok := r.Text(n, key)
	if !ok {
		return ""
	}
	if !sovereignty.IsLabel(v) {
		r.Problemf(n, key, "%q is not a DNS label (lower-case letters, digits, '-')", v)
		return ""
	}
	return v
}

// labels reads a list of distinct DNS labels, each what, with at least
// minN and, when maxN > 0, at most maxN items. A single label stands for
// a list of one.
func (r *reader) labels(n *yaml.Node, key, what string, minN, maxN int) []string {
	v := r.Node(n, key)
	if v == nil {
		return nil
	}
	var items []yamlpos.Scalar
	if v.Kind == yaml.ScalarNode && !yamlpos.IsNull(v) {
		items = []yamlpos.Scalar{{Value: v.Value, Node: v}}
	} else {
		items = r.Texts(n, key)
	}
	var out []string
	for i, s := range items {
		ik := yamlpos.DocumentPaths.Index(key, i)
		if !sovereignty.IsLabel(s.Value) {
			r.Problemf(s.Node, ik, "%q is not a %s name (a DNS label: lower-case letters, digits, '-')", s.Value, what)
			continue
		}
		if slices.Contains(out, s.Value) {
			r.Problemf(s.Node, ik, "%s %q listed twice", what, s.Value)
			continue
		}
		out = append(out, s.Value)
	}
	switch {
	case maxN > 0 && minN == maxN && len(items) != minN:
		r.Problemf(n, key, "expected %d %ss, found %d", minN, what, len(items))
	case len(items) < minN:
		r.Problemf(n, key, "expected at least %d %s", minN, what)
	case maxN > 0 && len(items) > maxN:
		r.Problemf(n, key, "expected at most %d %ss, found %d", maxN, what, len(items))
	}
	return out
}

// service reads namespace/name:port; the port is required when withPort.
func (r *reader) service(n *yaml.Node, key string, withPort bool) Service {
	v, ok := r.Text(n, key)
	if !ok {
		return Service{}
	}
	form := "namespace/name or namespace/name:port"
	if withPort {
		form = "namespace/name:port"
	}
	bad := func() Service {
		r.Problemf(n, key, "expected a service as %s (namespace and name DNS labels, port 1-65535), found %q", form, v)
		return Service{}
	}
	svc, portText, hasPort := strings.Cut(v, ":")
	ns, name, cut := strings.Cut(svc, "/")
	if !cut || !sovereignty.IsLabel(ns) || !sovereignty.IsLabel(name) || (withPort && !hasPort) {
		return bad()
	}
	s := Service{Namespace: ns, Name: name}
	if hasPort {
		p, err := strconv.Atoi(portText)
		if err != nil || p < 1 || p > 65535 {
			return bad()
		}
		s.Port = p
	}
	return s
}

// duration reads a Go duration (10s, 1m30s); zero is refused unless
// zeroOK, negative always.
func (r *reader) duration(n *yaml.Node, key string, zeroOK bool) time.Duration {
	v, ok := r.Text(n, key)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		r.Problemf(n, key, "expected a duration such as 500ms, 10s or 1m30s, found %q", v)
	case d < 0 || d == 0 && !zeroOK:
		r.Problemf(n, key, "expected a positive duration, found %s", v)
	default:
		return d
	}
	return 0
}

// percent reads a number from 0 to 100.
func (r *reader) percent(n *yaml.Node, key string) float64 {
	v, ok := r.Text(n, key)
	if !ok {
		return 0
	}
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(p) || p < 0 || p > 100 {
		r.Problemf(n, key, "expected a percentage from 0 to 100, found %q", v)
		return 0
	}
	return p
}

// oneOf returns a "did you mean" for v among known, or else lists them.
func oneOf(v string, known []string) string {
	if s := yamlpos.Suggest(v, known); strings.HasPrefix(s, " (did you mean") {
		return s
	}
	return "; expected one of " + strings.Join(known, ", ")
}

func kindList() string {
	names := make([]string, len(FaultKinds))
	for i, k := range FaultKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
