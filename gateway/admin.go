package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/sovereignty"
)

// newAdmin makes the admin server, and the probes server with
// listen.probes: the operator endpoints take the token of admin.tokenFile
// and the Host names of the listen address and admin.allowedHosts.
func (g *Gateway) newAdmin() error {
	cfg := g.cfg
	access := admin.Access{Hosts: slices.Clone(cfg.Admin.AllowedHosts)}
	for _, a := range []string{cfg.Listen.Admin, g.AdminAddr()} {
		if h, _, err := net.SplitHostPort(a); err == nil && !configfile.Unspecified(h) {
			access.Hosts = append(access.Hosts, h)
		}
	}
	if cfg.Admin.TokenFile != "" {
		tok, err := admin.ReadTokenFile(cfg.Admin.TokenFile)
		if err != nil {
			return fmt.Errorf("admin.tokenFile: %w", err)
		}
		access.Auth = append(access.Auth, admin.NewBearerToken(tok))
	}
	h := admin.Handler(g, admin.Options{Registry: g.reg, Access: access, Refused: g.metrics.adminRefused, Logger: g.log})
	g.admin = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	// A topology page's event stream never goes idle: ending the refusal
	// feed ends the streams, so a shutdown does not wait its drain out
	// on an open page.
	g.admin.RegisterOnShutdown(g.refusalFeed.close)
	if g.probesLn != nil {
		g.probes = &http.Server{Handler: admin.ProbeHandler(g, g.reg), ReadHeaderTimeout: 5 * time.Second}
	}
	return nil
}

// Status returns the gateway's current status.
func (g *Gateway) Status() admin.Status {
	snap := g.catalog.Snapshot()
	st := admin.Status{
		Node: snap.Local, Cluster: g.cfg.Cluster, Region: g.cfg.Region, Zone: g.cfg.Zone, Cloud: g.cfg.Cloud,
		Version: g.version, Ready: len(g.NotReady()) == 0, StartedAt: g.started,
		Addresses:   admin.Addresses{Data: g.DataAddr(), Advertise: g.cfg.AdvertiseAddr(), Gossip: g.GossipAddr(), Admin: g.AdminAddr(), Connect: g.ConnectAddr(), Control: g.ControlAddr(), Passthrough: g.PassthroughAddr(), Probes: g.ProbesAddr()},
		State:       g.stateStatus(),
		Warnings:    g.Warnings(),
		Ejected:     g.sel.Out.Status(),
		Imports:     []admin.ImportStatus{},
		Members:     []admin.MemberStatus{},
		Clusters:    []admin.ClusterStatus{},
		Tunnels:     g.tunnels.Status(),
		Certificate: g.certificateStatus(),
		Trust:       g.trustStatus(),
		DNS:         g.dnsStatus(),
	}
	if g.cfg.Advertise == "" {
		st.Addresses.Advertise = g.DataAddr()
	}
	for _, im := range g.imports {
		st.Imports = append(st.Imports, admin.ImportStatus{Service: im.Service, Port: im.Port, Listen: im.ln.Addr().String()})
	}
	byCluster := map[string]*admin.ClusterStatus{}
	for _, c := range snap.Clusters {
		st.Members = append(st.Members, admin.MemberStatus{Node: c.Node, Cluster: c.Cluster, Region: c.Region, Zone: c.Zone, Gateway: c.Gateway, Control: c.Control, State: c.State})
		cs, ok := byCluster[c.Cluster]
		if !ok {
			cs = &admin.ClusterStatus{Cluster: c.Cluster, Region: c.Region, Zone: c.Zone, Cloud: c.Cloud, Services: []admin.ServiceStatus{}}
			byCluster[c.Cluster] = cs
		}
		cs.Reachable = cs.Reachable || c.Reachable
		for _, s := range c.Services {
			ss := admin.ServiceStatus{Service: s.Key(), Labels: s.Labels, Healthy: s.Healthy, Total: s.Total}
			for _, p := range s.Ports {
				ss.Ports = append(ss.Ports, p.Port)
			}
			cs.Services = append(cs.Services, ss)
		}
	}
	for _, cs := range byCluster {
		sort.Slice(cs.Services, func(i, j int) bool { return cs.Services[i].Service < cs.Services[j].Service })
		st.Clusters = append(st.Clusters, *cs)
	}
	sort.Slice(st.Clusters, func(i, j int) bool { return st.Clusters[i].Cluster < st.Clusters[j].Cluster })
	return st
}

// NotReady lists why the gateway should not receive traffic yet.
func (g *Gateway) NotReady() []string {
	var out []string
	if g.closing.Load() {
		out = append(out, "shutting down")
	}
	out = append(out, g.faultsNotReady()...)
	if len(g.cfg.Gossip.Join) > 0 && g.catalog.Members() < 2 {
		out = append(out, "not joined to any other gateway yet")
	}
	if g.state != nil {
		if h := g.state.Health(); h.Index == 0 && h.Role != "Leader" {
			out = append(out, "routing state not loaded yet: never in contact with a leader and nothing on disk")
		}
	}
	return out
}

// Keys lists the installed gossip keys.
func (g *Gateway) Keys() (catalog.KeyStatus, error) { return g.catalog.Keys() }

// KeyOp applies a gossip key operation federation-wide.
func (g *Gateway) KeyOp(ctx context.Context, op, key string) (catalog.KeyResult, error) {
	return g.catalog.KeyOp(ctx, op, key)
}

// PolicyInForce is the residency policy in force and its version, or why none is.
func (g *Gateway) PolicyInForce() (*sovereignty.Engine, uint64, error) {
	eng, version := g.res.current()
	if eng == nil {
		return nil, 0, errNoPolicy
	}
	return eng, version, nil
}

// ResidencyStatus describes the residency policy in force.
func (g *Gateway) ResidencyStatus() admin.ResidencyStatus {
	eng, version := g.res.current()
	st := admin.ResidencyStatus{Regions: []string{}, Groups: map[string][]string{}, Classes: []admin.ResidencyClass{}, Headers: []string{}}
	if rj, ok := g.res.src.(PolicyRejections); ok {
		if _, _, err := rj.LastRejection(); err != nil {
			st.Rejected = err.Error()
		}
	}
	if eng == nil {
		return st
	}
	st.InForce = true
	st.Policy = g.res.info(eng, version)
	st.Policy.Source = g.res.origin
	st.Default, st.Regions, st.Groups = eng.Default(), eng.Regions(), eng.Groups()
	st.Headers = append(st.Headers, eng.HeaderNames()...)
	for _, c := range eng.ClassList() {
		rc := admin.ResidencyClass{Name: c.Name, Allowed: c.Allowed, AllowedAs: c.AllowedAs, Catalog: c.Catalog, Rule: c.Rule.Path + " at " + c.Rule.At, Matchers: []string{}}
		for _, m := range c.Matchers {
			rc.Matchers = append(rc.Matchers, m.Kind+" "+m.Text)
		}
		st.Classes = append(st.Classes, rc)
	}
	return st
}
