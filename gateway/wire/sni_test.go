package wire

import (
	"errors"
	"strings"
	"testing"

	"github.com/straitmesh/strait/sovereignty"
)

func TestSNIRoundTrip(t *testing.T) {
	tg := Target{Namespace: "demo", Name: "ledger", Port: 8080}
	sni := tg.SNI()
	if sni != "outbound_.8080_._.ledger.demo.svc.clusterset.local" {
		t.Fatalf("SNI = %q", sni)
	}
	got, err := ParseSNI(sni)
	if err != nil || got != tg {
		t.Fatalf("ParseSNI(%q) = %+v, %v", sni, got, err)
	}
}

func TestParseSNIRejects(t *testing.T) {
	for _, tc := range []struct{ name, sni string }{
		{"empty", ""},
		{"plain host", "ledger.demo.svc.clusterset.local"},
		{"no port separator", "outbound_.8080.ledger.demo.svc.clusterset.local"},
		{"port zero", "outbound_.0_._.ledger.demo.svc.clusterset.local"},
		{"port too big", "outbound_.65536_._.ledger.demo.svc.clusterset.local"},
		{"leading zero", "outbound_.08080_._.ledger.demo.svc.clusterset.local"},
		{"signed port", "outbound_.+80_._.ledger.demo.svc.clusterset.local"},
		{"wrong suffix", "outbound_.8080_._.ledger.demo.svc.cluster.local"},
		{"missing namespace", "outbound_.8080_._.ledger.svc.clusterset.local"},
		{"extra label", "outbound_.8080_._.a.ledger.demo.svc.clusterset.local"},
		{"upper case", "outbound_.8080_._.Ledger.demo.svc.clusterset.local"},
		{"subset given", "outbound_.8080_.v1_.ledger.demo.svc.clusterset.local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := ParseSNI(tc.sni); !errors.Is(err, ErrBadName) {
				t.Fatalf("ParseSNI(%q) = %+v, %v; want ErrBadName", tc.sni, got, err)
			}
		})
	}
}

func TestParseAuthority(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		ok   bool
	}{
		{"ledger.demo.svc.clusterset.local:8080", Target{"demo", "ledger", 8080}, true},
		{"Ledger.Demo.svc.clusterset.local.:443", Target{"demo", "ledger", 443}, true},
		{"ledger.demo.svc.clusterset.local", Target{}, false},
		{"ledger.demo.svc.cluster.local:8080", Target{}, false},
		{"example.com:443", Target{}, false},
		{"ledger.demo.svc.clusterset.local:http", Target{}, false},
		{"[::1]:80", Target{}, false},
	} {
		got, err := ParseAuthority(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseAuthority(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, ErrBadName) {
			t.Errorf("ParseAuthority(%q) = %+v, %v; want ErrBadName", tc.in, got, err)
		}
	}
}

// sniSeeds start both SNI fuzz targets: names in the gateways' own form
// and in the mesh's, in either domain and case, and near misses.
var sniSeeds = []string{
	"outbound_.8080_._.ledger.demo.svc.clusterset.local",
	"outbound_.1_._.a.b.svc.clusterset.local",
	"outbound_._._.svc.clusterset.local",
	"outbound_.99999999999999999999_._.a.b.svc.clusterset.local",
	"outbound_.8443_._.ledger.demo.svc.cluster.local",
	"OUTBOUND_.80_._.A.B.SVC.CLUSTER.LOCAL",
	"outbound_.80_.v1_.a.b.svc.cluster.local",
	"",
}

// FuzzParseSNI checks that parsing never panics and that whatever parses
// formats back to the same name.
func FuzzParseSNI(f *testing.F) {
	for _, s := range sniSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseSNI(s)
		if err != nil {
			return
		}
		if tg.SNI() != s {
			t.Fatalf("ParseSNI(%q) = %+v formats back to %q", s, tg, tg.SNI())
		}
	})
}

