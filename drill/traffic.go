package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// client sends one traffic entry's requests from one gateway of a cluster.
type client struct {
	t       *Traffic
	cluster string
	gw      *FederationGateway
	host    string // name.namespace.svc.clusterset.local:port
	// entry is the import address when the gateway has one for the
	// service port; "" sends through the CONNECT port.
	entry   string
	timeout time.Duration

	http *http.Client
	mu   sync.Mutex
	conn *grpc.ClientConn
}

func newClient(t *Traffic, cluster string, gw *FederationGateway, timeout time.Duration) *client {
	c := &client{t: t, cluster: cluster, gw: gw, timeout: timeout,
		host:  fmt.Sprintf("%s.%s.svc.clusterset.local:%d", t.To.Name, t.To.Namespace, t.To.Port),
		entry: gw.Imports[t.To.String()]}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		ResponseHeaderTimeout: timeout, DisableCompression: true}
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		conn, _, err := c.dial(ctx)
		return conn, err
	}
	c.http = &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c
}

// refusedError is a CONNECT the gateway refused, with its reason.
type refusedError struct {
	status int
	reason string
}

func (e *refusedError) Error() string { return fmt.Sprintf("refused: %d %s", e.status, e.reason) }

// byPolicy says whether the refusal is the policy's answer (403: no
// cluster may take the flow) rather than a failure; a 503 (every cluster
// that may take it is down) is an error.
func (e *refusedError) byPolicy() bool {
	return e.reason != "" && e.status == http.StatusForbidden
}

// served is who a CONNECT tunnel went to.
type served struct{ cluster, region string }

// dial opens a connection to the service from this client's cluster: to
// the import address, or a CONNECT through the gateway.
func (c *client) dial(ctx context.Context) (net.Conn, served, error) {
	var d net.Dialer
	if c.entry != "" {
		conn, err := d.DialContext(ctx, "tcp", c.entry)
		return conn, served{}, err
	}
	if c.gw.Connect == "" {
		return nil, served{}, fmt.Errorf("gateway %s of %s has neither a connect address nor an import for %s", c.gw.Name, c.cluster, c.t.To)
	}
	conn, err := d.DialContext(ctx, "tcp", c.gw.Connect)
	if err != nil {
		return nil, served{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(c.timeout))
	}
	req := "CONNECT " + c.host + " HTTP/1.1\r\nHost: " + c.host + "\r\n"
	for k, v := range c.t.Headers {
		req += k + ": " + v + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		conn.Close()
		return nil, served{}, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, served{}, fmt.Errorf("CONNECT %s: %w", c.host, err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, served{}, &refusedError{status: resp.StatusCode, reason: resp.Header.Get("X-Strait-Reason")}
	}
	_ = conn.SetDeadline(time.Time{})
	s := served{resp.Header.Get("X-Strait-Cluster"), resp.Header.Get("X-Strait-Region")}
	if br.Buffered() > 0 {
		return &bufConn{Conn: conn, r: br}, s, nil
	}
	return conn, s, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// do sends one request and says how it ended.
func (c *client) do(ctx context.Context) Sample {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s := Sample{From: c.cluster}
	var err error
	switch c.t.Protocol {
	case ProtocolTCP:
		err = c.doTCP(ctx, &s)
	case ProtocolGRPC:
		err = c.doGRPC(ctx, &s)
	default:
		err = c.doHTTP(ctx, &s)
	}
	var re *refusedError
	switch {
	case errors.As(err, &re) && re.byPolicy():
		s.Outcome, s.Err = Refused, re.Error()
	case err != nil:
		s.Outcome, s.Err = Failed, err.Error()
	}
	return s
}

func (c *client) doTCP(ctx context.Context, s *Sample) error {
	conn, sv, err := c.dial(ctx)
	if err != nil {
		return err
	}
	conn.Close()
	s.Cluster, s.Region, s.Reporter = sv.cluster, sv.region, "gateway"
	return nil
}

// reply is what a responder that names itself answers (the demo
// services do): JSON with the cluster and region that served.
type reply struct {
	Cluster string `json:"cluster"`
	Region  string `json:"region"`
}

func (c *client) doHTTP(ctx context.Context, s *Sample) error {
	path := c.t.Path
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.host+path, nil)
	if err != nil {
		return err
	}
	for k, v := range c.t.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var re *refusedError
		if errors.As(err, &re) {
			return re
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		if re := (&refusedError{status: resp.StatusCode, reason: resp.Header.Get("X-Strait-Reason")}); re.byPolicy() {
			return re
		}
		return fmt.Errorf("%s: %s", resp.Status, firstLine(body))
	}
	s.Cluster, s.Region, s.Reporter = resp.Header.Get("X-Strait-Cluster"), resp.Header.Get("X-Strait-Region"), "gateway"
	var r reply
	if json.Unmarshal(body, &r) == nil && r.Region != "" {
		s.Cluster, s.Region, s.Reporter = r.Cluster, r.Region, "responder"
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func (c *client) grpcConn() (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	conn, err := grpc.NewClient("passthrough:///"+c.host,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			conn, _, err := c.dial(ctx)
			return conn, err
		}))
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return conn, nil
}

func (c *client) doGRPC(ctx context.Context, s *Sample) error {
	conn, err := c.grpcConn()
	if err != nil {
		return err
	}
	for k, v := range c.t.Headers {
		ctx = metadata.AppendToOutgoingContext(ctx, strings.ToLower(k), v)
	}
	var hdr metadata.MD
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr), grpc.WaitForReady(false))
	if err != nil {
		if reason := hdr.Get("x-strait-reason"); len(reason) > 0 {
			return &refusedError{status: http.StatusForbidden, reason: reason[0]}
		}
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %s", resp.GetStatus())
	}
	if v := hdr.Get("x-strait-cluster"); len(v) > 0 {
		s.Cluster = v[0]
	}
	if v := hdr.Get("x-strait-region"); len(v) > 0 {
		s.Region = v[0]
	}
	s.Reporter = "gateway"
	return nil
}

