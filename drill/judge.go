package drill

import (
	"fmt"
	"slices"
	"time"
)

// before is how far back before a fault a success must have been served
// by a cluster the fault takes for the fault to count as one the traffic
// fails over from.
const before = 5 * time.Second

// judge fills res.Failovers, res.Verdicts and res.Pass from what rec
// measured.
func judge(d *Drill, plans []StepPlan, res *Result, rec *recorder) {
	samples := rec.samples()
	byTraffic := make([][]Sample, len(d.Traffic))
	for _, s := range samples {
		byTraffic[s.Traffic] = append(byTraffic[s.Traffic], s)
	}
	for i := range byTraffic {
		slices.SortFunc(byTraffic[i], func(a, b Sample) int { return int(a.End() - b.End()) })
	}
	end := res.Ran
	for pi, p := range plans {
		st := res.Steps[pi]
		if st.Done == 0 || (len(p.Down) == 0 && len(p.Cut) == 0) {
			continue
		}
		until := end
		if st.Undone > 0 {
			until = st.Undone
		}
		for ti, t := range d.Traffic {
			for _, from := range t.From {
				taken := takenFrom(p, from)
				if len(taken) == 0 || slices.Contains(taken, from) {
					continue // the fault does not take a server of this traffic away, or takes its clients too
				}
				fo, ok := failover(byTraffic[ti], from, taken, st.Done, until)
				if !ok {
					continue
				}
				fo.Service, fo.Traffic, fo.Step = t.To.String(), t.Name, p.Step.Name
				res.Failovers = append(res.Failovers, fo)
			}
		}
	}
	for _, x := range d.Expect.Services {
		res.Verdicts = append(res.Verdicts, serviceVerdicts(d, x, res, rec)...)
	}
	for _, x := range d.Expect.Residency {
		res.Verdicts = append(res.Verdicts, residencyVerdicts(d, x, res, byTraffic)...)
	}
	policy := Verdict{Expectation: "residency policy in force", Limit: "0 requests outside their classes' regions",
		Measured: fmt.Sprintf("%d requests", len(res.Violations)), Pass: len(res.Violations) == 0}
	if len(res.Violations) > 0 {
		policy.Detail = violationDetail(res.Violations)
	}
	res.Verdicts = append(res.Verdicts, policy)
	res.Pass = res.Aborted == nil && !slices.ContainsFunc(res.Verdicts, func(v Verdict) bool { return !v.Pass })
}

// takenFrom lists the clusters a step takes away from traffic that enters
// in cluster from.
func takenFrom(p StepPlan, from string) []string {
	taken := slices.Clone(p.Down)
	for _, cut := range p.Cut {
		switch {
		case slices.Contains(cut[0], from):
			taken = append(taken, cut[1]...)
		case slices.Contains(cut[1], from):
			taken = append(taken, cut[0]...)
		}
	}
	return taken
}

// failover measures one traffic's failover from the taken clusters: only
// when a taken cluster served it in the seconds before the fault. The
// time runs from the fault to the end of the first request, sent after
// the fault, that succeeded elsewhere.
func failover(ss []Sample, from string, taken []string, at, until time.Duration) (Failover, bool) {
	servedBefore := false
	for _, s := range ss {
		if s.From == from && s.Outcome == OK && s.End() < at && s.End() >= at-before && slices.Contains(taken, s.Cluster) {
			servedBefore = true
			break
		}
	}
	if !servedBefore {
		return Failover{}, false
	}
	fo := Failover{At: at, Time: -1}
	for _, s := range ss {
		if s.From == from && s.Outcome == OK && s.Start >= at && s.End() < until && s.Cluster != "" && !slices.Contains(taken, s.Cluster) {
			fo.Time, fo.Cluster = s.End()-at, s.Cluster
			break
		}
	}
	return fo, true
}

