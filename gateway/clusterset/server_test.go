package clusterset

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/internal/fuzzseed"
	"github.com/straitmesh/strait/internal/metricstest"
)

const domain = "clusterset.local"

var (
	ledgerV4 = netip.MustParseAddr("127.77.40.223")
	ledgerV6 = netip.MustParseAddr("fd00:77::5")
)

func testTable() *Table {
	return NewTable(domain, 5*time.Second, []Service{
		{Namespace: "demo", Name: "ledger", Addrs: []netip.Addr{ledgerV4, ledgerV6}, Ports: []int{8080, 9090}},
		{Namespace: "demo", Name: "profile", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.5")}, Ports: []int{8080}},
		{Namespace: "ops", Name: "hidden", Ports: []int{80}}, // no address: no name
	})
}

// portNames names demo/ledger's 8080 http and 9090 grpc.
func portNames(ns, name string, port int) string {
	if ns+"/"+name != "demo/ledger" {
		return ""
	}
	return map[int]string{8080: "http", 9090: "grpc"}[port]
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestAnswer(t *testing.T) {
	tab := testTable()
	several := query("ledger.demo.svc.clusterset.local.", dns.TypeA)
	several.Question = append(several.Question, several.Question[0])
	none := query("ledger.demo.svc.clusterset.local.", dns.TypeA)
	none.Question = nil
	update := query("clusterset.local.", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	chaos := query("ledger.demo.svc.clusterset.local.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	badEDNS := query("ledger.demo.svc.clusterset.local.", dns.TypeA)
	badEDNS.SetEdns0(1232, false)
	badEDNS.IsEdns0().SetVersion(1)
	for _, tc := range []struct {
		name    string
		req     *dns.Msg
		rcode   int
		answers []string // the answer section's records, as text without the header
		extra   int
		soa     bool // a SOA in the authority section
		aa      bool
	}{
		{"A", query("ledger.demo.svc.clusterset.local.", dns.TypeA), dns.RcodeSuccess, []string{"127.77.40.223"}, 0, false, true},
		{"AAAA", query("ledger.demo.svc.clusterset.local.", dns.TypeAAAA), dns.RcodeSuccess, []string{"fd00:77::5"}, 0, false, true},
		{"ANY", query("ledger.demo.svc.clusterset.local.", dns.TypeANY), dns.RcodeSuccess, []string{"127.77.40.223", "fd00:77::5"}, 0, false, true},
		{"any case", query("LEDGER.demo.SVC.clusterset.LOCAL.", dns.TypeA), dns.RcodeSuccess, []string{"127.77.40.223"}, 0, false, true},
		{"AAAA of an IPv4-only service is no data", query("profile.demo.svc.clusterset.local.", dns.TypeAAAA), dns.RcodeSuccess, nil, 0, true, true},
		{"TXT is no data", query("ledger.demo.svc.clusterset.local.", dns.TypeTXT), dns.RcodeSuccess, nil, 0, true, true},
		{"SRV of a named port", query("_http._tcp.ledger.demo.svc.clusterset.local.", dns.TypeSRV), dns.RcodeSuccess,
			[]string{"0 0 8080 ledger.demo.svc.clusterset.local."}, 2, false, true},
		{"SRV of another named port", query("_grpc._tcp.ledger.demo.svc.clusterset.local.", dns.TypeSRV), dns.RcodeSuccess,
			[]string{"0 0 9090 ledger.demo.svc.clusterset.local."}, 2, false, true},
		{"SRV of an unknown port name", query("_admin._tcp.ledger.demo.svc.clusterset.local.", dns.TypeSRV), dns.RcodeNameError, nil, 0, true, true},
		{"SRV over udp", query("_http._udp.ledger.demo.svc.clusterset.local.", dns.TypeSRV), dns.RcodeNameError, nil, 0, true, true},
		{"SRV of a service without port names", query("_http._tcp.profile.demo.svc.clusterset.local.", dns.TypeSRV), dns.RcodeNameError, nil, 0, true, true},
		{"not imported", query("nope.demo.svc.clusterset.local.", dns.TypeA), dns.RcodeNameError, nil, 0, true, true},
		{"imported without an address", query("hidden.ops.svc.clusterset.local.", dns.TypeA), dns.RcodeNameError, nil, 0, true, true},
		{"other shape under the domain", query("ledger.demo.clusterset.local.", dns.TypeA), dns.RcodeNameError, nil, 0, true, true},
		{"namespace with services", query("demo.svc.clusterset.local.", dns.TypeA), dns.RcodeSuccess, nil, 0, true, true},
		{"namespace without services", query("ops.svc.clusterset.local.", dns.TypeA), dns.RcodeNameError, nil, 0, true, true},
		{"apex SOA", query("clusterset.local.", dns.TypeSOA), dns.RcodeSuccess, []string{"clusterset.local. hostmaster.clusterset.local. 1 3600 600 86400 5"}, 0, false, true},
		{"outside the domain", query("example.com.", dns.TypeA), dns.RcodeRefused, nil, 0, false, false},
		{"cluster.local is outside too", query("ledger.demo.svc.cluster.local.", dns.TypeA), dns.RcodeRefused, nil, 0, false, false},
		{"root", query(".", dns.TypeNS), dns.RcodeRefused, nil, 0, false, false},
		{"CHAOS class", chaos, dns.RcodeRefused, nil, 0, false, false},
		{"two questions", several, dns.RcodeFormatError, nil, 0, false, false},
		{"no question", none, dns.RcodeFormatError, nil, 0, false, false},
		{"update", update, dns.RcodeNotImplemented, nil, 0, false, false},
		{"EDNS version 1", badEDNS, dns.RcodeBadVers, nil, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tab.Answer(tc.req, portNames, true)
			if resp.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode], resp)
			}
			if resp.Id != tc.req.Id || !resp.Response || resp.RecursionAvailable || resp.Authoritative != tc.aa {
				t.Errorf("header: id %d (want %d), qr %v, ra %v, aa %v (want %v)", resp.Id, tc.req.Id, resp.Response, resp.RecursionAvailable, resp.Authoritative, tc.aa)
			}
			var got []string
			for _, rr := range resp.Answer {
				got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
				if len(tc.req.Question) > 0 && rr.Header().Name != tc.req.Question[0].Name {
					t.Errorf("answer named %q, question %q", rr.Header().Name, tc.req.Question[0].Name)
				}
				if rr.Header().Ttl != 5 {
					t.Errorf("ttl %d, want 5", rr.Header().Ttl)
				}
			}
			if !slices.Equal(got, tc.answers) {
				t.Errorf("answers %q, want %q", got, tc.answers)
			}
			if len(resp.Extra) != tc.extra && !(tc.name == "EDNS version 1") {
				t.Errorf("%d additional records, want %d: %v", len(resp.Extra), tc.extra, resp.Extra)
			}
			hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA && resp.Ns[0].(*dns.SOA).Minttl == 5
			if hasSOA != tc.soa || len(resp.Ns) > 1 {
				t.Errorf("authority %v, want a SOA %v", resp.Ns, tc.soa)
			}
			if _, err := resp.Pack(); err != nil {
				t.Errorf("pack: %v", err)
			}
		})
	}
}

