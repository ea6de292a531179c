package drill

import (
	"fmt"
	"slices"
	"strings"

	"github.com/straitmesh/strait/gateway/fault"
)

// Action is one fault on one gateway.
type Action struct {
	Cluster string
	Gateway *FederationGateway
	Fault   fault.Spec
}

// StepPlan is what a timeline step does to the federation.
type StepPlan struct {
	Step Step
	// Actions are the faults the step injects; a restore has none and
	// undoes those of the step it names.
	Actions []Action
	// Down are the clusters the fault takes away from everyone else
	// (kill, freeze, blackhole, drain, lose-region, lose-cloud); Cut are
	// the pairs a partition separates.
	Down []string
	Cut  [][2][]string
	// Touches says in words what the step acts on.
	Touches string
}

// Plan expands every step of d into faults on the federation's gateways.
// run names this run in fault IDs, so that two runs never undo each
// other's faults.
func (f *Federation) Plan(d *Drill, run string) ([]StepPlan, error) {
	if err := f.Check(d); err != nil {
		return nil, err
	}
	byName := map[string]int{}
	var out []StepPlan
	for _, s := range d.Timeline {
		p := StepPlan{Step: s}
		id := d.Name + "." + s.Name + "." + run
		add := func(cluster string, gws []FederationGateway, spec fault.Spec) {
			for i := range gws {
				spec.ID = id
				p.Actions = append(p.Actions, Action{Cluster: cluster, Gateway: &gws[i], Fault: spec})
			}
		}
		whole := func(kind string, clusters []string) {
			for _, name := range clusters {
				c, _ := f.Cluster(name)
				add(name, c.Gateways, fault.Spec{Kind: fault.Kind(kind)})
			}
			p.Down = append(p.Down, clusters...)
		}
		switch s.Kind {
		case Kill, Freeze:
			c, _ := f.Cluster(s.Cluster)
			gws := c.Gateways
			if s.Gateway != "" {
				i := slices.IndexFunc(gws, func(g FederationGateway) bool { return g.Name == s.Gateway })
				gws = gws[i : i+1]
			}
			add(s.Cluster, gws, fault.Spec{Kind: fault.Kind(s.Kind)})
			if len(gws) == len(c.Gateways) {
				p.Down = append(p.Down, s.Cluster)
			}
			p.Touches = touches("cluster "+s.Cluster, gws)
		case Blackhole, Drain:
			whole(string(s.Kind), []string{s.Cluster})
			c, _ := f.Cluster(s.Cluster)
			p.Touches = touches("cluster "+s.Cluster, c.Gateways)
		case LoseRegion:
			cs := f.clustersWhere(func(c FederationCluster) bool { return c.Region == s.Region })
			whole(string(Kill), cs)
			p.Touches = fmt.Sprintf("region %s: clusters %s", s.Region, strings.Join(cs, ", "))
		case LoseCloud:
			cs := f.clustersWhere(func(c FederationCluster) bool { return c.Cloud == s.Cloud })
			whole(string(Kill), cs)
			p.Touches = fmt.Sprintf("cloud %s: clusters %s", s.Cloud, strings.Join(cs, ", "))
		case Partition:
			a, b := s.Clusters, [][]string{nil, nil}
			if len(s.Regions) == 2 {
				for i, r := range s.Regions {
					b[i] = f.clustersWhere(func(c FederationCluster) bool { return c.Region == r })
				}
			} else {
				b[0], b[1] = a[:1], a[1:]
			}
			for i := range 2 {
				for _, name := range b[i] {
					c, _ := f.Cluster(name)
					add(name, c.Gateways, fault.Spec{Kind: fault.Kind(Partition), Peers: b[1-i]})
				}
			}
			p.Cut = append(p.Cut, [2][]string{b[0], b[1]})
			p.Touches = fmt.Sprintf("partition %s | %s", strings.Join(b[0], ", "), strings.Join(b[1], ", "))
		case Latency, Loss:
			for i, name := range s.Link {
				c, _ := f.Cluster(name)
				spec := fault.Spec{Kind: fault.Kind(s.Kind), Peers: []string{s.Link[1-i]}}
				if s.Kind == Latency {
					spec.Delay, spec.Jitter = fault.Duration(s.Delay), fault.Duration(s.Jitter)
				} else {
					spec.Percent = s.Percent
				}
				add(name, c.Gateways, spec)
			}
			what := fmt.Sprintf("%s%% loss", fmtFloat(s.Percent))
			if s.Kind == Latency {
				what = fmt.Sprintf("+%s", s.Delay)
				if s.Jitter > 0 {
					what += fmt.Sprintf(" ±%s", s.Jitter)
				}
			}
			p.Touches = fmt.Sprintf("link %s <-> %s: %s each way", s.Link[0], s.Link[1], what)
		case Restore:
			i, ok := byName[s.Restores]
			if !ok {
				return nil, fmt.Errorf("drill %s: step %s restores %s, which comes later or not at all", d.Name, s.Name, s.Restores)
			}
			p.Touches = "undoes " + s.Restores + " (" + out[i].Touches + ")"
		}
		byName[s.Name] = len(out)
		out = append(out, p)
	}
	return out, nil
}

func (f *Federation) clustersWhere(ok func(FederationCluster) bool) []string {
	var out []string
	for _, c := range f.Clusters {
		if ok(c) {
			out = append(out, c.Name)
		}
	}
	return out
}

func touches(what string, gws []FederationGateway) string {
	names := make([]string, len(gws))
	for i, g := range gws {
		names[i] = g.Name + " (" + g.Admin + ")"
	}
	return what + ": " + strings.Join(names, ", ")
}

func fmtFloat(f float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", f), "0"), ".")
}
