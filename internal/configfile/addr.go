package configfile

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// HostPort splits a configured host:port address and checks the port, for
// Validate methods: the error says what was expected and what was found.
func HostPort(addr string) (host string, port int, err error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port, found %q", addr)
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q in %q not in 0-65535", ps, addr)
	}
	return host, port, nil
}

// Unspecified reports whether host listens on every interface (empty,
// 0.0.0.0 or ::), so that it cannot be advertised to others as it is.
func Unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// Loopback reports whether host listens on loopback only: localhost or a
// loopback address (127.0.0.0/8, ::1). An empty or unspecified host
// listens on every interface, and any other name may resolve anywhere.
func Loopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}
