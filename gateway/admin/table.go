package admin

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the status for people: the gateway, members, then
// clusters with their exported services.
func (s Status) WriteTable(w io.Writer) error {
	ready := "ready"
	if !s.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "Gateway %s  cluster %s  region %s  %s  version %s\n", s.Node, s.Cluster, s.Region, ready, s.Version)
	fmt.Fprintf(w, "  data %s (advertised %s)  gossip %s  admin %s  connect %s  passthrough %s\n", s.Addresses.Data, s.Addresses.Advertise, s.Addresses.Gossip,
		s.Addresses.Admin, orDash(s.Addresses.Connect), orDash(s.Addresses.Passthrough))
	if st := s.State; st != nil {
		role := strings.ToLower(st.Role)
		if !st.Voter {
			role += " (non-voter)"
		}
		fmt.Fprintf(w, "  routing state: %s, leader %s, index %d, control %s\n", role, orDash(st.Leader), st.Index, orDash(s.Addresses.Control))
		for _, p := range st.Policies {
			fmt.Fprintf(w, "    policy %s at index %d\n", p.Name, p.Index)
		}
	}
	if c := s.Certificate; c != nil {
		src := c.Source
		if src == "" {
			src = "given"
		}
		fmt.Fprintf(w, "  certificate: %s from %s, serial %s, expires %s (in %s)", c.Identity, src, c.Serial,
			c.NotAfter.UTC().Format(time.RFC3339), time.Until(c.NotAfter).Round(time.Second))
		if !c.NextRenewal.IsZero() {
			fmt.Fprintf(w, ", next renewal %s", c.NextRenewal.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(w, ", %d renewals", c.Renewals)
		if c.Failures > 0 {
			fmt.Fprintf(w, ", %d failures", c.Failures)
		}
		fmt.Fprintln(w)
		if c.LastError != "" {
			fmt.Fprintf(w, "    last failure: %s\n", c.LastError)
		}
	}
	if t := s.Trust; t != nil {
		var ds []string
		for _, d := range t.Domains {
			e := fmt.Sprintf("%s (%d roots", d.Name, len(d.Roots))
			if len(d.Clusters) > 0 {
				e += "; clusters " + strings.Join(d.Clusters, ",")
			}
			ds = append(ds, e+")")
		}
		fmt.Fprintf(w, "  trust: %s; revoked %d serials, %d identities\n", strings.Join(ds, ", "), t.RevokedSerials, t.RevokedIDs)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "  WARNING: %s\n", warn)
	}
	err := table(w, "MEMBER\tCLUSTER\tREGION\tZONE\tGATEWAY\tSTATE", func(tw io.Writer) {
		for _, m := range s.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Node, m.Cluster, m.Region, orDash(m.Zone), m.Gateway, m.State)
		}
	})
	if err == nil {
		err = table(w, "CLUSTER\tREGION\tREACHABLE\tSERVICE\tPORTS\tHEALTHY\tLABELS", func(tw io.Writer) {
			for _, c := range s.Clusters {
				reach := "yes"
				if !c.Reachable {
					reach = "NO"
				}
				if len(c.Services) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\n", c.Cluster, c.Region, reach)
				}
				for _, svc := range c.Services {
					ports := make([]string, len(svc.Ports))
					for i, p := range svc.Ports {
						ports[i] = fmt.Sprint(p)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", c.Cluster, c.Region, reach, svc.Service, strings.Join(ports, ","), svc.Healthy, svc.Total, formatLabels(svc.Labels))
				}
			}
		})
	}
	if err == nil && len(s.Tunnels) > 0 {
		err = table(w, "TUNNEL TO\tADDRESS\tSTATE\tSTREAMS\tRTT", func(tw io.Writer) {
			for _, t := range s.Tunnels {
				rtt := "-"
				if t.RTTMs > 0 {
					rtt = time.Duration(t.RTTMs * float64(time.Millisecond)).Round(time.Microsecond).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", orDash(t.Peer), t.Addr, t.State, t.Streams, rtt)
			}
		})
	}
	if err == nil && len(s.Ejected) > 0 {
		err = table(w, "EJECTED\tCLUSTER\tSERVICE\tFAILURES\tEJECTIONS\tUNTIL", func(tw io.Writer) {
			for _, e := range s.Ejected {
				what := "endpoint " + e.Endpoint
				if e.Gateway != "" {
					what = "gateway " + e.Gateway
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", what, e.Cluster, e.Service, e.Failures, e.Ejections, e.Until.UTC().Format(time.RFC3339))
			}
		})
	}
	if err == nil && len(s.Imports) > 0 {
		err = table(w, "IMPORT\tPORT\tLISTEN", func(tw io.Writer) {
			for _, im := range s.Imports {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", im.Service, im.Port, im.Listen)
			}
		})
	}
	if err == nil && s.DNS != nil {
		err = table(w, fmt.Sprintf("NAME (dns %s, %s)\tSERVICE\tADDRESSES\tPORTS", s.DNS.Listen, s.DNS.State), func(tw io.Writer) {
			for _, n := range s.DNS.Names {
				ports := make([]string, len(n.Ports))
				for i, p := range n.Ports {
					ports[i] = fmt.Sprint(p)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, n.Service, strings.Join(n.Addresses, ","), strings.Join(ports, ","))
			}
		})
	}
	return err
}

// table writes a blank line, then the header and the rows aligned in
// columns.
func table(w io.Writer, header string, rows func(tw io.Writer)) error {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
