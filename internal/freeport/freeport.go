// Package freeport gives tests loopback ports for processes they start
// and configure by port number.
//
// A port is free on 127.0.0.1 when handed out, is never handed out twice
// by one process, and lies below the kernel's ephemeral range: a port
// from that range (what binding :0 gives) can be taken, between the test
// choosing it and the process binding it, as the local port of one of
// the many connections a test opens.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Get returns a free port on 127.0.0.1.
func Get(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(low-20000)
		if given[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		given[port] = true
		return port
	}
	t.Fatal("freeport: no free port below the ephemeral range")
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range, or
// 32768 when it cannot be read or leaves too little room below it.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 21000 {
		return 32768
	}
	return n
}
