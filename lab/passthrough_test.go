package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/lab"
	"github.com/straitmesh/strait/sovereignty"
)

// greeting is the first line a tlsService writes on each connection.
type greeting struct {
	Cluster string `json:"cluster"`
	SNI     string `json:"sni"`
	Client  string `json:"client"`
}

// startTLSService runs a workload's own mTLS server for demo/<name> in
// cluster, with a certificate of the mesh CA: it greets each client with
// the cluster, the server name it saw and the client certificate's name,
// then echoes.
func startTLSService(t *testing.T, mesh *lab.MeshCA, name, cluster string, labels map[string]string) discovery.Service {
	t.Helper()
	cert, err := mesh.Issue(name+" in "+cluster, name+".demo.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: mesh.Pool(), MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, ln, func(c net.Conn) {
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			return // health checks connect and leave
		}
		cs := tc.ConnectionState()
		line, _ := json.Marshal(greeting{Cluster: cluster, SNI: cs.ServerName, Client: cs.PeerCertificates[0].Subject.CommonName})
		if _, err := tc.Write(append(line, '\n')); err != nil {
			return
		}
		io.Copy(tc, tc)
	})
	return serviceAt("demo/"+name, "tls", 8443, addr, labels)
}

// countingConn counts the bytes read from the gateway.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// fragmentingConn sends its first write (the ClientHello) as records of
// at most size handshake bytes each.
type fragmentingConn struct {
	net.Conn
	size int
	done bool
}

func (c *fragmentingConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.done = true
	var msg []byte
	for rest := p; len(rest) >= 5; {
		n := int(rest[3])<<8 | int(rest[4])
		msg = append(msg, rest[5:5+n]...)
		rest = rest[5+n:]
	}
	var out []byte
	for len(msg) > 0 {
		n := min(c.size, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// meshClient is a mesh workload in a cluster: it speaks TLS with its own
// certificate and checks the service's certificate for the service's
// name, whatever SNI it routes with.
type meshClient struct {
	mesh *lab.MeshCA
	cert tls.Certificate
}

// dial opens TLS through a passthrough port with sni; wrap, if set, sits
// between TLS and the connection. read counts every byte the client got.
func (mc meshClient) dial(t *testing.T, addr, sni, service string, wrap func(net.Conn) net.Conn) (tc *tls.Conn, read *atomic.Int64, err error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: raw}
	var conn net.Conn = cc
	if wrap != nil {
		conn = wrap(cc)
	}
	tc = tls.Client(conn, &tls.Config{ServerName: sni, Certificates: []tls.Certificate{mc.cert}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, VerifyConnection: mc.mesh.VerifyName(service + ".demo.svc.cluster.local")})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, &cc.read, err
	}
	return tc, &cc.read, nil
}

// call opens TLS to sni through addr, reads the greeting and checks that
// size random bytes come back intact.
func (mc meshClient) call(t *testing.T, addr, sni, service string, size int, wrap func(net.Conn) net.Conn) (greeting, tls.ConnectionState) {
	t.Helper()
	tc, _, err := mc.dial(t, addr, sni, service, wrap)
	if err != nil {
		t.Fatalf("TLS through %s with SNI %s: %v", addr, sni, err)
	}
	defer tc.Close()
	line, err := readLine(tc)
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	var g greeting
	if err := json.Unmarshal(line, &g); err != nil {
		t.Fatalf("greeting %q: %v", line, err)
	}
	payload := make([]byte, size)
	rand.Read(payload)
	go func() {
		tc.Write(payload)
		tc.CloseWrite()
	}()
	back, err := io.ReadAll(tc)
	if err != nil || !bytes.Equal(back, payload) {
		t.Fatalf("echo: %d of %d bytes back intact? %v (%v)", len(back), size, bytes.Equal(back, payload), err)
	}
	return g, tc.ConnectionState()
}

func readLine(r io.Reader) ([]byte, error) {
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := io.ReadFull(r, b); err != nil {
			return line, err
		}
		if b[0] == '\n' {
			return line, nil
		}
		line = append(line, b[0])
	}
}

