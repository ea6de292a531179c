package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// TestDNSServices: a service's name answers with its address of
// dns.importAddresses, and with its imports' own listen host only when
// every import of the service listens on that one IP address at the
// service's own port.
func TestDNSServices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		block   string
		imports []Import
		want    map[string][]string // service -> addresses
	}{
		{"one host at the service ports", "", []Import{
			{Service: "demo/a", Port: 8080, Listen: "127.0.0.5:8080"}, {Service: "demo/a", Port: 9090, Listen: "127.0.0.5:9090"},
		}, map[string][]string{"demo/a": {"127.0.0.5"}}},
		{"IPv6 host", "", []Import{{Service: "demo/a", Port: 8080, Listen: "[::1]:8080"}}, map[string][]string{"demo/a": {"::1"}}},
		{"another port", "", []Import{{Service: "demo/a", Port: 8080, Listen: "127.0.0.5:18080"}}, map[string][]string{"demo/a": nil}},
		{"two hosts", "", []Import{
			{Service: "demo/a", Port: 8080, Listen: "127.0.0.5:8080"}, {Service: "demo/a", Port: 9090, Listen: "127.0.0.6:9090"},
		}, map[string][]string{"demo/a": nil}},
		{"all interfaces", "", []Import{{Service: "demo/a", Port: 8080, Listen: "0.0.0.0:8080"}}, map[string][]string{"demo/a": nil}},
		{"a host name", "", []Import{{Service: "demo/a", Port: 8080, Listen: "localhost:8080"}}, map[string][]string{"demo/a": nil}},
		{"block", "127.77.0.0/16", []Import{
			{Service: "demo/a", Port: 8080}, {Service: "demo/b", Port: 8080, Listen: "127.0.0.1:18080"},
		}, map[string][]string{"demo/a": {"auto"}, "demo/b": {"auto"}}},
		{"block and an import without listen", "127.77.0.0/16", []Import{
			{Service: "demo/a", Port: 8080, Listen: "127.0.0.5:8080"}, {Service: "demo/a", Port: 9090},
		}, map[string][]string{"demo/a": {"auto"}}},
		{"block and one host", "127.77.0.0/16", []Import{{Service: "demo/a", Port: 8080, Listen: "127.0.0.5:8080"}},
			map[string][]string{"demo/a": {"auto", "127.0.0.5"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Imports: tc.imports, DNS: DNSConfig{ImportAddresses: tc.block}}
			auto := c.ImportAddresses()
			got := map[string][]string{}
			for _, s := range c.dnsServices() {
				key := s.Namespace + "/" + s.Name
				var addrs []string
				for _, a := range s.Addrs {
					if a == auto[key] {
						addrs = append(addrs, "auto")
					} else {
						addrs = append(addrs, a.String())
					}
				}
				got[key] = addrs
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("addresses %v, want %v", got, tc.want)
			}
		})
	}
}

// TestImportListens: an import is served on its own listen address and
// on its service's address, at the service port.
func TestImportListens(t *testing.T) {
	auto := map[string]netip.Addr{"demo/a": netip.MustParseAddr("127.77.1.2")}
	for _, tc := range []struct {
		im   Import
		want []string
	}{
		{Import{Service: "demo/a", Port: 8080}, []string{"127.77.1.2:8080"}},
		{Import{Service: "demo/a", Port: 8080, Listen: "127.0.0.1:18080"}, []string{"127.0.0.1:18080", "127.77.1.2:8080"}},
		{Import{Service: "demo/b", Port: 8080, Listen: "127.0.0.1:18080"}, []string{"127.0.0.1:18080"}},
	} {
		if got := importListens(tc.im, auto); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.im, got, tc.want)
		}
	}
}
