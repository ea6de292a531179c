package admin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHostAllowed(t *testing.T) {
	g := newGuard(Access{Hosts: []string{"GW.Example.Internal.", "10.0.1.5", "[fd00::5]", "192.0.2.1:15000"}}, nil, slog.Default())
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LOCALHOST:15000", true},
		{"localhost.:15000", true},
		{"127.0.0.1:15000", true},
		{"127.0.3.1", true},
		{"[::1]:15000", true},
		{"[::ffff:127.0.0.1]:15000", true},
		{"gw.example.internal:8080", true},
		{"gw.example.internal", true},
		{"10.0.1.5:15000", true},
		{"[fd00:0::5]:15000", true},
		{"192.0.2.1", true},
		{"", false},
		{"evil.example", false},
		{"evil.example:15000", false},
		{"127.0.0.1.nip.io", false},
		{"localhost.evil.example", false},
		{"sub.localhost", false},
		{"10.0.1.6:15000", false},
		{"0.0.0.0:15000", false},
		{"gw.example.internal.evil.example", false},
	} {
		if got := g.hostAllowed(tc.host); got != tc.want {
			t.Errorf("Host %q: allowed %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	b := NewBearerToken("0123456789abcdef-token")
	for _, tc := range []struct {
		name, header string
		ok, none     bool
	}{
		{"right", "Bearer 0123456789abcdef-token", true, false},
		{"scheme in any case", "bearer 0123456789abcdef-token", true, false},
		{"missing", "", false, true},
		{"other scheme", "Basic MDEyMzQ1", false, true},
		{"wrong", "Bearer 0123456789abcdef-tokem", false, false},
		{"prefix", "Bearer 0123456789abcdef", false, false},
		{"empty bearer", "Bearer ", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/keys", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			who, err := b.Authenticate(r)
			if (err == nil) != tc.ok || (err == ErrNoCredentials) != tc.none || (tc.ok && who == "") {
				t.Fatalf("Authenticate: %q %v", who, err)
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want, err string }{
		{"trailing newline", "  0123456789abcdef\n", "0123456789abcdef", ""},
		{"short", "0123456789\n", "", "at least 16"},
		{"empty", "\n", "", "at least 16"},
		{"two words", "0123456789abcdef 0123456789abcdef", "", "white space"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := ReadTokenFile(path)
		if tok != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %q %v", tc.name, tok, err)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file read")
	}
}

// TestOperatorChecksInOrder: a request failing several checks is refused
// for the first, so a rebinding page learns nothing about credentials.
func TestOperatorChecksInOrder(t *testing.T) {
	g := newGuard(Access{Auth: []Authenticator{NewBearerToken("0123456789abcdef")}}, nil, slog.New(slog.DiscardHandler))
	h := g.operator(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		name  string
		host  string
		hdr   map[string]string
		code  int
		reply string
	}{
		{"foreign host first", "evil.example", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "Host"},
		{"cross-origin before credentials", "localhost", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-origin"},
		{"credentials before content type", "localhost", nil, 401, "credentials required"},
		{"content type last", "localhost", map[string]string{"Authorization": "Bearer 0123456789abcdef"}, 415, "application/json"},
		{"all good", "localhost", map[string]string{"Authorization": "Bearer 0123456789abcdef", "Content-Type": "application/json; charset=utf-8"}, 204, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/keys/use", strings.NewReader("{}"))
			r.Host = tc.host
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.reply) {
				t.Fatalf("%d %q, want %d ...%s...", w.Code, w.Body.String(), tc.code, tc.reply)
			}
		})
	}
}
