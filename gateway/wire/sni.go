package wire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/straitmesh/strait/sovereignty"
)

// Target names a service port anywhere in the federation.
type Target struct {
	Namespace string
	Name      string
	Port      int
}

func (t Target) String() string { return t.Namespace + "/" + t.Name + ":" + strconv.Itoa(t.Port) }

// Authority returns the host:port clients name t by:
// <name>.<ns>.svc.clusterset.local:<port>.
func (t Target) Authority() string {
	return t.Name + "." + t.Namespace + clustersetSuffix + ":" + strconv.Itoa(t.Port)
}

// ErrBadName is wrapped by every SNI and host-name parsing failure.
var ErrBadName = errors.New("bad service name")

const (
	clustersetSuffix   = ".svc.clusterset.local"
	clusterLocalSuffix = ".svc.cluster.local"
)

// SNI returns the server name a gateway sends to reach t through another
// gateway, in Istio's form: outbound_.<port>_._.<name>.<ns>.svc.clusterset.local.
func (t Target) SNI() string {
	return "outbound_." + strconv.Itoa(t.Port) + "_._." + t.Name + "." + t.Namespace + clustersetSuffix
}

// ParseSNI is the inverse of Target.SNI: the server name one gateway
// sends another.
func ParseSNI(sni string) (Target, error) { return parseOutboundSNI(sni, clustersetSuffix) }

// ParseMeshSNI parses the server name a mesh workload sends to the
// passthrough port: Istio's outbound_.<port>_._.<name>.<ns>.svc.cluster.local,
// or the same under svc.clusterset.local. Upper-case ASCII letters are
// read as lower-case, as DNS does.
func ParseMeshSNI(sni string) (Target, error) {
	return parseOutboundSNI(asciiLower(sni), clusterLocalSuffix, clustersetSuffix)
}

func parseOutboundSNI(sni string, suffixes ...string) (Target, error) {
	rest, ok := strings.CutPrefix(sni, "outbound_.")
	if !ok {
		return Target{}, fmt.Errorf("%w: sni %q: want outbound_.<port>_._.<name>.<ns>%s", ErrBadName, sni, strings.Join(suffixes, " or "))
	}
	portStr, rest, ok := strings.Cut(rest, "_.")
	if !ok {
		return Target{}, fmt.Errorf("%w: sni %q: missing \"_._.\" after the port", ErrBadName, sni)
	}
	host, ok := strings.CutPrefix(rest, "_.")
	if !ok {
		if subset, _, found := strings.Cut(rest, "_."); found && subset != "" {
			return Target{}, fmt.Errorf("%w: sni %q: subset %q given; Strait routes to whole services (want outbound_.<port>_._.<host>)", ErrBadName, sni, subset)
		}
		return Target{}, fmt.Errorf("%w: sni %q: missing \"_._.\" after the port", ErrBadName, sni)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return Target{}, fmt.Errorf("%w: sni %q: %v", ErrBadName, sni, err)
	}
	t, err := parseHost(host, suffixes...)
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
	t, err := parseHost(strings.TrimSuffix(strings.ToLower(authority[:i]), "."), clustersetSuffix)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %q: %v", ErrBadName, authority, err)
	}
	t.Port = port
	return t, nil
}

// parseHost parses <service>.<namespace><suffix> for one of suffixes.
func parseHost(host string, suffixes ...string) (Target, error) {
	for _, suffix := range suffixes {
		base, ok := strings.CutSuffix(host, suffix)
		if !ok {
			continue
		}
		name, ns, ok := strings.Cut(base, ".")
		if !ok || !sovereignty.IsLabel(name) || !sovereignty.IsLabel(ns) {
			return Target{}, fmt.Errorf("want <service>.<namespace>%s with DNS labels", suffix)
		}
		return Target{Namespace: ns, Name: name}, nil
	}
	return Target{}, fmt.Errorf("want <service>.<namespace>%s", strings.Join(suffixes, " or <service>.<namespace>"))
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || s[0] == '0' || s[0] == '+' {
		return 0, fmt.Errorf("port %q not in 1-65535", s)
	}
	return p, nil
}

// asciiLower lower-cases ASCII letters only, so that no other character
// can turn into one.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
