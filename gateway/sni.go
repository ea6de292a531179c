package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Target names a service port anywhere in the federation.
type Target struct {
	Namespace string
	Name      string
	Port      int
}

func (t Target) String() string { return t.Namespace + "/" + t.Name + ":" + strconv.Itoa(t.Port) }

// ErrBadName is wrapped by every SNI and host-name parsing failure.
var ErrBadName = errors.New("bad service name")

const clustersetSuffix = ".svc.clusterset.local"

// SNI returns the server name a gateway sends to reach t through another
// gateway, in Istio's form: outbound_.<port>_._.<name>.<ns>.svc.clusterset.local.
func (t Target) SNI() string {
	return "outbound_." + strconv.Itoa(t.Port) + "_._." + t.Name + "." + t.Namespace + clustersetSuffix
}

// ParseSNI is the inverse of Target.SNI.
func ParseSNI(sni string) (Target, error) {
	rest, ok := strings.CutPrefix(sni, "outbound_.")
	if !ok {
		return Target{}, fmt.Errorf("%w: sni %q: want outbound_.<port>_._.<name>.<ns>%s", ErrBadName, sni, clustersetSuffix)
	}
	portStr, host, ok := strings.Cut(rest, "_._.")
	if !ok {
		return Target{}, fmt.Errorf("%w: sni %q: missing \"_._.\" after the port", ErrBadName, sni)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return Target{}, fmt.Errorf("%w: sni %q: %v", ErrBadName, sni, err)
	}
	t, err := parseHost(host)
	if err != nil {
		return Target{}, fmt.Errorf("%w: sni %q: %v", ErrBadName, sni, err)
	}
	t.Port = port
	return t, nil
}

// ParseAuthority parses a CONNECT authority such as
// ledger.demo.svc.clusterset.local:8080.
func ParseAuthority(authority string) (Target, error) {
	i := strings.LastIndexByte(authority, ':')
	if i < 0 {
		return Target{}, fmt.Errorf("%w: %q: missing :port", ErrBadName, authority)
	}
	port, err := parsePort(authority[i+1:])
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrBadName, authority, err)
	}
	t, err := parseHost(strings.TrimSuffix(strings.ToLower(authority[:i]), "."))
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrBadName, authority, err)
	}
	t.Port = port
	return t, nil
}

func parseHost(host string) (Target, error) {
	base, ok := strings.CutSuffix(host, clustersetSuffix)
	if !ok {
		return Target{}, fmt.Errorf("want <service>.<namespace>%s", clustersetSuffix)
	}
	name, ns, ok := strings.Cut(base, ".")
	if !ok || !isLabel(name) || !isLabel(ns) {
		return Target{}, fmt.Errorf("want <service>.<namespace>%s with DNS labels", clustersetSuffix)
	}
	return Target{Namespace: ns, Name: name}, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || s[0] == '0' || s[0] == '+' {
		return 0, fmt.Errorf("port %q not in 1-65535", s)
	}
	return p, nil
}

func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
