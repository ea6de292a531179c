//go:build bench

package lab_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/benchreport"
	"github.com/straitmesh/strait/lab"
)

// Helpers shared by the lab's benchmarks (make bench-dataplane). Every
// server runs in the test process on 127.0.0.1; every load loop is bounded
// in count and in time.

func median(vs []float64) float64 { return benchreport.Percentile(vs, 0.5) }

// sinkServer reads everything a client sends, then answers with one byte.
// A client that sends nothing gets the byte at once (a ping).
func sinkServer(t *testing.T) string {
	return serveTCP(t, func(c net.Conn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n, _ := strconv.ParseInt(string(hdr[:]), 16, 64)
		io.CopyN(io.Discard, c, n)
		c.Write([]byte{1})
	})
}

// transfer sends n bytes to a sinkServer at addr and waits for the answer.
func transfer(addr string, n int64) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c, "%08x", n); err != nil {
		return fmt.Errorf("send length: %w", err)
	}
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < n; {
		k := min(int64(len(buf)), n-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			return fmt.Errorf("send after %d bytes: %w", sent, err)
		}
		sent += k
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	return nil
}

// msgSize is the size of every request and response of the
// request/response benchmarks.
const msgSize = 64

// echoServer answers each msgSize-byte request with a msgSize-byte
// response until the client closes.
func echoServer(t *testing.T) string {
	return serveTCP(t, func(c net.Conn) {
		buf := make([]byte, msgSize)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// nameServer reads one msgSize-byte request, answers with name and closes,
// so that a client knows which cluster served it.
func nameServer(t *testing.T, name string) string {
	return serveTCP(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, msgSize)); err != nil {
			return
		}
		io.WriteString(c, name)
	})
}

// firstByte connects to addr, sends one request to an echoServer and
// returns the time from since until the first response byte. It reads the
// rest of the response before it closes.
func firstByte(addr string, since time.Time, timeout time.Duration) (time.Duration, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, msgSize)
	if _, err := c.Write(buf); err != nil {
		return 0, fmt.Errorf("send request: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return 0, fmt.Errorf("read first response byte: %w", err)
	}
	took := time.Since(since)
	if _, err := io.ReadFull(c, buf[1:]); err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	return took, nil
}

// benchPort is the service port of every benchmark service.
const benchPort = 9000

// benchService is the service bench/<name>, port benchPort, served at addr.
func benchService(name, addr string) discovery.Service {
	return serviceAt("bench/"+name, "", benchPort, addr, nil)
}

// benchImport gives bench/<name> a local port on a gateway.
func benchImport(name string) gateway.Import {
	return gateway.Import{Service: "bench/" + name, Port: benchPort, Listen: "127.0.0.1:0"}
}

// importAddr is the address of cluster's local port for bench/<name>.
func importAddr(t *testing.T, l *lab.Lab, cluster, name string) string {
	t.Helper()
	key := "bench/" + name + ":" + strconv.Itoa(benchPort)
	addr := l.Gateway(cluster).ImportAddrs()[key]
	if addr == "" {
		t.Fatalf("cluster %s has no import %s", cluster, key)
	}
	return addr
}

