package record

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

var (
	certsOnce              sync.Once
	serverBase, clientBase *tls.Config
)

// configs returns mTLS 1.3 configs trusting a self-signed ECDSA CA.
func configs(t testing.TB) (server, client *tls.Config) {
	certsOnce.Do(func() {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		ca := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
		must(t, err)
		caCert, err := x509.ParseCertificate(caDER)
		must(t, err)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		leaf := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "gateway"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
		must(t, err)
		pool := x509.NewCertPool()
		pool.AddCert(caCert)
		cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
		serverBase = &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
			MinVersion: tls.VersionTLS13, SessionTicketsDisabled: true,
		}
		clientBase = &tls.Config{
			Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "localhost",
			MinVersion: tls.VersionTLS13,
		}
	})
	return serverBase.Clone(), clientBase.Clone()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	must(t, err)
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// end is one side of a TLS connection made over a Raw.
type end struct {
	tc      *tls.Conn
	raw     *Raw
	secrets *Capture
}

type pairOpts struct {
	tickets bool                    // the server sends session tickets
	wrap    func(net.Conn) net.Conn // wraps the server's socket (beneath Raw)
	plain   bool                    // no Raw beneath the server
	// afterClient runs in the client's goroutine once its handshake is done.
	afterClient func(*tls.Conn)
}

// tlsPair makes a loopback TCP connection and completes crypto/tls
// handshakes on both ends concurrently, each over a Raw and with its own
// Capture.
func tlsPair(t testing.TB, o pairOpts) (client, server end) {
	cs, ss := tcpPair(t)
	if o.wrap != nil {
		ss = o.wrap(ss)
	}
	scfg, ccfg := configs(t)
	if o.tickets {
		// crypto/tls sends tickets only to a client that offers to use them.
		scfg.SessionTicketsDisabled = false
		ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	client = end{raw: NewRaw(cs), secrets: new(Capture)}
	server = end{raw: NewRaw(ss), secrets: new(Capture)}
	ccfg.KeyLogWriter, scfg.KeyLogWriter = client.secrets, server.secrets
	client.tc = tls.Client(client.raw, ccfg)
	if o.plain {
		server.tc = tls.Server(ss, scfg)
	} else {
		server.tc = tls.Server(server.raw, scfg)
	}
	errc := make(chan error, 2)
	go func() {
		err := client.tc.Handshake()
		if err == nil && o.afterClient != nil {
			o.afterClient(client.tc)
		}
		errc <- err
	}()
	go func() { errc <- server.tc.Handshake() }()
	for range 2 {
		must(t, <-errc)
	}
	return client, server
}

func (e end) switchTo(t testing.TB, isClient bool) *Conn {
	t.Helper()
	c, err := Switch(e.tc, e.raw, e.secrets, isClient)
	must(t, err)
	return c
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// writeRandomly writes data with write in chunks of 1 byte to 300 KiB,
// then calls done.
func writeRandomly(data []byte, seed uint64, write func([]byte) (int, error), done func() error) error {
	r := mrand.New(mrand.NewPCG(seed, 1))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(300<<10))
		if r.IntN(4) == 0 {
			n = min(len(data), 1+r.IntN(100))
		}
		m, err := write(data[:n])
		if err != nil {
			return err
		}
		if m != n {
			return io.ErrShortWrite
		}
		data = data[n:]
	}
	return done()
}

// transfer writes size random bytes through write and checks that r
// yields exactly them and then io.EOF, reading bufLen bytes at a time.
func transfer(t testing.TB, size, bufLen int, write func([]byte) (int, error), done func() error, r io.Reader) {
	t.Helper()
	data := randomBytes(uint64(size), size)
	errc := make(chan error, 1)
	go func() { errc <- writeRandomly(data, uint64(size), write, done) }()
	got := readAll(t, r, bufLen)
	must(t, <-errc)
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), len(data))
	}
}

// readAll reads r to io.EOF with a buffer of bufLen bytes.
func readAll(t testing.TB, r io.Reader, bufLen int) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, bufLen)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			if err != io.EOF {
				t.Fatalf("io.EOF wrapped: %v", err)
			}
			return got
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		if n == 0 {
			t.Fatalf("read returned 0, nil after %d bytes", len(got))
		}
	}
}

// conns returns two of our Conns over loopback TCP with suite id and
// random secrets, as if a handshake had negotiated them.
func conns(t testing.TB, id uint16) (client, server *Conn) {
	cs, ss := tcpPair(t)
	s, err := suiteFor(id)
	must(t, err)
	cSecret, sSecret := randomBytes(1, s.hash().Size()), randomBytes(2, s.hash().Size())
	st := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: id, HandshakeComplete: true}
	client, err = newConn(cs, st, true, sSecret, cSecret)
	must(t, err)
	server, err = newConn(ss, st, false, cSecret, sSecret)
	must(t, err)
	return client, server
}

// recorder is a net.Conn that keeps what is written to it and reads
// from a fixed stream.
type recorder struct {
	net.Conn // nil: other methods panic
	in       io.Reader
	out      bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error)      { return r.out.Write(p) }
func (r *recorder) Read(p []byte) (int, error)       { return r.in.Read(p) }
func (r *recorder) Close() error                     { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }

// fixedConn is one of our Conns over a recorder, with fixed secrets: what
// it writes can be read by fixedConn(!isClient, ...).
func fixedConn(t testing.TB, isClient bool, in io.Reader) (*Conn, *recorder) {
	rec := &recorder{in: in}
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	if isClient {
		a, b = b, a
	}
	st := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	c, err := newConn(rec, st, isClient, a, b)
	must(t, err)
	return c, rec
}
