// Package pebbletest runs Pebble, Let's Encrypt's test ACME directory, as
// a library on loopback for tests of the acme certificate source.
//
// Invariants a test can rely on:
//
//   - Validation is real: Pebble's validation authority resolves the
//     challenged name through the DNS server started here (every name
//     under the suffix is 127.0.0.1, nothing else resolves) and connects
//     to Server.HTTPPort for HTTP-01 and Server.TLSALPNPort for
//     TLS-ALPN-01, where the ACME client's solver must answer.
//   - Only Pebble resolves gateway names. An ACME client solving HTTP-01
//     or TLS-ALPN-01 looks nothing up, so a client in another process
//     (a `strait gateway`) needs the directory URL, Server.DirectoryRoots
//     and the challenge ports, not the DNS server.
//   - Every order is validated at once (no sleeps, no reused
//     authorizations, no rejected nonces) and every certificate lives
//     for the validity Start was given, so renewals can be observed in
//     seconds.
//   - Everything stops when the test ends; Pebble's log is printed when
//     it failed.
package pebbletest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"github.com/straitmesh/strait/internal/freeport"
)

// Server is a Pebble ACME directory on loopback, wired as Pebble's
// cmd/pebble/main.go does.
type Server struct {
	// Directory is the URL of the ACME directory (https).
	Directory string
	// DirectoryRoots verify the directory's HTTPS certificate (an ACME
	// client's roots: identity.ACMEConfig.Roots, tls.acme.roots).
	DirectoryRoots []*x509.Certificate
	// Roots are what Pebble's certificates chain to (what a gateway's
	// tls.ca holds).
	Roots []*x509.Certificate
	// DNS is the address (TCP) of the DNS server Pebble resolves
	// challenged names through.
	DNS string
	// HTTPPort is where Pebble looks for HTTP-01 answers on 127.0.0.1.
	HTTPPort int
	// TLSALPNPort is where Pebble looks for TLS-ALPN-01 answers.
	TLSALPNPort int

	logs *LogBuffer
}

// Start starts Pebble issuing certificates valid for validity, for names
// under suffix, until the test ends. It sets Pebble's environment
// variables, so the test must not be parallel.
func Start(t testing.TB, suffix string, validity time.Duration) *Server {
	t.Helper()
	// Validate at once, every time (no reused authorizations), and never
	// reject a good nonce: tests are about Strait, not ACME retries.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")

	logs := new(LogBuffer)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble log:\n%s", logs.String())
		}
	})
	logger := log.New(logs, "pebble ", log.Lmicroseconds)

	s := &Server{HTTPPort: freeport.Get(t), TLSALPNPort: freeport.Get(t), logs: logs}
	s.DNS = startResolver(t, suffix)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "short-lived", ValidityPeriod: uint64(validity / time.Second)},
	})
	s.Roots = []*x509.Certificate{authority.GetRootCert(0).Cert}
	validator := va.New(logger, s.HTTPPort, s.TLSALPNPort, false, s.DNS, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewUnstartedServer(front.Handler())
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.Directory = srv.URL + wfe.DirectoryPath
	s.DirectoryRoots = []*x509.Certificate{srv.Certificate()}
	return s
}

// Logs returns what Pebble has logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// DirectoryRootsPEM is DirectoryRoots as a PEM bundle (for
// tls.acme.roots).
func (s *Server) DirectoryRootsPEM() []byte { return encode(s.DirectoryRoots) }

// RootsPEM is Roots as a PEM bundle (for tls.ca).
func (s *Server) RootsPEM() []byte { return encode(s.Roots) }

func encode(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// startResolver serves DNS over TCP on loopback (how Pebble's VA asks a
// custom resolver): A 127.0.0.1 for every name under suffix, nothing else.
func startResolver(t testing.TB, suffix string) string {
	t.Helper()
	suffix = "." + strings.TrimSuffix(strings.ToLower(suffix), ".") + "."
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: ln, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			for _, qq := range q.Question {
				if qq.Qtype == dns.TypeA && strings.HasSuffix(strings.ToLower(qq.Name), suffix) {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
				}
			}
			_ = w.WriteMsg(m)
		})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

// LogBuffer collects a log written from several goroutines (Pebble's,
// a certificate manager's) for a test to read.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