// closedSilently reports whether the gateway closed the connection
// without sending a byte.
func closedSilently(t *testing.T, c net.Conn, read *atomic.Int64) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read = %d, %v; want the connection closed", n, err)
	}
	if got := read.Load() + int64(n); got != 0 {
		t.Fatalf("the gateway sent %d bytes", got)
	}
}

func sniOf(service string, port int, domain string) string {
	return "outbound_." + strconv.Itoa(port) + "_._." + service + ".demo.svc." + domain
}

// TestPassthrough carries a mesh's own end-to-end mTLS through the
// gateways: TLS from a workload in cluster a, routed by its Istio-style
// SNI at a's passthrough port, to a TLS server in another cluster, with
// certificates of a CA the federation knows nothing of.
func TestPassthrough(t *testing.T) {
	mesh, err := lab.NewMeshCA("test mesh CA")
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := mesh.Issue("client in a")
	if err != nil {
		t.Fatal(err)
	}
	mc := meshClient{mesh: mesh, cert: clientCert}
	pii := map[string]string{"data-class": "pii-eu"}
	secureB := startTLSService(t, mesh, "secure", "b", nil)
	secureC := startTLSService(t, mesh, "secure", "c", nil)
	vaultC := startTLSService(t, mesh, "vault", "c", pii)
	auditDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, lab.Spec{
		Clusters: []lab.ClusterSpec{
			{Name: "a", Region: "eu-central"},
			{Name: "b", Region: "eu-central", Services: []discovery.Service{secureB}}, // same region as a: preferred
			{Name: "c", Region: "us-east", Services: []discovery.Service{secureC, vaultC}},
		},
		// pii-eu flows stay in eu; every gateway knows every service;
		// passthrough flows, which the gateway cannot read, are not put in
		// pii-eu for its header matcher (the last subtest drops this).
		Policy:   []byte(strings.Replace(string(examples.Residency), "catalog: region-only", "unreadable: allow", 1)),
		AuditDir: auditDir,
		Timeouts: gateway.Timeouts{Connect: time.Second, Budget: 2 * time.Second, Drain: time.Second},
		Health:   gateway.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := l.Gateway("a"), l.Gateway("b")
	pass := a.PassthroughAddr()
	if pass == "" || a.Status().Addresses.Passthrough != pass {
		t.Fatalf("passthrough address %q, status %q", pass, a.Status().Addresses.Passthrough)
	}
	secureSNI := sniOf("secure", 8443, "cluster.local")
	refused := func(reason string) float64 {
		return metricValue(t, a, "strait_gateway_passthrough_refused_total", map[string]string{"reason": reason})
	}

	t.Run("end-to-end TLS through both gateways", func(t *testing.T) {
		outOK := map[string]string{"direction": "outbound", "service": "demo/secure:8443", "source_cluster": "a", "destination_cluster": "b", "result": "ok"}
		before, inBefore := metricValue(t, a, "strait_gateway_connections_total", outOK), inboundFrom(t, b, "demo/secure:8443", "a")
		txBefore := metricValue(t, a, "strait_gateway_bytes_total", map[string]string{"direction": "outbound", "service": "demo/secure:8443", "flow": "tx"})
		g, cs := mc.call(t, pass, secureSNI, "secure", 256<<10, nil)
		if g.Cluster != "b" || g.SNI != secureSNI || g.Client != "client in a" {
			t.Fatalf("greeting %+v; want cluster b, the SNI as sent and the client's own certificate", g)
		}
		// The session is the workload's: its certificate, its CA, TLS 1.3.
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "secure in b" || cs.Version != tls.VersionTLS13 || len(cs.PeerCertificates[0].URIs) != 0 {
			t.Errorf("server certificate %q (URIs %v), version %x", cn, cs.PeerCertificates[0].URIs, cs.Version)
		}
		if got := metricValue(t, a, "strait_gateway_connections_total", outOK); got != before+1 {
			t.Errorf("a outbound to b: %v, want %v", got, before+1)
		}
		if got := inboundFrom(t, b, "demo/secure:8443", "a"); got != inBefore+1 {
			t.Errorf("b inbound from a: %v, want %v", got, inBefore+1)
		}
		waitFor(t, func() bool {
			return metricValue(t, a, "strait_gateway_bytes_total", map[string]string{"direction": "outbound", "service": "demo/secure:8443", "flow": "tx"}) >= txBefore+256<<10
		})
	})

	t.Run("clusterset names and upper case", func(t *testing.T) {
		for _, sni := range []string{sniOf("secure", 8443, "clusterset.local"), strings.ToUpper(secureSNI)} {
			if g, _ := mc.call(t, pass, sni, "secure", 1000, nil); g.Cluster != "b" || g.SNI != sni {
				t.Errorf("SNI %s: greeting %+v", sni, g)
			}
		}
	})

	t.Run("ClientHello split over records", func(t *testing.T) {
		for _, size := range []int{1000, 200} {
			g, _ := mc.call(t, pass, secureSNI, "secure", 1000, func(c net.Conn) net.Conn { return &fragmentingConn{Conn: c, size: size} })
			if g.Cluster != "b" || g.SNI != secureSNI {
				t.Errorf("records of %d bytes: greeting %+v", size, g)
			}
		}
	})

	t.Run("local service is dialled directly", func(t *testing.T) {
		if g, _ := mc.call(t, b.PassthroughAddr(), secureSNI, "secure", 1000, nil); g.Cluster != "b" {
			t.Errorf("from b: greeting %+v", g)
		}
	})

	t.Run("bad or unknown SNI is closed without a byte", func(t *testing.T) {
		for _, tc := range []struct{ sni, reason string }{
			{"secure.demo.svc.cluster.local", "sni"},
			{"outbound_.8443_.v1_.secure.demo.svc.cluster.local", "sni"},
			{"", "sni"}, // no server name at all
			{sniOf("nope", 8443, "cluster.local"), "unknown_service"},
			{sniOf("secure", 9999, "cluster.local"), "unavailable"}, // no cluster serves that port
		} {
			before := refused(tc.reason)
			tc2, read, err := mc.dial(t, pass, tc.sni, "secure", nil)
			if err == nil {
				tc2.Close()
				t.Fatalf("SNI %q: handshake completed", tc.sni)
			}
			if read.Load() != 0 {
				t.Errorf("SNI %q: the gateway sent %d bytes (%v)", tc.sni, read.Load(), err)
			}
			if got := refused(tc.reason); got != before+1 {
				t.Errorf("SNI %q: refused{reason=%s} %v, want %v", tc.sni, tc.reason, got, before+1)
			}
		}
	})

	t.Run("non-TLS bytes are closed without a byte", func(t *testing.T) {
		before := refused("client_hello")
		c, err := net.Dial("tcp", pass)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cc := &countingConn{Conn: c}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: secure.demo.svc.cluster.local\r\n\r\n")
		closedSilently(t, cc, &cc.read)
		if got := refused("client_hello"); got != before+1 {
			t.Errorf("refused{reason=client_hello} %v, want %v", got, before+1)
		}
	})

	t.Run("a client that sends nothing is closed after the connect timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", pass)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.Write([]byte{22, 3, 1, 0, 200, 1}) // half a record, then silence
		cc := &countingConn{Conn: c}
		closedSilently(t, cc, &cc.read)
		if took := time.Since(start); took < 900*time.Millisecond || took > 5*time.Second {
			t.Errorf("closed after %s with a 1s connect timeout", took)
		}
	})

	t.Run("residency refusal closes without a byte and is audited", func(t *testing.T) {
		before := refused("residency")
		inBefore := inboundFrom(t, l.Gateway("c"), "demo/vault:8443", "a")
		tc, read, err := mc.dial(t, pass, sniOf("vault", 8443, "cluster.local"), "vault", nil)
		if err == nil {
			tc.Close()
			t.Fatal("a pii-eu flow from eu-central reached us-east")
		}
		if read.Load() != 0 {
			t.Errorf("the gateway sent %d bytes", read.Load())
		}
		if got := refused("residency"); got != before+1 {
			t.Errorf("refused{reason=residency} %v, want %v", got, before+1)
		}
		if got := inboundFrom(t, l.Gateway("c"), "demo/vault:8443", "a"); got != inBefore {
			t.Errorf("c accepted the flow")
		}
		var rec sovereignty.Record
		waitFor(t, func() bool {
			var ok bool
			rec, ok = findRecord(auditRecords(t, filepath.Join(auditDir, "a.jsonl")), func(r sovereignty.Record) bool {
				return r.Decision == "deny" && r.Entry == "passthrough"
			})
			return ok
		})
		if rec.Status != 403 || rec.Direction != "outbound" || rec.Rule != "class:pii-eu" || rec.Flow == nil || rec.Flow.Service != "demo/vault" ||
			rec.Flow.Port != 8443 || rec.Flow.Protocol != "tcp" || strings.Join(rec.Flow.Classes, ",") != "pii-eu" {
			t.Errorf("audit record %+v (flow %+v)", rec, rec.Flow)
		}
	})

	t.Run("failover when the preferred cluster is down", func(t *testing.T) {
		link := l.Link("a", "b")
		if err := link.Partition(); err != nil {
			t.Fatal(err)
		}
		failovers := metricValue(t, a, "strait_gateway_failovers_total", map[string]string{"service": "demo/secure:8443"})
		g, _ := mc.call(t, pass, secureSNI, "secure", 64<<10, nil)
		if g.Cluster != "c" || g.SNI != secureSNI {
			t.Fatalf("with a->b cut: greeting %+v, want c", g)
		}
		if got := metricValue(t, a, "strait_gateway_failovers_total", map[string]string{"service": "demo/secure:8443"}); got != failovers+1 {
			t.Errorf("failovers %v, want %v", got, failovers+1)
		}
		if err := link.Heal(); err != nil {
			t.Fatal(err)
		}
		// b is tried last until a's probe reaches it again.
		waitFor(t, func() bool {
			g, _ := mc.call(t, pass, secureSNI, "secure", 1000, nil)
			return g.Cluster == "b"
		})
		if err := l.StopGateway(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			for _, c := range a.Catalog().Snapshot().Clusters {
				if c.Cluster == "b" {
					return !c.Reachable
				}
			}
			return false
		})
		if g, _ := mc.call(t, pass, secureSNI, "secure", 1000, nil); g.Cluster != "c" {
			t.Fatalf("with b stopped: greeting %+v, want c", g)
		}
	})

	t.Run("unreadable flows fail closed", func(t *testing.T) {
		// Under the shipped policy a passthrough flow, which could carry
		// the x-data-residency marker unseen, is pii-eu: with b (eu)
		// stopped it is refused rather than sent to c in us-east.
		if err := l.SetPolicy([]byte(strings.Replace(string(examples.Residency), "catalog: region-only", "", 1))); err != nil {
			t.Fatal(err)
		}
		tc, read, err := mc.dial(t, pass, secureSNI, "secure", nil)
		if err == nil {
			tc.Close()
			t.Fatal("an unreadable flow from eu-central reached us-east")
		}
		if read.Load() != 0 {
			t.Errorf("the gateway sent %d bytes", read.Load())
		}
		rec, ok := findRecord(auditRecords(t, filepath.Join(auditDir, "a.jsonl")), func(r sovereignty.Record) bool {
			return r.Decision == "deny" && r.Entry == "passthrough" && r.Flow != nil && r.Flow.Service == "demo/secure"
		})
		if !ok || !rec.Flow.Unreadable || strings.Join(rec.Flow.Classes, ",") != "pii-eu" || rec.Rule != "class:pii-eu" {
			t.Errorf("audit record %+v (found %v)", rec, ok)
		}
	})
}
