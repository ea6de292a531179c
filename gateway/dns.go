package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/clusterset"
	"github.com/straitmesh/strait/internal/configfile"
)

// Names for imports (dns.*): each imported service gets an address of
// dns.importAddresses where the gateway serves all of its imported ports,
// and the DNS server on dns.listen answers <service>.<namespace>.svc.<domain>
// with it. The import ports behind those addresses are ordinary import
// ports: the same residency decision, budget and metrics.

// validate checks the dns section and, with dns.listen, the budget of
// its TCP connections; bind reports the listen address of each import on
// its service's own address, for the clash check.
func (d DNSConfig) validate(imports []Import, dnsBudget int, bind func(key, addr string)) []error {
	var errs []error
	if d.TTL < time.Second || d.TTL > 24*time.Hour {
		errs = append(errs, configfile.Errorf("dns.ttl", "must be at least 1s and at most 24h, found %s", d.TTL))
	}
	if d.Listen != "" && dnsBudget < 1 {
		errs = append(errs, configfile.Errorf("limits.listeners.dns", "must be at least 1, found %d", dnsBudget))
	}
	if _, ok := clusterset.NormalizeDomain(d.Domain); !ok {
		errs = append(errs, configfile.Errorf("dns.domain", "want DNS labels (lower-case letters, digits, '-') such as %s, found %q", clusterset.DefaultDomain, d.Domain))
	}
	if d.ImportAddresses == "" {
		return errs
	}
	block, err := netip.ParsePrefix(d.ImportAddresses)
	if err == nil {
		err = clusterset.CheckBlock(block)
	}
	if err != nil {
		return append(errs, configfile.Errorf("dns.importAddresses", "want an address block such as 127.77.0.0/16: %v", err))
	}
	addrs, err := clusterset.Assign(block, importedServices(imports))
	if err != nil {
		return append(errs, configfile.Errorf("dns.importAddresses", "%v", err))
	}
	first := map[string]int{}
	for i, im := range imports {
		t := fmt.Sprintf("%s port %d", im.Service, im.Port)
		if j, dup := first[t]; dup {
			errs = append(errs, configfile.Errorf(fmt.Sprintf("imports.%d.port", i), "%s is imported twice (imports.%d): with dns.importAddresses each service port is served once, on the service's address", t, j))
			continue
		}
		first[t] = i
		if a, ok := addrs[im.Service]; ok && im.Port >= 1 && im.Port <= 65535 {
			bind(fmt.Sprintf("imports.%d.port", i), netip.AddrPortFrom(a, uint16(im.Port)).String())
		}
	}
	return errs
}

