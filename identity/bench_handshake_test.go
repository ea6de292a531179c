//go:build bench

package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

// TestBenchHandshake measures a full mTLS handshake (TLS 1.3, no
// resumption) over loopback with the Bundle's configs (current
// certificate and trust read at every handshake, peer verified by
// Trust.Verify with its reasons and revocations) against a baseline in
// the same run: static crypto/tls configs holding the certificate and a
// CA pool, verifying the chain with crypto/x509 and the trust domain
// after, as gateways did before certificates could change under them.
// Rounds alternate so that both see the same machine.
func TestBenchHandshake(t *testing.T) {
	ca, err := NewCA("strait.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(cluster string) *Bundle {
		cert, err := ca.IssueID(ID{Role: RoleGateway, Region: "r1", Cluster: cluster}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewBundle(cert, ca.Roots())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	srvB, cliB := issue("server"), issue("client")
	pool := ca.Pool()
	checkTD := func(chains [][]*x509.Certificate) error {
		if len(chains) == 0 {
			return errors.New("no chain")
		}
		id, err := Parse(chains[0][0])
		if err != nil {
			return err
		}
		if id.TrustDomain != "strait.local" {
			return fmt.Errorf("trust domain %s", id.TrustDomain)
		}
		return nil
	}
	staticServer := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*srvB.Certificate()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error { return checkTD(chains) }}
	staticClient := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cliB.Certificate()}, ServerName: "x.strait",
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return err
			}
			return checkTD(chains)
		}}
	bundleServer, bundleClient := srvB.ServerConfig(), cliB.ClientConfig("x.strait")
	for _, c := range []*tls.Config{staticServer, bundleServer} {
		c.SessionTicketsDisabled = true
	}

	const perRound, rounds = 300, 5
	run := func(server, client *tls.Config) []time.Duration {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					tc := tls.Server(c, server)
					tc.Handshake()
					tc.Write([]byte{1})
					tc.Close()
				}()
			}
		}()
		out := make([]time.Duration, 0, perRound)
		for range perRound {
			start := time.Now()
			c, err := tls.Dial("tcp", ln.Addr().String(), client)
			if err != nil {
				t.Fatal(err)
			}
			// The server's verdict on the client arrives after the
			// client's handshake: read its byte.
			if _, err := c.Read(make([]byte, 1)); err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			out = append(out, time.Since(start))
			c.Close()
		}
		return out
	}
	var static, bundle []time.Duration
	for range rounds {
		static = append(static, run(staticServer, staticClient)...)
		bundle = append(bundle, run(bundleServer, bundleClient)...)
	}
	pct := func(ds []time.Duration, p float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(p*float64(len(s))))]) / float64(time.Microsecond)
	}
	sp50, bp50, sp99, bp99 := pct(static, 0.5), pct(bundle, 0.5), pct(static, 0.99), pct(bundle, 0.99)
	fmt.Printf("BENCH handshake_static_p50_us %.0f us\n", sp50)
	fmt.Printf("BENCH handshake_bundle_p50_us %.0f us\n", bp50)
	fmt.Printf("BENCH handshake_static_p99_us %.0f us\n", sp99)
	fmt.Printf("BENCH handshake_bundle_p99_us %.0f us\n", bp99)
	fmt.Printf("BENCH handshake_bundle_vs_static_p50_x %.2f x\n", bp50/sp50)
	fmt.Printf("BENCH handshake_bundle_vs_static_p99_x %.2f x\n", bp99/sp99)
}