func startServer(t *testing.T, tab *Table) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_queries_total", Help: "test"}, []string{"qtype", "rcode"})
	reg.MustRegister(queries)
	s, err := Listen(Config{Listen: "127.0.0.1:0"}, tab, Options{Queries: queries, PortNames: portNames})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, reg
}

// resolver is Go's own resolver, asking only the server at addr.
func resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// TestResolverOverLoopback: Go's resolver, speaking to the server over
// loopback, finds the addresses and SRV records of an imported service in
// any case, and no such host for a name that is not imported.
func TestResolverOverLoopback(t *testing.T) {
	s, _ := startServer(t, testTable())
	r := resolver(s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, name := range []string{"ledger.demo.svc.clusterset.local.", "Ledger.Demo.Svc.ClusterSet.Local."} {
		addrs, err := r.LookupNetIP(ctx, "ip", name)
		if err != nil {
			t.Fatalf("lookup %s: %v", name, err)
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		if want := []netip.Addr{ledgerV4, ledgerV6}; !slices.Equal(addrs, want) {
			t.Errorf("lookup %s = %v, want %v", name, addrs, want)
		}
	}
	v4, err := r.LookupNetIP(ctx, "ip4", "profile.demo.svc.clusterset.local.")
	if err != nil || len(v4) != 1 || v4[0].String() != "127.0.0.5" {
		t.Errorf("lookup profile = %v, %v", v4, err)
	}
	cname, srvs, err := r.LookupSRV(ctx, "http", "tcp", "ledger.demo.svc.clusterset.local.")
	if err != nil || len(srvs) != 1 || srvs[0].Port != 8080 || srvs[0].Target != "ledger.demo.svc.clusterset.local." {
		t.Errorf("SRV = %q %+v, %v", cname, srvs, err)
	}
	_, err = r.LookupNetIP(ctx, "ip", "nope.demo.svc.clusterset.local.")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("lookup of a name not imported: %v, want not found", err)
	}
}

// exchange sends m to addr over net ("udp" or "tcp") with miekg/dns's client.
func exchange(t *testing.T, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s exchange %v: %v", network, m.Question, err)
	}
	return resp
}