func serviceVerdicts(d *Drill, x ServiceExpectation, res *Result, rec *recorder) []Verdict {
	svc := x.Service.String()
	var out []Verdict
	if x.MaxFailoverTime > 0 {
		v := Verdict{Expectation: svc + " maxFailoverTime", Limit: x.MaxFailoverTime.String(), Pass: true}
		var worst time.Duration
		n := 0
		for _, f := range res.Failovers {
			if f.Service != svc {
				continue
			}
			n++
			switch {
			case f.Time < 0:
				v.Pass, worst = false, -1
				v.Detail = fmt.Sprintf("no success elsewhere after %s (traffic %s)", f.Step, f.Traffic)
			case worst >= 0 && f.Time > worst:
				worst = f.Time
				if f.Time > x.MaxFailoverTime {
					v.Pass = false
					v.Detail = fmt.Sprintf("after %s, traffic %s first served by %s", f.Step, f.Traffic, f.Cluster)
				}
			}
		}
		switch {
		case n == 0:
			v.Measured, v.Pass = "no failover", false
			v.Detail = "no fault took away a cluster that served this service's traffic: nothing to measure"
		case worst < 0:
			v.Measured = "never"
		default:
			v.Measured = worst.Round(time.Millisecond).String()
		}
		out = append(out, v)
	}
	var tot Counts
	var idx []int
	for i, t := range d.Traffic {
		if t.To.String() == svc {
			idx = append(idx, i)
			c := res.Traffic[i].Totals
			tot.Requests += c.Requests
			tot.Errors += c.Errors
			tot.Refused += c.Refused
		}
	}
	if x.MaxErrorRate != nil {
		v := Verdict{Expectation: svc + " maxErrorRate", Limit: fmtFloat(*x.MaxErrorRate) + "%"}
		if n := tot.Requests - tot.Refused; n > 0 {
			rate := 100 * float64(tot.Errors) / float64(n)
			v.Measured = fmt.Sprintf("%s%% (%d of %d)", fmtFloat(rate), tot.Errors, n)
			v.Pass = rate <= *x.MaxErrorRate
		} else {
			v.Measured, v.Detail = "no requests", "the drill sent no request that was not refused"
		}
		out = append(out, v)
	}
	if x.MaxAddedP99 > 0 {
		v := Verdict{Expectation: svc + " maxAddedP99", Limit: x.MaxAddedP99.String()}
		base := baselineSeconds(d)
		var bh, all histogram
		for _, i := range idx {
			rec.mu.Lock()
			for t, s := range rec.seconds[i] {
				if t < base {
					bh.merge(&s.hist)
				}
				all.merge(&s.hist)
			}
			rec.mu.Unlock()
		}
		switch {
		case bh.n == 0:
			v.Measured, v.Detail = "no baseline", fmt.Sprintf("no request succeeded in the first %ds, before any fault", base)
		default:
			added := max(all.quantile(.99)-bh.quantile(.99), 0)
			v.Measured = added.Round(100 * time.Microsecond).String()
			v.Detail = fmt.Sprintf("p99 %s over the drill against %s in its first %ds", all.quantile(.99).Round(100*time.Microsecond), bh.quantile(.99).Round(100*time.Microsecond), base)
			v.Pass = added <= x.MaxAddedP99
		}
		out = append(out, v)
	}
	return out
}

// baselineSeconds is how many whole seconds the drill runs before its
// first fault (at most 30): the baseline its latency is compared with.
func baselineSeconds(d *Drill) int {
	first := d.Duration
	if len(d.Timeline) > 0 {
		first = d.Timeline[0].At
	}
	return min(int(first/time.Second), 30)
}

func residencyVerdicts(d *Drill, x ResidencyExpectation, res *Result, byTraffic [][]Sample) []Verdict {
	var idx []int
	for i, t := range res.Traffic {
		if slices.ContainsFunc(t.Classes, func(c ClassInfo) bool { return c.Name == x.Class }) {
			idx = append(idx, i)
		}
	}
	var out []Verdict
	if len(x.NeverReaches) > 0 {
		v := Verdict{Expectation: fmt.Sprintf("%s neverReaches %v", x.Class, x.NeverReaches), Limit: "0 requests"}
		var bad []Violation
		for _, vi := range res.Violations {
			if vi.Class == x.Class && slices.Contains(x.NeverReaches, vi.Region) {
				bad = append(bad, vi)
			}
		}
		v.Measured = fmt.Sprintf("%d requests", len(bad))
		v.Pass = len(bad) == 0 && len(idx) > 0
		switch {
		case len(idx) == 0:
			v.Detail = "no traffic of the drill carries class " + x.Class + " under the policy in force: nothing was measured"
		case len(bad) > 0:
			v.Detail = violationDetail(bad)
		}
		out = append(out, v)
	}
	if x.RefusedWhile != "" {
		v := Verdict{Expectation: fmt.Sprintf("%s refusedWhile %s", x.Class, x.RefusedWhile), Limit: "0 served"}
		si := slices.IndexFunc(res.Steps, func(s StepRecord) bool { return s.Name == x.RefusedWhile })
		st := res.Steps[si]
		if st.Done == 0 {
			v.Measured, v.Detail = "not measured", "the step never took effect"
			out = append(out, v)
			return out
		}
		until := res.Ran
		if st.Undone > 0 {
			until = st.Undone
		}
		var served, refused, failed int
		var first *Sample
		for _, i := range idx {
			for k, s := range byTraffic[i] {
				if s.Start < st.Done || s.Start >= until {
					continue
				}
				switch s.Outcome {
				case OK:
					served++
					if first == nil {
						first = &byTraffic[i][k]
					}
				case Refused:
					refused++
				default:
					failed++
				}
			}
		}
		v.Measured = fmt.Sprintf("%d served, %d refused, %d failed", served, refused, failed)
		v.Pass = served == 0 && len(idx) > 0 && refused+failed > 0
		switch {
		case len(idx) == 0:
			v.Detail = "no traffic of the drill carries class " + x.Class + " under the policy in force"
		case first != nil:
			v.Detail = fmt.Sprintf("first served at %s by %s (%s)", first.Start.Round(time.Millisecond), first.Cluster, first.Region)
		case refused+failed == 0:
			v.Detail = "no request of the class was sent while the step held"
		}
		out = append(out, v)
	}
	return out
}

func violationDetail(vs []Violation) string {
	v := vs[0]
	return fmt.Sprintf("first at %s: traffic %s (%s) served by %s in %s, reported by the %s", v.At.Round(time.Millisecond), v.Traffic, v.Class, v.Cluster, v.Region, v.Source)
}
