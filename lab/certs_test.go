package lab_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/lab"
)

// dialProbe completes an mTLS handshake with a gateway's data port as a
// probe of cluster "probe" holding a certificate of ca, trusting every
// root of ca and roots.
func dialProbe(addr string, ca *identity.CA, roots ...*identity.CA) (*tls.Conn, error) {
	cert, err := ca.IssueID(identity.ID{Role: identity.RoleGateway, Region: "probe", Cluster: "probe"}, time.Hour)
	if err != nil {
		return nil, err
	}
	rs := ca.Roots()
	for _, r := range roots {
		rs = append(rs, r.Roots()...)
	}
	b, err := identity.NewBundle(cert, rs)
	if err != nil {
		return nil, err
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, b.ClientConfig("probe.strait"))
}

// servedSerial is the serial of the certificate a gateway's data port
// presents to a new handshake (dialProbe).
func servedSerial(addr string, ca *identity.CA, roots ...*identity.CA) (string, error) {
	c, err := dialProbe(addr, ca, roots...)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return identity.SerialHex(c.ConnectionState().PeerCertificates[0]), nil
}

// waitServing waits until gateway g reports serial as its certificate and
// its data port presents it to a new handshake.
func waitServing(t *testing.T, g *gateway.Gateway, serial string, ca *identity.CA, roots ...*identity.CA) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last string
	var lastErr error
	for time.Now().Before(deadline) {
		if st := g.Status().Certificate; st != nil && st.Serial == serial {
			if last, lastErr = servedSerial(g.DataAddr(), ca, roots...); lastErr == nil && last == serial {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gateway does not serve certificate %s within 5s: status %+v, served %s (%v)", serial, g.Status().Certificate, last, lastErr)
}

func waitRoots(t *testing.T, g *gateway.Gateway, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if tr := g.Status().Trust; tr != nil && len(tr.Domains) == 1 && len(tr.Domains[0].Roots) == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gateway trusts %+v, want %d roots", g.Status().Trust, n)
}

// TestCertificateFilesRotateWithoutFailedConnections: gateways whose
// certificates another tool writes as files take each new certificate,
// and a new CA bundle, within a poll, while a steady stream of new
// connections and one long-lived connection through a tunnel run without
// a single failure. The federation's CA is rotated the way the files
// source allows: both CAs trusted, certificates re-issued by the new one,
// the old one removed; a certificate of the old CA is refused after.
func TestCertificateFilesRotateWithoutFailedConnections(t *testing.T) {
	l := startLineLab(t, lab.Spec{CertFiles: true},
		lab.ClusterSpec{Name: "a", Region: "r1", Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a, b := l.Gateway("a"), l.Gateway("b")
	imp := a.ImportAddrs()["demo/lines:7000"]
	for _, g := range []*gateway.Gateway{a, b} {
		if st := g.Status().Certificate; st == nil || st.Source != identity.SourceFiles {
			t.Fatalf("certificate status %+v, want source files", st)
		}
	}
	long := dialLine(t, imp)
	if _, err := long.ask(3); err != nil {
		t.Fatal(err)
	}

	stream := startConnStream(imp, 50000)

	step := func(name string) {
		t.Helper()
		if _, err := long.ask(5); err != nil {
			t.Fatalf("%s: the long-lived connection broke: %v", name, err)
		}
	}
	old := l.CA
	// New certificates from the same CA.
	for _, g := range []struct {
		name string
		gw   *gateway.Gateway
	}{{"a", a}, {"b", b}} {
		serial, err := l.RotateCert(g.name, old, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		waitServing(t, g.gw, serial, old)
	}
	step("renewed")
	// CA rotation: trust both, re-issue from the new CA, drop the old.
	next, err := identity.NewCA(old.TrustDomain, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := l.WriteRoots(name, old, next); err != nil {
			t.Fatal(err)
		}
	}
	waitRoots(t, a, 2)
	waitRoots(t, b, 2)
	step("both CAs")
	for _, g := range []struct {
		name string
		gw   *gateway.Gateway
	}{{"a", a}, {"b", b}} {
		serial, err := l.RotateCert(g.name, next, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		waitServing(t, g.gw, serial, next, old)
	}
	step("new CA's certificates")
	for _, name := range []string{"a", "b"} {
		if err := l.WriteRoots(name, next); err != nil {
			t.Fatal(err)
		}
	}
	waitRoots(t, a, 1)
	waitRoots(t, b, 1)
	step("old CA removed")
	time.Sleep(300 * time.Millisecond) // connections made after the last change
	made, failed, firstErr := stream.Stop()

	if failed > 0 {
		t.Fatalf("%d of %d new connections failed during the rotations; first: %v", failed, made, firstErr)
	}
	if made < 50 {
		t.Fatalf("only %d connections made during the rotations", made)
	}
	t.Logf("%d new connections, none failed, across 4 certificate changes per gateway and a CA rotation", made)
	// In TLS 1.3 the server checks the client's certificate after the
	// client has finished: the refusal arrives as an alert on first read.
	c, err := dialProbe(b.DataAddr(), old, next)
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("a certificate of the removed CA is accepted (read: %v)", err)
		}
	}
	t.Logf("a certificate of the removed CA: %v", err)
	if n := metricValue(t, a, "strait_identity_renewals_total", map[string]string{"source": "files", "result": "ok"}); n != 2 {
		t.Fatalf("strait_identity_renewals_total{files,ok} = %v, want the two certificate changes", n)
	}
	if st := a.Status().Certificate; st.Renewals != 2 || st.Failures != 0 {
		t.Fatalf("certificate status %+v, want 2 renewals and no failures", st)
	}
}

// TestFederationCARenewsUnderLoad: the federation's own CA as users run
// it. The voter signs its own certificate with the intermediate it holds;
// the other gateway enrols with a single-use join token an operator wrote
// and renews over the control API. Certificates live 6s and are renewed
// at two thirds of that, twice while a steady stream of new
// connections and one long-lived connection run: none fails, and the
// status shows the renewals. With tunnels the long-lived connection rides
// a tunnel opened with certificates long expired by the end; without,
// every new connection is a handshake between the gateways.
func TestFederationCARenewsUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noTunnels bool
	}{{"tunnels", false}, {"a handshake per connection", true}} {
		t.Run(tc.name, func(t *testing.T) { testCARenewals(t, tc.noTunnels) })
	}
}

func testCARenewals(t *testing.T, noTunnels bool) {
	l := startLineLab(t, lab.Spec{State: true, CertAuthority: true, CertLifetime: 6 * time.Second, NoTunnels: noTunnels},
		lab.ClusterSpec{Name: "a", Region: "r1", Voter: true, Imports: lineImport},
		lab.ClusterSpec{Name: "b", Region: "r2", Services: []discovery.Service{lineService(t, "demo/lines", "b")}})
	a, b := l.Gateway("a"), l.Gateway("b")
	imp := a.ImportAddrs()["demo/lines:7000"]
	for _, g := range []*gateway.Gateway{a, b} {
		st := g.Status().Certificate
		if st == nil || st.Source != identity.SourceCA || !strings.Contains(st.Issuer, "intermediate") {
			t.Fatalf("certificate status %+v, want source ca, issued by the intermediate", st)
		}
		if life := st.NotAfter.Sub(st.NotBefore); life > 7*time.Second {
			t.Fatalf("certificate lives %s, want about 6s", life)
		}
	}
	long := dialLine(t, imp)
	if _, err := long.ask(3); err != nil {
		t.Fatal(err)
	}
	stream := startConnStream(imp, 50000)
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		if a.Status().Certificate.Renewals >= 2 && b.Status().Certificate.Renewals >= 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := long.ask(4); err != nil {
			t.Fatalf("the long-lived connection broke: %v", err)
		}
	}
	made, failed, firstErr := stream.Stop()
	sa, sb := a.Status().Certificate, b.Status().Certificate
	if sa.Renewals < 2 || sb.Renewals < 2 {
		t.Fatalf("renewals: a %d, b %d within 25s; want 2 each (a %+v, b %+v)", sa.Renewals, sb.Renewals, sa, sb)
	}
	if failed > 0 {
		t.Fatalf("%d of %d new connections failed across the renewals; first: %v", failed, made, firstErr)
	}
	t.Logf("%d new connections across %d renewals of a and %d of b, none failed; b's certificate now %s, next renewal %s",
		made, sa.Renewals, sb.Renewals, sb.Serial, sb.NextRenewal.Format(time.RFC3339Nano))
	if n := metricValue(t, b, "strait_identity_renewals_total", map[string]string{"source": "ca", "result": "ok"}); n < float64(sb.Renewals) {
		t.Fatalf("strait_identity_renewals_total{ca,ok} = %v, status says %d renewals", n, sb.Renewals)
	}
	if n := metricValue(t, a, "strait_state_certificates_signed_total", map[string]string{"how": "token"}); n != 1 {
		t.Fatalf("certificates signed with a token: %v, want 1 (b's enrolment)", n)
	}
}

// connStream opens new connections through an import port one after
// another, each asking one line and closing, until stopped: the steady
// load under which certificates change.
type connStream struct {
	stop         chan struct{}
	done         chan struct{}
	made, failed int64
	first        error
}

// startConnStream starts a stream of at most max connections to addr.
func startConnStream(addr string, max int) *connStream {
	s := &connStream{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for range max {
			select {
			case <-s.stop:
				return
			default:
			}
			err := func() error {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = (&lineConn{c: c, br: bufio.NewReader(c)}).ask(3)
				return err
			}()
			s.made++
			if err != nil {
				if s.failed++; s.first == nil {
					s.first = err
				}
			}
		}
	}()
	return s
}

// Stop ends the stream and returns the connections it made, how many
// failed and the first failure.
func (s *connStream) Stop() (made, failed int64, first error) {
	close(s.stop)
	<-s.done
	return s.made, s.failed, s.first
}