// rawExchange sends b over UDP and returns the reply, or nil when none
// came within wait.
func rawExchange(t *testing.T, addr string, b []byte, wait time.Duration) *dns.Msg {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return m
}

// TestRcodesOverTheWire: over UDP and TCP, a name that is not imported is
// NXDOMAIN, a name outside the domain REFUSED, and a query whose body
// does not parse FORMERR; every answer is counted by qtype and rcode.
func TestRcodesOverTheWire(t *testing.T) {
	s, reg := startServer(t, testTable())
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			if r := exchange(t, network, s.Addr(), query("ledger.demo.svc.clusterset.local.", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
				t.Errorf("A: %v", r)
			}
			if r := exchange(t, network, s.Addr(), query("nope.demo.svc.clusterset.local.", dns.TypeA)); r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
				t.Errorf("not imported: %v", r)
			}
			if r := exchange(t, network, s.Addr(), query("www.example.com.", dns.TypeA)); r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("outside: %v", r)
			}
		})
	}
	// A header announcing a question the body does not hold.
	bad := []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 'l', 'e'}
	r := rawExchange(t, s.Addr(), bad, 5*time.Second)
	if r == nil || r.Rcode != dns.RcodeFormatError || r.Id != 0x1234 {
		t.Fatalf("malformed query: %v, want FORMERR", r)
	}
	// Too short for a header: nothing to answer, dropped and counted.
	if r := rawExchange(t, s.Addr(), []byte{1, 2, 3}, 200*time.Millisecond); r != nil {
		t.Errorf("short message answered %v", r)
	}
	// Still serving after both.
	if r := exchange(t, "udp", s.Addr(), query("ledger.demo.svc.clusterset.local.", dns.TypeAAAA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("AAAA after malformed queries: %v", r)
	}
	for _, c := range []struct {
		qtype, rcode string
		want         float64
	}{{"A", "NOERROR", 2}, {"A", "NXDOMAIN", 2}, {"A", "REFUSED", 2}, {"none", "FORMERR", 1}, {"none", "dropped", 1}, {"AAAA", "NOERROR", 1}} {
		if got := metricstest.Sum(t, reg, "strait_dns_queries_total", map[string]string{"qtype": c.qtype, "rcode": c.rcode}); got != c.want {
			t.Errorf("strait_dns_queries_total{qtype=%s,rcode=%s} = %v, want %v", c.qtype, c.rcode, got, c.want)
		}
	}
}

// TestTruncatedOverUDP: an answer too big for a UDP client's buffer is
// truncated with TC set, and the same query over TCP gets it whole.
func TestTruncatedOverUDP(t *testing.T) {
	var addrs []netip.Addr
	for i := range 60 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{127, 78, 0, byte(i + 1)}))
	}
	s, _ := startServer(t, NewTable(domain, time.Second, []Service{{Namespace: "demo", Name: "wide", Addrs: addrs, Ports: []int{80}}}))
	q := query("wide.demo.svc.clusterset.local.", dns.TypeA)
	if r := exchange(t, "udp", s.Addr(), q); !r.Truncated || len(r.Answer) >= 60 {
		t.Errorf("UDP: truncated %v with %d answers", r.Truncated, len(r.Answer))
	}
	if r := exchange(t, "tcp", s.Addr(), q); r.Truncated || len(r.Answer) != 60 {
		t.Errorf("TCP: truncated %v with %d answers", r.Truncated, len(r.Answer))
	}
}

// TestListenTakesOnePortForBoth: port 0 gives UDP and TCP the same port,
// and a port in use is an error naming the address.
func TestListenTakesOnePortForBoth(t *testing.T) {
	s, _ := startServer(t, testTable())
	if r := exchange(t, "tcp", s.Addr(), query("profile.demo.svc.clusterset.local.", dns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("TCP on %s: %v", s.Addr(), r)
	}
	_, err := Listen(Config{Listen: s.Addr()}, testTable(), Options{})
	if err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("second Listen on %s: %v", s.Addr(), err)
	}
}

// FuzzAnswer: whatever a client sends, a message that parses gets an
// answer that packs, with the request's ID, and never one for a name
// outside the domain.
func FuzzAnswer(f *testing.F) {
	fuzzseed.Files(f, "testdata/queries/*")
	tab := testTable()
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if req.Unpack(b) != nil {
			return
		}
		resp := tab.Answer(req, portNames, true)
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("answer header %v for %v", resp.MsgHdr, req.MsgHdr)
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
		for _, rr := range resp.Answer {
			if _, in := ParseName(rr.Header().Name, domain); !in {
				t.Fatalf("answered %v outside the domain", rr)
			}
		}
	})
}
