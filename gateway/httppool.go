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

// idleStream is an HTTP/1.1 stream between requests. A goroutine reads
// from it while it waits: the peer closing it, or sending anything at all
// before a request, ends its use.
type idleStream struct {
	conn  net.Conn
	br    *bufio.Reader
	since time.Time
	done  chan error // the watcher's read: nil never, a deadline error when taken
}

type upstreamPool struct {
	mu     sync.Mutex
	idle   map[poolKey][]*idleStream
	h2     map[poolKey][]*http.ClientConn
	closed bool
}

func newUpstreamPool() *upstreamPool {
	return &upstreamPool{idle: map[poolKey][]*idleStream{}, h2: map[poolKey][]*http.ClientConn{}}
}

func keyFor(c route.Candidate, a *attempt, proto string) poolKey {
	return poolKey{cluster: c.Cluster, addr: c.Addr, target: a.t, facts: string(a.facts), proto: proto}
}

// putH1 keeps an HTTP/1.1 stream whose exchange ended cleanly.
func (p *upstreamPool) putH1(k poolKey, conn net.Conn, br *bufio.Reader) {
	if br.Buffered() > 0 {
		conn.Close()
		return
	}
	if tc, ok := conn.(*trackedConn); ok {
		tc.pause() // an idle stream is no load on its cluster
	}
	s := &idleStream{conn: conn, br: br, since: time.Now(), done: make(chan error, 1)}
	// The watcher's deadline is set before anyone can take the stream,
	// whose taker cuts it short.
	conn.SetReadDeadline(s.since.Add(idleTimeout))
	p.mu.Lock()
	if p.closed || len(p.idle[k]) >= maxIdlePerKey {
		p.mu.Unlock()
		conn.Close()
		return
	}
	p.idle[k] = append(p.idle[k], s)
	p.mu.Unlock()
	go func() {
		_, err := br.Peek(1)
		if err == nil {
			err = errors.New("unsolicited bytes on an idle stream")
		}
		s.done <- err
		if !isTimeout(err) || time.Since(s.since) >= idleTimeout {
			// Dead, or idle too long: whoever takes it finds it gone.
			p.drop(k, s)
		}
	}()
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// drop removes s from the pool, if it is still there, and closes it.
func (p *upstreamPool) drop(k poolKey, s *idleStream) {
	p.mu.Lock()
	list := p.idle[k]
	for i, x := range list {
		if x == s {
			p.idle[k] = append(list[:i:i], list[i+1:]...)
			if len(p.idle[k]) == 0 {
				delete(p.idle, k)
			}
			break
		}
	}
	p.mu.Unlock()
	s.conn.Close()
}

// takeH1 returns a kept HTTP/1.1 stream for k that is still open, or nil.
func (p *upstreamPool) takeH1(k poolKey) (net.Conn, *bufio.Reader) {
	for {
		p.mu.Lock()
		list := p.idle[k]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil, nil
		}
		s := list[len(list)-1]
		p.idle[k] = list[:len(list)-1]
		if len(p.idle[k]) == 0 {
			delete(p.idle, k)
		}
		p.mu.Unlock()
		// Stop the watcher: a read cut short by the deadline means the
		// stream is quiet and open.
		s.conn.SetReadDeadline(time.Unix(1, 0))
		err := <-s.done
		if isTimeout(err) && s.br.Buffered() == 0 && time.Since(s.since) < idleTimeout {
			s.conn.SetReadDeadline(time.Time{})
			if tc, ok := s.conn.(*trackedConn); ok {
				tc.resume()
			}
			return s.conn, s.br
		}
		s.conn.Close()
	}
}

// takeH2 returns a kept HTTP/2 connection for k with a stream reserved
// for one request, or nil.
func (p *upstreamPool) takeH2(k poolKey) *http.ClientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.h2[k]
	for i := 0; i < len(list); {
		cc := list[i]
		if cc.Err() != nil {
			list = append(list[:i:i], list[i+1:]...)
			continue
		}
		if cc.Reserve() == nil {
			p.h2[k] = list
			return cc
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

// putH2 keeps a new HTTP/2 connection for k.
func (p *upstreamPool) putH2(k poolKey, cc *http.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		cc.Close()
		return
	}
	p.h2[k] = append(p.h2[k], cc)
}

// close closes every kept stream.
func (p *upstreamPool) close() {
	p.mu.Lock()
	idle, h2 := p.idle, p.h2
	p.idle, p.h2, p.closed = map[poolKey][]*idleStream{}, map[poolKey][]*http.ClientConn{}, true
	p.mu.Unlock()
	for _, list := range idle {
		for _, s := range list {
			s.conn.Close()
		}
	}
	for _, list := range h2 {
		for _, cc := range list {
			cc.Close()
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
