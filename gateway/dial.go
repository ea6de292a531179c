package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
)

// localEjected reports whether every local endpoint of t is ejected.
func (g *Gateway) localEjected(t wire.Target) bool {
	svc, ok := g.local.Load().byKey[t.Namespace+"/"+t.Name]
	if !ok {
		return false
	}
	addrs, _ := svc.Target(t.Port)
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !g.sel.Out.IsEjected(route.EndpointKey(a)) {
			return false
		}
	}
	return true
}

// dialLocal dials the local endpoints addrs of t, in the selector's order,
// until one answers. The connection it returns releases its stream count
// when closed.
func (g *Gateway) dialLocal(ctx context.Context, t wire.Target, addrs []string) (net.Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("no local endpoints")
	}
	var d net.Dialer
	var errs []string
	svc := t.String()
	for _, a := range g.sel.OrderEndpoints(addrs, g.local.Load().down) {
		if ctx.Err() != nil {
			break
		}
		acquire := func() func() { return g.sel.Acquire(route.FlightKey{Addr: a}, g.cfg.Cluster) }
		release := acquire()
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			g.sel.Out.Success(route.EndpointKey(a))
			return trackConn(c, release, acquire), nil
		}
		release()
		if !errors.Is(ctx.Err(), context.Canceled) {
			g.sel.Out.Failure(route.EndpointKey(a), svc, g.cfg.Cluster, true)
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no endpoint dialled: %w", ctx.Err())
	}
	return nil, fmt.Errorf("no endpoint answered: %s", strings.Join(errs, "; "))
}

// trackedConn counts as a stream in flight (route.Selector.Acquire)
// until it is closed, or while it waits between requests unpaused.
type trackedConn struct {
	net.Conn
	mu      sync.Mutex
	release func()        // nil while not counted
	acquire func() func() // counts it again; nil: it cannot be
}

func trackConn(c net.Conn, release func(), acquire func() func()) net.Conn {
	return &trackedConn{Conn: c, release: release, acquire: acquire}
}

// pause stops counting the connection (it waits, kept, for a request).
func (c *trackedConn) pause() {
	c.mu.Lock()
	r := c.release
	c.release = nil
	c.mu.Unlock()
	if r != nil {
		r()
	}
}

// resume counts a paused connection again.
func (c *trackedConn) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.release == nil && c.acquire != nil {
		c.release = c.acquire()
	}
}

// unwrapConn is the connection beneath, for the zero-copy path of splice.
func (c *trackedConn) unwrapConn() net.Conn { return c.Conn }

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.pause()
	return err
}

// CloseWrite half-closes the connection when the one beneath can.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom and WriteTo keep the zero-copy paths of the connection beneath
// for splice.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *trackedConn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, struct{ io.Reader }{c.Conn})
}