// FuzzParseAuthority checks that parsing never panics and that a parsed
// target has valid parts.
func FuzzParseAuthority(f *testing.F) {
	f.Add("ledger.demo.svc.clusterset.local:8080")
	f.Add(":")
	f.Add("a.b.svc.clusterset.local:65535")
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseAuthority(s)
		if err != nil {
			return
		}
		if tg.Port < 1 || tg.Port > 65535 || !sovereignty.IsLabel(tg.Name) || !sovereignty.IsLabel(tg.Namespace) {
			t.Fatalf("ParseAuthority(%q) = %+v", s, tg)
		}
	})
}

func TestParseMeshSNI(t *testing.T) {
	ledger := Target{Namespace: "demo", Name: "ledger", Port: 8443}
	for _, tc := range []struct {
		sni  string
		want Target
	}{
		{"outbound_.8443_._.ledger.demo.svc.cluster.local", ledger},
		{"outbound_.8443_._.ledger.demo.svc.clusterset.local", ledger},
		{"OUTBOUND_.8443_._.Ledger.DEMO.svc.Cluster.Local", ledger},
		{"outbound_.1_._.a.b.svc.cluster.local", Target{Namespace: "b", Name: "a", Port: 1}},
	} {
		got, err := ParseMeshSNI(tc.sni)
		if err != nil || got != tc.want {
			t.Errorf("ParseMeshSNI(%q) = %+v, %v; want %+v", tc.sni, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ name, sni, want string }{
		{"empty", "", "want outbound_.<port>_._.<name>.<ns>.svc.cluster.local or .svc.clusterset.local"},
		{"plain host", "ledger.demo.svc.cluster.local", "want outbound_."},
		{"inbound", "inbound_.8443_._.ledger.demo.svc.cluster.local", "want outbound_."},
		{"subset", "outbound_.8443_.v1_.ledger.demo.svc.cluster.local", `subset "v1" given`},
		{"no separator", "outbound_.8443.ledger.demo.svc.cluster.local", `missing "_._." after the port`},
		{"port zero", "outbound_.0_._.ledger.demo.svc.cluster.local", `port "0" not in 1-65535`},
		{"other domain", "outbound_.8443_._.ledger.demo.svc.example.com", "want <service>.<namespace>.svc.cluster.local or <service>.<namespace>.svc.clusterset.local"},
		{"missing namespace", "outbound_.8443_._.ledger.svc.cluster.local", "with DNS labels"},
		{"extra label", "outbound_.8443_._.x.ledger.demo.svc.cluster.local", "with DNS labels"},
		{"trailing dot", "outbound_.8443_._.ledger.demo.svc.cluster.local.", "want <service>"},
		{"kelvin sign is not k", "outbound_.8443_._.\u212aey.demo.svc.cluster.local", "with DNS labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMeshSNI(tc.sni)
			if !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseMeshSNI(%q) = %+v, %v; want ErrBadName with %q", tc.sni, got, err, tc.want)
			}
		})
	}
}

// FuzzParseMeshSNI checks that parsing never panics, that a parsed target
// is valid and travels between gateways unchanged, and that the
// gateways' own form reads the same either way.
func FuzzParseMeshSNI(f *testing.F) {
	for _, s := range sniSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseMeshSNI(s)
		if gw, gwErr := ParseSNI(s); gwErr == nil && (err != nil || gw != tg) {
			t.Fatalf("ParseSNI(%q) = %+v but ParseMeshSNI = %+v, %v", s, gw, tg, err)
		}
		if err != nil {
			return
		}
		if tg.Port < 1 || tg.Port > 65535 || !sovereignty.IsLabel(tg.Name) || !sovereignty.IsLabel(tg.Namespace) {
			t.Fatalf("ParseMeshSNI(%q) = %+v", s, tg)
		}
		if back, err := ParseSNI(tg.SNI()); err != nil || back != tg {
			t.Fatalf("ParseMeshSNI(%q) = %+v does not travel: %+v, %v", s, tg, back, err)
		}
	})
}
