package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Reply is what a demo service answers to every request.
type Reply struct {
	Service  string `json:"service"`
	Cluster  string `json:"cluster"`
	Region   string `json:"region"`
	Endpoint string `json:"endpoint"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Host     string `json:"host"`
	// SNI is the server name of a request that came over TLS.
	SNI string `json:"sni,omitempty"`
	TLS bool   `json:"tls,omitempty"`
	// Headers are the request's headers, on GET /headers only.
	Headers http.Header `json:"headers,omitempty"`
}

// DemoService is an HTTP server answering JSON that names the cluster and
// region that served the request (and, on GET /headers, the headers it
// received), over HTTP/1.1 and h2c; over HTTP/2 it also answers gRPC's
// standard health service, SERVING for "" and for its service name. With a certificate it also speaks TLS
// on the same port, to clients whose first byte starts a TLS handshake.
type DemoService struct {
	Service, Cluster, Region string
	ln                       net.Listener
	srv                      *http.Server
	grpc                     *grpc.Server
	done                     chan struct{}
}

// StartDemo starts a demo service on addr (host:port; port 0 picks one).
func StartDemo(addr, service, cluster, region string) (*DemoService, error) {
	return StartDemoTLS(addr, service, cluster, region, nil)
}

// StartDemoTLS starts a demo service that also answers HTTPS with cert
// on the same port; nil cert is StartDemo.
func StartDemoTLS(addr, service, cluster, region string, cert *tls.Certificate) (*DemoService, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo %s in %s: listen %s: %w", service, cluster, addr, err)
	}
	d := &DemoService{Service: service, Cluster: cluster, Region: region, ln: ln, done: make(chan struct{}), grpc: grpc.NewServer()}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(d.grpc, hs)
	// HTTP/1.1, HTTP/2 with prior knowledge (h2c) and, over HTTP/2, gRPC
	// (the standard health service) on the one port.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			d.grpc.ServeHTTP(w, r)
			return
		}
		d.ServeHTTP(w, r)
	})
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	d.srv = &http.Server{Handler: handler, Protocols: &protocols, ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, demoConnKey{}, c) }}
	serveLn := ln
	if cert != nil {
		serveLn = sniffListener{Listener: ln, cfg: &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}}
	}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener was closed under us; Close reports nothing more useful
		}
	}()
	return d, nil
}

// Addr returns the listening address.
func (d *DemoService) Addr() string { return d.ln.Addr().String() }

// ServeHTTP implements http.Handler.
func (d *DemoService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	reply := Reply{Service: d.Service, Cluster: d.Cluster, Region: d.Region, Endpoint: d.Addr(), Method: r.Method, Path: r.URL.Path, Host: r.Host}
	if r.URL.Path == "/headers" {
		reply.Headers = r.Header
	}
	if sc, ok := r.Context().Value(demoConnKey{}).(*sniffConn); ok {
		if tc := sc.tls.Load(); tc != nil {
			reply.TLS, reply.SNI = true, tc.ConnectionState().ServerName
		}
	}
	_ = enc.Encode(reply)
}

// Close stops the service.
func (d *DemoService) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := d.srv.Shutdown(ctx)
	d.grpc.Stop()
	<-d.done
	return err
}

type demoConnKey struct{}

// sniffListener hands out connections that speak TLS when the client's
// first byte starts a TLS handshake (22), and plain bytes otherwise.
type sniffListener struct {
	net.Listener
	cfg *tls.Config
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, cfg: l.cfg}, nil
}

// sniffConn decides on its first read or write whether it is TLS.
type sniffConn struct {
	net.Conn
	cfg  *tls.Config
	once sync.Once
	rw   net.Conn                 // what reads and writes go to
	tls  atomic.Pointer[tls.Conn] // set when the client speaks TLS
}

func (c *sniffConn) pick() {
	c.once.Do(func() {
		br := bufio.NewReader(c.Conn)
		pc := &peekedConn{Conn: c.Conn, r: br}
		c.rw = pc
		if first, err := br.Peek(1); err == nil && first[0] == 22 {
			tc := tls.Server(pc, c.cfg)
			c.tls.Store(tc)
			c.rw = tc
		}
	})
}

func (c *sniffConn) Read(p []byte) (int, error) {
	c.pick()
	return c.rw.Read(p)
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.pick()
	return c.rw.Write(p)
}

// Close ends a TLS session with close_notify.
func (c *sniffConn) Close() error {
	if tc := c.tls.Load(); tc != nil {
		return tc.Close()
	}
	return c.Conn.Close()
}

// peekedConn reads through the reader that peeked at it.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
