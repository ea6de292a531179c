package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/straitmesh/strait/federation"
)

// NoRouteError says why a connection to a target could not be made. It
// lists every candidate tried and why it failed.
type NoRouteError struct {
	Target Target
	// Known is false when no cluster, reachable or not, exports the service.
	Known   bool
	Reasons []string
}

func (e *NoRouteError) Error() string {
	if !e.Known {
		return fmt.Sprintf("no cluster exports %s", e.Target)
	}
	if len(e.Reasons) == 0 {
		return fmt.Sprintf("no reachable cluster has a healthy endpoint of %s", e.Target)
	}
	return fmt.Sprintf("no candidate for %s answered: %s", e.Target, strings.Join(e.Reasons, "; "))
}

// candidate is one place a connection to a target can go.
type candidate struct {
	cluster string
	region  string
	local   bool   // an endpoint in our own cluster, dialled directly
	addr    string // remote gateway data address
}

// candidates orders the places that serve t: the local cluster first, then
// remote clusters by locality (same zone, same region, the rest), each
// group by cluster name.
func (g *Gateway) candidates(t Target) (out []candidate, known bool) {
	if svc, ok := g.local.Load().byKey[t.Namespace+"/"+t.Name]; ok {
		known = true
		if _, ok := svc.Target(t.Port); ok {
			out = append(out, candidate{cluster: g.cfg.Cluster, region: g.cfg.Region, local: true})
		}
	}
	snap := g.catalog.Snapshot()
	known = known || snap.Known(t.Namespace, t.Name)
	remote := snap.Exporters(t.Namespace, t.Name, t.Port)
	sort.SliceStable(remote, func(i, j int) bool { return g.rank(remote[i]) < g.rank(remote[j]) })
	for _, c := range remote {
		if c.Node == snap.Local || c.Cluster == g.cfg.Cluster {
			continue // our own cluster is served locally
		}
		out = append(out, candidate{cluster: c.Cluster, region: c.Region, addr: c.Gateway})
	}
	return out, known
}

func (g *Gateway) rank(c *federation.ClusterView) int {
	switch {
	case g.cfg.Zone != "" && c.Zone == g.cfg.Zone:
		return 0
	case c.Region == g.cfg.Region:
		return 1
	default:
		return 2
	}
}

// route is where an outbound connection went.
type route struct {
	cluster string
	region  string
}

// connectTarget opens a connection that carries bytes to t, trying every
// candidate in order within the budget. Nothing has been sent upstream
// when it moves to the next candidate, so retrying is always safe.
func (g *Gateway) connectTarget(ctx context.Context, t Target) (net.Conn, route, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Budget)
	defer cancel()
	cands, known := g.candidates(t)
	nre := &NoRouteError{Target: t, Known: known}
	for i, c := range cands {
		if i > 0 {
			g.metrics.failovers.WithLabelValues(t.String()).Inc()
		}
		conn, err := g.dialCandidate(ctx, c, t)
		if err == nil {
			return conn, route{cluster: c.cluster, region: c.region}, nil
		}
		g.metrics.dialFailures.WithLabelValues(t.String(), c.cluster).Inc()
		nre.Reasons = append(nre.Reasons, fmt.Sprintf("%s: %v", c.cluster, err))
		if ctx.Err() != nil {
			nre.Reasons = append(nre.Reasons, "connect budget exhausted")
			break
		}
	}
	if len(cands) == 0 && known {
		for _, c := range g.catalog.Snapshot().Clusters {
			if !c.Reachable && serves(c, t) {
				nre.Reasons = append(nre.Reasons, fmt.Sprintf("%s: gateway %s", c.Cluster, c.State))
			}
		}
	}
	return nil, route{}, nre
}

func serves(c *federation.ClusterView, t Target) bool {
	for _, s := range c.Services {
		if s.Namespace == t.Namespace && s.Name == t.Name && s.HasPort(t.Port) {
			return true
		}
	}
	return false
}

func (g *Gateway) dialCandidate(ctx context.Context, c candidate, t Target) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeouts.Connect)
	defer cancel()
	if c.local {
		local := g.local.Load()
		addrs, _ := local.endpoints(local.byKey[t.Namespace+"/"+t.Name], t.Port)
		return g.dialEndpoints(ctx, addrs)
	}
	start := time.Now()
	raw, err := g.dial(ctx, c.addr)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", c.addr, err)
	}
	tc := tls.Client(raw, g.id.ClientConfig(t.SNI()))
	if dl, ok := ctx.Deadline(); ok {
		tc.SetDeadline(dl)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("mTLS handshake with gateway %s: %w", c.addr, err)
	}
	if err := readStatus(tc); err != nil {
		tc.Close()
		return nil, fmt.Errorf("gateway %s: %w", c.addr, err)
	}
	tc.SetDeadline(time.Time{})
	g.metrics.connectSeconds.WithLabelValues(c.cluster).Observe(time.Since(start).Seconds())
	return tc, nil
}

// dialEndpoints dials local endpoints in order until one answers.
func (g *Gateway) dialEndpoints(ctx context.Context, addrs []string) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no local endpoints")
	}
	var d net.Dialer
	var errs []string
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err.Error())
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("no endpoint answered: %s", strings.Join(errs, "; "))
}

// The inbound gateway answers every accepted stream with one status line
// before any payload: "OK\n", or "ERR <reason>\n" and close. It lets the
// outbound side fail over before it has sent a byte.
const maxStatusLine = 512

func writeStatus(w io.Writer, err error) error {
	line := "OK\n"
	if err != nil {
		line = "ERR " + strings.ReplaceAll(err.Error(), "\n", " ")
		if len(line) > maxStatusLine-1 {
			line = line[:maxStatusLine-1]
		}
		line += "\n"
	}
	_, werr := io.WriteString(w, line)
	return werr
}

// readStatus reads the status line one byte at a time so that no payload
// byte sent right after it is consumed.
func readStatus(r io.Reader) error {
	var buf [maxStatusLine]byte
	for n := 0; n < len(buf); n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return errors.New("closed the stream before answering")
			}
			return fmt.Errorf("read answer: %w", err)
		}
		if buf[n] == '\n' {
			line := string(buf[:n])
			if line == "OK" {
				return nil
			}
			if reason, ok := strings.CutPrefix(line, "ERR "); ok {
				return errors.New(reason)
			}
			return fmt.Errorf("unexpected answer %q", line)
		}
	}
	return errors.New("answer longer than 512 bytes")
}