// importedServices lists the namespace/name of every import, once each.
func importedServices(imports []Import) []string {
	var out []string
	for _, im := range imports {
		out = append(out, im.Service)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ImportAddresses returns each imported service's address of
// dns.importAddresses, by namespace/name; nil without the block.
func (c Config) ImportAddresses() map[string]netip.Addr {
	if c.DNS.ImportAddresses == "" {
		return nil
	}
	block, err := netip.ParsePrefix(c.DNS.ImportAddresses)
	if err != nil {
		return nil
	}
	addrs, err := clusterset.Assign(block, importedServices(c.Imports))
	if err != nil {
		return nil
	}
	return addrs
}

// importListens lists where the gateway accepts connections for im: its
// own listen address and its service's address, each when there is one.
func importListens(im Import, auto map[string]netip.Addr) []string {
	var out []string
	if im.Listen != "" {
		out = append(out, im.Listen)
	}
	if a, ok := auto[im.Service]; ok {
		out = append(out, netip.AddrPortFrom(a, uint16(im.Port)).String())
	}
	return out
}

// dnsServices are the imported services as the DNS server answers them:
// with the service's address of dns.importAddresses, and with the host of
// the imports' own listen addresses when every import of the service
// listens on that one IP address at the service's own port (a workload
// dialling name:port there reaches the right import).
func (c Config) dnsServices() []clusterset.Service {
	auto := c.ImportAddresses()
	byKey := map[string]*clusterset.Service{}
	explicit := map[string]netip.Addr{}
	mixed := map[string]bool{}
	var keys []string
	for _, im := range c.Imports {
		s, ok := byKey[im.Service]
		if !ok {
			t := im.Target()
			s = &clusterset.Service{Namespace: t.Namespace, Name: t.Name}
			byKey[im.Service] = s
			keys = append(keys, im.Service)
		}
		if !slices.Contains(s.Ports, im.Port) {
			s.Ports = append(s.Ports, im.Port)
		}
		host, port, err := net.SplitHostPort(im.Listen)
		a, aerr := netip.ParseAddr(host)
		if err != nil || aerr != nil || a.IsUnspecified() || a.Zone() != "" || port != strconv.Itoa(im.Port) {
			mixed[im.Service] = true
			continue
		}
		a = a.Unmap()
		if prev, ok := explicit[im.Service]; ok && prev != a {
			mixed[im.Service] = true
		}
		explicit[im.Service] = a
	}
	out := make([]clusterset.Service, 0, len(keys))
	for _, k := range keys {
		s := byKey[k]
		if a, ok := auto[k]; ok {
			s.Addrs = append(s.Addrs, a)
		}
		if a, ok := explicit[k]; ok && !mixed[k] && !slices.Contains(s.Addrs, a) {
			s.Addrs = append(s.Addrs, a)
		}
		out = append(out, *s)
	}
	return out
}

// startDNS binds dns.listen and starts answering.
func (g *Gateway) startDNS() error {
	cfg := g.cfg.DNS
	domain, _ := clusterset.NormalizeDomain(cfg.Domain)
	svcs := g.cfg.dnsServices()
	for _, s := range svcs {
		if len(s.Addrs) == 0 {
			g.log.Warn("imported service has no DNS name: no import listens on one IP address at the service's port and dns.importAddresses is not set",
				"service", s.Namespace+"/"+s.Name)
		}
	}
	srv, err := clusterset.Listen(clusterset.Config{Listen: cfg.Listen}, clusterset.NewTable(domain, cfg.TTL, svcs), clusterset.Options{
		Logger:    g.log,
		Queries:   g.metrics.dnsQueries,
		PortNames: g.portName,
		TCPListener: func(ln net.Listener) net.Listener {
			return g.budget("dns", g.faults.Listen(ln), g.cfg.Limits.Listeners.DNS, false)
		},
	})
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	g.dns = srv
	return nil
}

// stopDNS stops answering; answers under way end within ctx.
func (g *Gateway) stopDNS(ctx context.Context) error {
	if g.dns == nil {
		return nil
	}
	return g.dns.Shutdown(ctx)
}

// portName is the name the clusters that export ns/name give port, for
// SRV records: the first name found.
func (g *Gateway) portName(ns, name string, port int) string {
	for _, c := range g.catalog.Snapshot().Clusters {
		s, ok := c.Service(ns, name)
		if !ok {
			continue
		}
		for _, p := range s.Ports {
			if p.Port == port && p.Name != "" {
				return p.Name
			}
		}
	}
	return ""
}

// DNSAddr returns the bound DNS address (UDP and TCP), or "" without
// dns.listen.
func (g *Gateway) DNSAddr() string {
	if g.dns == nil {
		return ""
	}
	return g.dns.Addr()
}

// dnsStatus describes the DNS server for /v1/status; nil without one.
func (g *Gateway) dnsStatus() *admin.DNSStatus {
	if g.dns == nil {
		return nil
	}
	t := g.dns.Table()
	st := &admin.DNSStatus{Listen: g.dns.Addr(), Domain: t.Domain(), State: g.dns.State(), Names: []admin.DNSName{}}
	for _, s := range t.Services() {
		n := admin.DNSName{Name: clusterset.ServiceName(s.Namespace, s.Name, t.Domain()), Service: s.Namespace + "/" + s.Name, Ports: s.Ports}
		for _, a := range s.Addrs {
			n.Addresses = append(n.Addresses, a.String())
		}
		st.Names = append(st.Names, n)
	}
	return st
}