func (c *client) close() {
	c.http.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
}

// driver sends one traffic entry at its rate between start and end,
// round robin over the clusters it comes from; each cluster sends
// through those of its gateways the drill has not taken down.
type driver struct {
	index    int
	t        *Traffic
	end      time.Duration        // when the traffic stops, from the drill's start
	clients  map[string][]*client // by cluster
	inflight chan struct{}
	rr       atomic.Uint64
}

func (d *driver) run(ctx context.Context, begin time.Time, rec *recorder, down func(cluster, gw string) bool, wg *sync.WaitGroup) {
	interval := time.Second / time.Duration(d.t.Rate)
	end := d.end
	next := d.t.Start
	timer := time.NewTimer(time.Until(begin.Add(next)))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Since(begin)
		for next <= now && next < end {
			n := d.rr.Add(1) - 1
			from := d.t.From[int(n)%len(d.t.From)]
			c := d.pick(from, n, down)
			start := next
			select {
			case d.inflight <- struct{}{}:
			default:
				rec.add(Sample{Traffic: d.index, From: from, Start: start, Outcome: Failed, Err: "drill client: too many requests in flight"})
				next += interval
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-d.inflight }()
				t0 := time.Now()
				s := c.do(ctx)
				if ctx.Err() != nil {
					return // the drill stopped under it: not a measurement
				}
				s.Traffic, s.Start, s.Latency = d.index, t0.Sub(begin), time.Since(t0)
				rec.add(s)
			}()
			next += interval
		}
		if next >= end {
			return
		}
		timer.Reset(time.Until(begin.Add(next)))
	}
}

func (d *driver) pick(from string, n uint64, down func(cluster, gw string) bool) *client {
	cs := d.clients[from]
	for i := range cs {
		c := cs[(int(n)+i)%len(cs)]
		if !down(from, c.gw.Name) {
			return c
		}
	}
	return cs[int(n)%len(cs)]
}