// startBenchLab starts a lab that the test closes when it ends.
func startBenchLab(t *testing.T, spec lab.Spec) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := lab.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// requestResponse runs conns persistent connections to an echoServer at
// addr, rate requests a second in all, for d. The schedule is open-loop:
// request i of a connection is sent at its scheduled time whether or not
// earlier responses have come back, and each latency is measured from that
// scheduled time, so a stall counts against every request it delays
// (no coordinated omission). It returns the latencies in microseconds.
func requestResponse(addr string, conns int, rate float64, d time.Duration) ([]float64, error) {
	perConn := rate / float64(conns)
	interval := time.Duration(float64(time.Second) / perConn)
	n := int(perConn * d.Seconds())
	cs := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	buf := make([]byte, msgSize)
	for range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		cs = append(cs, c)
		c.SetDeadline(time.Now().Add(d + 30*time.Second))
		for range 20 { // warm up: buffers, the tunnel, the scheduler
			if _, err := c.Write(buf); err != nil {
				return nil, fmt.Errorf("warm-up request: %w", err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				return nil, fmt.Errorf("warm-up response: %w", err)
			}
		}
	}
	start := time.Now().Add(20 * time.Millisecond)
	lat := make([][]float64, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for k, c := range cs {
		// Connections are staggered so that the requests of all of them
		// are evenly spaced.
		first := start.Add(time.Duration(k) * interval / time.Duration(conns))
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[k], errs[k] = scheduledRequests(c, first, interval, n)
		}()
	}
	wg.Wait()
	var all []float64
	for k := range cs {
		if errs[k] != nil {
			return nil, fmt.Errorf("connection %d: %w", k, errs[k])
		}
		all = append(all, lat[k]...)
	}
	return all, nil
}

// scheduledRequests sends n requests on c, request i at first+i*interval,
// and reads the responses as they come; latencies in microseconds.
func scheduledRequests(c net.Conn, first time.Time, interval time.Duration, n int) ([]float64, error) {
	lat := make([]float64, n)
	read := make(chan error, 1)
	go func() {
		resp := make([]byte, msgSize)
		for i := range n {
			if _, err := io.ReadFull(c, resp); err != nil {
				read <- fmt.Errorf("response %d of %d: %w", i, n, err)
				return
			}
			lat[i] = float64(time.Since(first.Add(time.Duration(i)*interval)).Nanoseconds()) / 1e3
		}
		read <- nil
	}()
	req := make([]byte, msgSize)
	for i := range n {
		time.Sleep(time.Until(first.Add(time.Duration(i) * interval)))
		if _, err := c.Write(req); err != nil {
			c.Close()
			<-read
			return nil, fmt.Errorf("request %d of %d: %w", i, n, err)
		}
	}
	if err := <-read; err != nil {
		return nil, err
	}
	return lat, nil
}

// serialConnections opens n connections to an echoServer at addr one
// after the other (closed loop: each starts when the one before ended)
// and returns the time from each one's dial to its first response byte,
// in microseconds: what a path costs a new connection when nothing else
// runs on it.
func serialConnections(addr string, n int) ([]float64, error) {
	lat := make([]float64, 0, n)
	for i := range n {
		took, err := firstByte(addr, time.Now(), 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connection %d of %d: %w", i+1, n, err)
		}
		lat = append(lat, float64(took.Nanoseconds())/1e3)
	}
	return lat, nil
}

// cpuTime is the CPU time (user and system, every thread) the processes
// pids have used so far, from /proc/<pid>/stat.
func cpuTime(pids ...int) (time.Duration, error) {
	const userHZ = 100 // the unit of /proc's clock ticks on Linux
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
		}
		// The fields after the command name, which is in parentheses and
		// may hold spaces: state is the first, utime the 12th, stime the 13th.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return 0, fmt.Errorf("cpu time of process %d: /proc/%d/stat has %d fields after the name", pid, pid, len(f))
		}
		for _, v := range f[11:13] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
			}
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// newConnections opens a new connection to an echoServer at addr for every
// request, rate a second for d, on an open-loop schedule: connect, send,
// first response byte (the latency, from the scheduled time, in
// microseconds), read the rest, close. It also returns how many failed and
// the first error.
func newConnections(addr string, rate float64, d time.Duration) (lat []float64, failed int, firstErr error) {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(rate * d.Seconds())
	lats := make([]float64, n)
	errs := make([]error, n)
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, err := firstByte(addr, at, 10*time.Second)
			lats[i], errs[i] = float64(took.Nanoseconds())/1e3, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		lat = append(lat, lats[i])
	}
	return lat, failed, firstErr
}
