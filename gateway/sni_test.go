package gateway

import (
	"errors"
	"testing"
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

// FuzzParseSNI checks that parsing never panics and that whatever parses
// formats back to the same name.
func FuzzParseSNI(f *testing.F) {
	for _, s := range []string{
		"outbound_.8080_._.ledger.demo.svc.clusterset.local",
		"outbound_.1_._.a.b.svc.clusterset.local",
		"outbound_._._.svc.clusterset.local",
		"outbound_.99999999999999999999_._.a.b.svc.clusterset.local",
		"",
	} {
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
		if tg.Port < 1 || tg.Port > 65535 || !isLabel(tg.Name) || !isLabel(tg.Namespace) {
			t.Fatalf("ParseAuthority(%q) = %+v", s, tg)
		}
	})
}
