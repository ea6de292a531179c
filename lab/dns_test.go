package lab_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/freeport"
	"github.com/straitmesh/strait/lab"
)

// goResolver is Go's own resolver asking only the DNS server at addr.
func goResolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// resolve4 looks name up at the DNS server addr and returns its one IPv4
// address.
func resolve4(t *testing.T, addr, name string) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := goResolver(addr).LookupNetIP(ctx, "ip4", name)
	if err != nil || len(addrs) != 1 {
		t.Fatalf("resolve %s at %s: %v, %v", name, addr, addrs, err)
	}
	return addrs[0]
}

// TestClustersetNamesThroughTheGateways: a workload resolves
// profile.demo.svc.clusterset.local at its gateway's DNS server, dials the
// answer at the service port, and is served by the cluster that exports
// the service, through both gateways. Residency applies on that entry as
// on every other: a flow marked pii-eu from us-east is refused, from
// eu-west carried. An IPv6 block (::1/128) answers AAAA. Names that are
// not imported are NXDOMAIN, others REFUSED.
func TestClustersetNamesThroughTheGateways(t *testing.T) {
	port := freeport.Get(t)
	d, err := lab.StartDemo("127.0.0.1:0", "demo/profile", "euc", "eu-central")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	profile := serviceAt("demo/profile", "http", port, d.Addr(), nil)
	profile.Ports[0].Protocol = "http"
	imports := []gateway.Import{{Service: "demo/profile", Port: port}}
	blocks := map[string]string{"euw": "127.77.1.0/24", "us": "127.77.2.0/24", "v6": "::1/128"}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Policy:   examples.Residency,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Clusters: []lab.ClusterSpec{
			{Name: "euc", Region: "eu-central", Services: []discovery.Service{profile}},
			{Name: "euw", Region: "eu-west", Imports: imports},
			{Name: "us", Region: "us-east", Imports: imports},
			{Name: "v6", Region: "eu-west", Imports: imports},
		},
		Tune: func(cluster string, cfg *gateway.Config) {
			if b, ok := blocks[cluster]; ok {
				cfg.DNS.Listen, cfg.DNS.ImportAddresses = "127.0.0.1:0", b
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	euw, us, euc := l.Gateway("euw"), l.Gateway("us"), l.Gateway("euc")
	const name = "profile.demo.svc.clusterset.local"
	target := func(g *gateway.Gateway) string {
		return net.JoinHostPort(resolve4(t, g.DNSAddr(), name).String(), strconv.Itoa(port))
	}

	t.Run("the name's address reaches the exporting cluster", func(t *testing.T) {
		addr := target(euw)
		if a := netip.MustParseAddrPort(addr).Addr(); !netip.MustParsePrefix(blocks["euw"]).Contains(a) {
			t.Fatalf("%s resolved to %s, outside dns.importAddresses %s", name, a, blocks["euw"])
		}
		before := inboundFrom(t, euc, "demo/profile:"+strconv.Itoa(port), "euw")
		r := getJSON(t, &http.Client{Timeout: 10 * time.Second}, "http://"+addr+"/by-name")
		if r.Cluster != "euc" || r.Service != "demo/profile" || r.Path != "/by-name" {
			t.Fatalf("reply %+v, want demo/profile from euc", r)
		}
		if got := inboundFrom(t, euc, "demo/profile:"+strconv.Itoa(port), "euw"); got != before+1 {
			t.Errorf("euc inbound from euw = %v, want %v", got, before+1)
		}
		// The name in any case, and a workload that dials by name with a
		// resolver of its own.
		if got := resolve4(t, euw.DNSAddr(), "Profile.DEMO.svc.ClusterSet.Local."); got.String()+":"+strconv.Itoa(port) != addr {
			t.Errorf("mixed case resolved to %s, want %s", got, addr)
		}
		dialer := &net.Dialer{Resolver: goResolver(euw.DNSAddr())}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
		if r := getJSON(t, client, "http://"+name+":"+strconv.Itoa(port)+"/dialled"); r.Cluster != "euc" || r.Path != "/dialled" {
			t.Errorf("dialled by name: %+v", r)
		}
	})

	t.Run("an IPv6 block answers AAAA", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v6 := l.Gateway("v6")
		addrs, err := goResolver(v6.DNSAddr()).LookupNetIP(ctx, "ip", name+".")
		if err != nil || len(addrs) != 1 || addrs[0] != netip.IPv6Loopback() {
			t.Fatalf("lookup %s at v6: %v, %v; want only ::1", name, addrs, err)
		}
		if r := getJSON(t, &http.Client{Timeout: 10 * time.Second}, "http://"+net.JoinHostPort("::1", strconv.Itoa(port))+"/v6"); r.Cluster != "euc" || r.Path != "/v6" {
			t.Errorf("reply %+v, want demo/profile from euc", r)
		}
	})

	t.Run("residency holds on the name's address", func(t *testing.T) {
		marked := http.Header{"X-Data-Residency": {"eu"}}
		if resp := importGet(t, target(us), marked); resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("X-Strait-Reason"), "residency:") ||
			!strings.Contains(resp.Header.Get("X-Strait-Reason"), "class pii-eu") {
			t.Errorf("marked from us-east: %s %q, want 403 for residency", resp.Status, resp.Header.Get("X-Strait-Reason"))
		}
		if resp := importGet(t, target(us), nil); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Strait-Cluster") != "euc" {
			t.Errorf("unmarked from us-east: %s via %q, want 200 from euc", resp.Status, resp.Header.Get("X-Strait-Cluster"))
		}
		if resp := importGet(t, target(euw), marked); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Strait-Cluster") != "euc" {
			t.Errorf("marked from eu-west: %s via %q, want 200 from euc", resp.Status, resp.Header.Get("X-Strait-Cluster"))
		}
	})

	t.Run("names not imported and outside the domain", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			for q, want := range map[string]int{
				"ledger.demo.svc.clusterset.local.": dns.RcodeNameError,
				"profile.demo.svc.cluster.local.":   dns.RcodeRefused,
				"example.com.":                      dns.RcodeRefused,
				name + ".":                          dns.RcodeSuccess,
			} {
				m := new(dns.Msg)
				m.SetQuestion(q, dns.TypeA)
				resp, _, err := c.Exchange(m, us.DNSAddr())
				if err != nil {
					t.Fatalf("%s %s: %v", network, q, err)
				}
				if resp.Rcode != want {
					t.Errorf("%s %s: %s, want %s", network, q, dns.RcodeToString[resp.Rcode], dns.RcodeToString[want])
				}
			}
		}
		_, err := goResolver(us.DNSAddr()).LookupHost(context.Background(), "ledger.demo.svc.clusterset.local.")
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("lookup of a name not imported: %v", err)
		}
		if n := metricValue(t, us, "strait_dns_queries_total", map[string]string{"qtype": "A", "rcode": "NXDOMAIN"}); n < 2 {
			t.Errorf("NXDOMAIN answers counted %v, want at least 2", n)
		}
	})

	t.Run("status shows the server and its names", func(t *testing.T) {
		st := us.Status().DNS
		if st == nil || st.State != "serving" || st.Listen != us.DNSAddr() || len(st.Names) != 1 || st.Names[0].Name != name+"." ||
			st.Names[0].Service != "demo/profile" || len(st.Names[0].Addresses) != 1 {
			t.Fatalf("dns status %+v", st)
		}
		var table strings.Builder
		if err := us.Status().WriteTable(&table); err != nil || !strings.Contains(table.String(), name+".") || !strings.Contains(table.String(), st.Names[0].Addresses[0]) {
			t.Errorf("status table (%v) lacks the name and its address:\n%s", err, table.String())
		}
		if euc.Status().DNS != nil {
			t.Error("a gateway without dns.listen reports a DNS server")
		}
	})
}
