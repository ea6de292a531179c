package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/gateway/wire"
)

// Streams that carried a request are kept to carry the next request with
// the same facts to the same cluster: an HTTP/1.1 stream once its
// response has been read to the end (one request at a time), an HTTP/2
// connection on a stream for as many concurrent requests as its peer
// allows. The key holds everything the receiving gateway decided the
// stream on (target, facts, policy version among them), so a request on
// a kept stream is one the receiving gateway has already admitted; every
// request is still planned on its own first, and only goes on a kept
// stream to the cluster its plan put first.

// maxIdlePerKey bounds the HTTP/1.1 streams kept idle per key.
const maxIdlePerKey = 512

// idleTimeout closes streams kept idle this long.
const idleTimeout = 90 * time.Second

type poolKey struct {
	cluster, addr string
	target        wire.Target
	facts         string
	proto         string
}

// idleStream is an HTTP/1.1 stream between requests.
type idleStream struct {
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time
}

// keptH2 is an HTTP/2 connection on a stream.
type keptH2 struct {
	cc   *http.ClientConn
	conn net.Conn
}

type upstreamPool struct {
	mu     sync.Mutex
	idle   map[poolKey][]*idleStream
	h2     map[poolKey][]keptH2
	closed bool
	stop   chan struct{}
}

func newUpstreamPool() *upstreamPool {
	p := &upstreamPool{idle: map[poolKey][]*idleStream{}, h2: map[poolKey][]keptH2{}, stop: make(chan struct{})}
	go p.sweep(idleTimeout / 3)
	return p
}

func keyFor(c route.Candidate, a *attempt, proto string) poolKey {
	return poolKey{cluster: c.Cluster, addr: c.Addr, target: a.t, facts: string(a.facts), proto: proto}
}

// sweep closes, every interval, the streams kept idle longer than
// idleTimeout, and forgets HTTP/2 connections that ended.
func (p *upstreamPool) sweep(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		var old []*idleStream
		p.mu.Lock()
		for k, list := range p.idle {
			keep := list[:0]
			for _, s := range list {
				if time.Since(s.since) >= idleTimeout {
					old = append(old, s)
				} else {
					keep = append(keep, s)
				}
			}
			if len(keep) == 0 {
				delete(p.idle, k)
			} else {
				p.idle[k] = keep
			}
		}
		for k, list := range p.h2 {
			keep := list[:0]
			for _, h := range list {
				if h.cc.Err() == nil {
					keep = append(keep, h)
				}
			}
			if len(keep) == 0 {
				delete(p.h2, k)
			} else {
				p.h2[k] = keep
			}
		}
		p.mu.Unlock()
		for _, s := range old {
			s.conn.Close()
		}
	}
}

// putH1 keeps an HTTP/1.1 stream whose exchange ended cleanly.
func (p *upstreamPool) putH1(k poolKey, conn net.Conn, br *bufio.Reader, bw *bufio.Writer) {
	if br.Buffered() > 0 {
		conn.Close()
		return
	}
	if tc, ok := conn.(*trackedConn); ok {
		tc.pause() // an idle stream is no load on its cluster
	}
	p.mu.Lock()
	if p.closed || len(p.idle[k]) >= maxIdlePerKey {
		p.mu.Unlock()
		conn.Close()
		return
	}
	p.idle[k] = append(p.idle[k], &idleStream{conn: conn, br: br, bw: bw, since: time.Now()})
	p.mu.Unlock()
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// takeH1 returns a kept HTTP/1.1 stream for k that is still open, or nil.
// A read with a deadline already passed tells: a stream its peer closed
// (or that holds unsolicited bytes) answers at once, an open quiet one
// times out. (A closed TCP connection to a local endpoint may still look
// open; the exchange then finds it closed, errKeptClosed.)
func (p *upstreamPool) takeH1(k poolKey) (net.Conn, *bufio.Reader, *bufio.Writer) {
	for {
		p.mu.Lock()
		list := p.idle[k]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil, nil, nil
		}
		s := list[len(list)-1]
		p.idle[k] = list[:len(list)-1]
		if len(p.idle[k]) == 0 {
			delete(p.idle, k)
		}
		p.mu.Unlock()
		if time.Since(s.since) < idleTimeout && fresh(s.conn) {
			s.conn.SetReadDeadline(time.Unix(1, 0))
			_, err := s.br.Peek(1)
			s.conn.SetReadDeadline(time.Time{})
			if isTimeout(err) && s.br.Buffered() == 0 {
				if tc, ok := s.conn.(*trackedConn); ok {
					tc.resume()
				}
				return s.conn, s.br, s.bw
			}
		}
		s.conn.Close()
	}
}

