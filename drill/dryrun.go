package drill

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/straitmesh/strait/gateway/route"
)

// DryRun writes what Run would do, step by step, without doing any of
// it: what each step touches, the faults it asks of which gateway, and
// where the policy in force (`strait policy simulate`, over the topology
// the gateways report) predicts each traffic entry goes while the step's
// faults hold. It reads the federation's admin APIs and changes nothing.
func DryRun(ctx context.Context, w io.Writer, d *Drill, f *Federation) error {
	plans, err := f.Plan(d, "dry-run")
	if err != nil {
		return err
	}
	wi, werr := whatIfOf(ctx, f)
	fmt.Fprintf(w, "drill %s: %s on federation %s (dry run: nothing is done)\n", d.Name, d.Duration, f.file)
	if werr != nil {
		fmt.Fprintf(w, "  no prediction: %v\n", werr)
	}
	fmt.Fprintln(w, "\ntraffic:")
	for _, t := range d.Traffic {
		end := d.Duration
		if t.Duration > 0 {
			end = t.Start + t.Duration
		}
		fmt.Fprintf(w, "  %s: %d/s %s to %s from %s, %s to %s\n", t.Name, t.Rate, t.Protocol, t.To, strings.Join(t.From, ", "),
			t.Start, end)
	}
	if werr == nil {
		fmt.Fprintln(w, "  before any fault:")
		predict(w, wi, d, nil)
	}
	down := map[string]bool{}
	var cuts [][2][]string
	active := map[string]StepPlan{}
	for _, p := range plans {
		s := p.Step
		fmt.Fprintf(w, "\n%s  %s %s: %s\n", fmtOffset(s.At), s.Kind, s.Name, p.Touches)
		for _, a := range p.Actions {
			desc := string(a.Fault.Kind)
			if len(a.Fault.Peers) > 0 {
				desc += " peers=" + strings.Join(a.Fault.Peers, ",")
			}
			if a.Fault.Delay > 0 {
				desc += " delay=" + time.Duration(a.Fault.Delay).String()
			}
			if a.Fault.Jitter > 0 {
				desc += " jitter=" + time.Duration(a.Fault.Jitter).String()
			}
			if a.Fault.Percent > 0 {
				desc += " percent=" + fmtFloat(a.Fault.Percent)
			}
			fmt.Fprintf(w, "    POST %s/v1/faults  %s  (%s/%s)\n", a.Gateway.Admin, desc, a.Cluster, a.Gateway.Name)
		}
		if s.Kind == Restore {
			undone := active[s.Restores]
			delete(active, s.Restores)
			for _, a := range undone.Actions {
				fmt.Fprintf(w, "    DELETE %s/v1/faults/%s  (%s/%s)\n", a.Gateway.Admin, a.Fault.ID, a.Cluster, a.Gateway.Name)
			}
		} else {
			active[s.Name] = p
		}
		clear(down)
		cuts = cuts[:0]
		for _, a := range active {
			for _, c := range a.Down {
				down[c] = true
			}
			cuts = append(cuts, a.Cut...)
		}
		if werr == nil {
			predict(w, wi, d, &state{down: down, cuts: cuts})
		}
	}
	fmt.Fprintf(w, "\n%s  end: every fault still in place is undone\n", fmtOffset(d.Duration))
	return nil
}

type state struct {
	down map[string]bool
	cuts [][2][]string
}

// predict writes where each traffic entry goes with the clusters of st
// down (for a partition: down as seen from the other side).
func predict(w io.Writer, wi route.WhatIf, d *Drill, st *state) {
	for _, t := range d.Traffic {
		for _, from := range t.From {
			q := wi
			q.Fail = nil
			if st != nil {
				if st.down[from] {
					fmt.Fprintf(w, "    %s from %s: its own cluster is down\n", t.Name, from)
					continue
				}
				for c := range st.down {
					q.Fail = append(q.Fail, c)
				}
				for _, cut := range st.cuts {
					for i := range 2 {
						if slices.Contains(cut[i], from) {
							q.Fail = append(q.Fail, cut[1-i]...)
						}
					}
				}
				slices.Sort(q.Fail)
			}
			classes, ex, err := classesOf(q, &t, from)
			if err != nil {
				fmt.Fprintf(w, "    %s from %s: %v\n", t.Name, from, err)
				continue
			}
			cls := "no class"
			if len(classes) > 0 {
				cls = "class " + strings.Join(classes, ", ")
			}
			fmt.Fprintf(w, "    %s from %s (%s): %s\n", t.Name, from, cls, describe(ex))
		}
	}
}

func describe(ex *route.Explanation) string {
	if ex.Status != 200 {
		return fmt.Sprintf("refused %d: %s", ex.Status, ex.Outcome)
	}
	var order []string
	cands := slices.Clone(ex.Candidates)
	slices.SortFunc(cands, func(a, b route.ExplainedCandidate) int { return a.Order - b.Order })
	for _, c := range cands {
		if c.Order > 0 {
			order = append(order, c.Cluster+" ("+c.Region+")")
		}
	}
	return "to " + strings.Join(order, ", then ")
}

func fmtOffset(d time.Duration) string { return fmt.Sprintf("%7s", d.String()) }
