package clusterset

import (
	"strings"
	"testing"

	"github.com/straitmesh/strait/internal/fuzzseed"
	"github.com/straitmesh/strait/sovereignty"
)

func TestParseName(t *testing.T) {
	const domain = "clusterset.local"
	for _, tc := range []struct {
		name  string
		qname string
		want  Name
		in    bool
	}{
		{"service", "ledger.demo.svc.clusterset.local.", Name{Kind: KindService, Service: "ledger", Namespace: "demo"}, true},
		{"service without the root dot", "ledger.demo.svc.clusterset.local", Name{Kind: KindService, Service: "ledger", Namespace: "demo"}, true},
		{"any case", "LEDGER.Demo.SVC.ClusterSet.Local.", Name{Kind: KindService, Service: "ledger", Namespace: "demo"}, true},
		{"srv name", "_http._tcp.ledger.demo.svc.clusterset.local.", Name{Kind: KindPort, PortName: "http", Proto: "tcp", Service: "ledger", Namespace: "demo"}, true},
		{"apex", "clusterset.local.", Name{Kind: KindApex}, true},
		{"svc parent", "svc.clusterset.local.", Name{Kind: KindParent}, true},
		{"namespace parent", "demo.svc.clusterset.local.", Name{Kind: KindParent, Namespace: "demo"}, true},
		{"no svc label", "ledger.demo.clusterset.local.", Name{Kind: KindOther}, true},
		{"too deep", "a.ledger.demo.svc.clusterset.local.", Name{Kind: KindOther}, true},
		{"srv without underscores", "http.tcp.ledger.demo.svc.clusterset.local.", Name{Kind: KindOther}, true},
		{"underscore in a service", "_ledger.demo.svc.clusterset.local.", Name{Kind: KindOther}, true},
		{"escaped dot is not a label boundary", `ledger\.demo.svc.clusterset.local.`, Name{Kind: KindOther}, true},
		{"escaped byte", `led\000ger.demo.svc.clusterset.local.`, Name{Kind: KindOther}, true},
		{"label too long", strings.Repeat("a", 64) + ".demo.svc.clusterset.local.", Name{Kind: KindOther}, true},
		{"other domain", "ledger.demo.svc.cluster.local.", Name{}, false},
		{"suffix inside a label", "ledger.demo.svc.myclusterset.local.", Name{}, false},
		{"domain split by an escaped dot", `a.clusterset\.local.`, Name{}, false},
		{"root", ".", Name{}, false},
		{"empty", "", Name{}, false},
		{"parent of the domain", "local.", Name{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, in := ParseName(tc.qname, domain)
			if in != tc.in || got != tc.want {
				t.Fatalf("ParseName(%q) = %+v, %v; want %+v, %v", tc.qname, got, in, tc.want, tc.in)
			}
		})
	}
}

func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]string{"clusterset.local": "clusterset.local", "ClusterSet.Local.": "clusterset.local", "mesh": "mesh"} {
		if got, ok := NormalizeDomain(in); !ok || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "-a.local", "a_b.local", "a b", strings.Repeat("a.", 101) + "a"} {
		if got, ok := NormalizeDomain(bad); ok {
			t.Errorf("NormalizeDomain(%q) = %q, accepted", bad, got)
		}
	}
}

// FuzzClustersetName: parsing any name never panics, a service or port
// name has label parts, and what it parses to is found again from the
// name the parts make.
func FuzzClustersetName(f *testing.F) {
	fuzzseed.Files(f, "testdata/names/*")
	f.Fuzz(func(t *testing.T, b []byte) {
		qname := string(b)
		n, in := ParseName(qname, "clusterset.local")
		if !in {
			return
		}
		switch n.Kind {
		case KindService, KindPort:
			if !sovereignty.IsLabel(n.Service) || !sovereignty.IsLabel(n.Namespace) {
				t.Fatalf("ParseName(%q) = %+v: parts are not labels", qname, n)
			}
			back, in := ParseName(ServiceName(n.Namespace, n.Service, "clusterset.local"), "clusterset.local")
			if !in || back.Kind != KindService || back.Key() != n.Key() {
				t.Fatalf("ParseName(%q) = %+v, and its service name parses to %+v", qname, n, back)
			}
		}
		if n.Kind == KindPort && (!sovereignty.IsLabel(n.PortName) || !sovereignty.IsLabel(n.Proto)) {
			t.Fatalf("ParseName(%q) = %+v: port parts are not labels", qname, n)
		}
	})
}