// takeH2 returns a kept HTTP/2 connection for k with a stream reserved
// for one request, or nil. A connection on a tunnel that has not heard
// from its peer lately is passed over, not closed (other requests may be
// on it): the tunnel may be cut. One that failed is forgotten.
func (p *upstreamPool) takeH2(k poolKey) *http.ClientConn {
	var stale []keptH2
	defer func() {
		for _, h := range stale {
			h.cc.Close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.h2[k]
	for i := 0; i < len(list); {
		h := list[i]
		if h.cc.Err() != nil {
			stale = append(stale, h)
			list = append(list[:i:i], list[i+1:]...)
			continue
		}
		if fresh(h.conn) && h.cc.Reserve() == nil {
			p.h2[k] = list
			return h.cc
		}
		i++
	}
	if len(list) == 0 {
		delete(p.h2, k)
	} else {
		p.h2[k] = list
	}
	return nil
}

// fresh reports whether a kept stream's tunnel heard from its peer
// lately; a stream of its own (or to a local endpoint) always is.
func fresh(c net.Conn) bool {
	if s, ok := unwrap(c).(*tunnel.Stream); ok {
		return s.Fresh()
	}
	return true
}

// putH2 keeps an HTTP/2 connection on the stream conn for k.
func (p *upstreamPool) putH2(k poolKey, cc *http.ClientConn, conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		cc.Close()
		return
	}
	p.h2[k] = append(p.h2[k], keptH2{cc: cc, conn: conn})
}

// close closes every kept stream.
func (p *upstreamPool) close() {
	p.mu.Lock()
	idle, h2 := p.idle, p.h2
	p.idle, p.h2 = map[poolKey][]*idleStream{}, map[poolKey][]keptH2{}
	if !p.closed {
		close(p.stop)
	}
	p.closed = true
	p.mu.Unlock()
	for _, list := range idle {
		for _, s := range list {
			s.conn.Close()
		}
	}
	for _, list := range h2 {
		for _, h := range list {
			h.cc.Close()
		}
	}
}

// h2Upstream speaks h2c with a service on one stream: the stream in the
// context (upstreamConnKey) is its connection.
var h2Upstream = func() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p, DisableCompression: true, IdleConnTimeout: idleTimeout,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if c, ok := ctx.Value(upstreamConnKey{}).(net.Conn); ok {
				return c, nil
			}
			return nil, errors.New("no stream to speak HTTP/2 on")
		}}
}()

type upstreamConnKey struct{}

// newH2Conn starts HTTP/2 on the stream up.
func newH2Conn(up net.Conn, authority string) (*http.ClientConn, error) {
	ctx := context.WithValue(context.Background(), upstreamConnKey{}, up)
	return h2Upstream.NewClientConn(ctx, "http", authority)
}

// bodyDone calls done once the body was read to its end (clean true) or
// closed before (clean false).
type bodyDone struct {
	io.ReadCloser
	once sync.Once
	eof  bool
	done func(clean bool)
}

func (b *bodyDone) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *bodyDone) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.done(b.eof && err == nil) })
	return err
}
