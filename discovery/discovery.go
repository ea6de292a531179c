package discovery

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/straitmesh/strait/internal/configfile"
)

// Port is one port of a local service.
type Port struct {
	// Name is optional (e.g. "http").
	Name string `mapstructure:"name" json:"name,omitempty"`
	// Port is the service port other clusters address.
	Port int `mapstructure:"port" json:"port"`
	// TargetPort is the port endpoints listen on. Default: Port.
	TargetPort int `mapstructure:"targetPort" json:"targetPort,omitempty"`
	// Protocol is how the port speaks: "tcp" (default), "http"
	// (HTTP/1.1, and HTTP/2 with prior knowledge from clients), "http2"
	// (h2c) or "grpc". Gateways read each request of an HTTP port and
	// route it on its own; a tcp port's bytes cannot be read.
	Protocol string `mapstructure:"protocol" json:"protocol,omitempty"`
}

// Protocols lists the values of Port.Protocol.
const Protocols = "tcp, http, http2, grpc"

// ValidProtocol reports whether p is a value of Port.Protocol.
func ValidProtocol(p string) bool {
	switch p {
	case "tcp", "http", "http2", "grpc":
		return true
	}
	return false
}

// Service is a local service and its endpoints.
type Service struct {
	Namespace string            `mapstructure:"namespace" json:"namespace"`
	Name      string            `mapstructure:"name" json:"name"`
	Ports     []Port            `mapstructure:"ports" json:"ports"`
	Labels    map[string]string `mapstructure:"labels" json:"labels,omitempty"`
	// Endpoints are host addresses (IP or name) of the service's backends;
	// each serves every port on its TargetPort.
	Endpoints []string `mapstructure:"endpoints" json:"endpoints"`
	// Zones maps an endpoint to the zone it runs in, where the source
	// knows it (Kubernetes EndpointSlices). Not read from configuration.
	Zones map[string]string `mapstructure:"-" json:"zones,omitempty"`
}

// Key returns "namespace/name".
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// Target returns the endpoint dial addresses for service port port, or
// false when the service has no such port.
func (s Service) Target(port int) ([]string, bool) {
	for _, p := range s.Ports {
		if p.Port != port {
			continue
		}
		tp := p.TargetPort
		if tp == 0 {
			tp = p.Port
		}
		out := make([]string, len(s.Endpoints))
		for i, e := range s.Endpoints {
			out[i] = net.JoinHostPort(e, strconv.Itoa(tp))
		}
		return out, true
	}
	return nil, false
}

// Source provides the current local services.
type Source interface {
	// Services returns the current list; callers must not modify it.
	Services() []Service
	// Changes receives a value after each change. A nil channel means the
	// source never changes.
	Changes() <-chan struct{}
}

// ClusterPorts is how one other cluster of the federation declares the
// ports of a service, as the catalog has it.
type ClusterPorts struct {
	Cluster string
	Ports   []Port
}

// PortsObserver is a Source that wants to know how other clusters declare
// the ports of the services it exports, to report conflicts where their
// owners look (Kubernetes: the ServiceExport's Conflict condition). The
// gateway calls ObservePorts after each catalog change with every
// service it exports locally that other clusters export too, keyed
// "namespace/name"; services missing from remote have no peers.
type PortsObserver interface {
	ObservePorts(remote map[string][]ClusterPorts)
}

// Static is a Source with a fixed list.
type Static []Service

// Services implements Source.
func (s Static) Services() []Service { return s }

// Changes implements Source; a static list never changes.
func (s Static) Changes() <-chan struct{} { return nil }

// Validate checks a static list, naming every bad key under prefix
// (e.g. "services.").
func Validate(prefix string, services []Service) error {
	var errs []error
	seen := map[string]int{}
	for i, s := range services {
		key := func(f string) string { return fmt.Sprintf("%s%d.%s", prefix, i, f) }
		if s.Namespace == "" {
			errs = append(errs, configfile.Errorf(key("namespace"), "required value missing"))
		} else if !validName(s.Namespace) {
			errs = append(errs, configfile.Errorf(key("namespace"), "%q is not a DNS label (lower-case letters, digits, '-')", s.Namespace))
		}
		if s.Name == "" {
			errs = append(errs, configfile.Errorf(key("name"), "required value missing"))
		} else if !validName(s.Name) {
			errs = append(errs, configfile.Errorf(key("name"), "%q is not a DNS label (lower-case letters, digits, '-')", s.Name))
		}
		if j, dup := seen[s.Key()]; dup && s.Name != "" {
			errs = append(errs, configfile.Errorf(key("name"), "service %s already listed at %s%d", s.Key(), prefix, j))
		}
		seen[s.Key()] = i
		if len(s.Ports) == 0 {
			errs = append(errs, configfile.Errorf(key("ports"), "at least one port required"))
		}
		ports := map[int]bool{}
		for j, p := range s.Ports {
			pk := fmt.Sprintf("%s%d.ports.%d", prefix, i, j)
			if p.Port < 1 || p.Port > 65535 {
				errs = append(errs, configfile.Errorf(pk+".port", "%d out of range 1-65535", p.Port))
			}
			if p.TargetPort < 0 || p.TargetPort > 65535 {
				errs = append(errs, configfile.Errorf(pk+".targetPort", "%d out of range 1-65535", p.TargetPort))
			}
			if ports[p.Port] {
				errs = append(errs, configfile.Errorf(pk+".port", "port %d listed twice", p.Port))
			}
			ports[p.Port] = true
			if p.Protocol != "" && !ValidProtocol(p.Protocol) {
				errs = append(errs, configfile.Errorf(pk+".protocol", "want one of %s, found %q", Protocols, p.Protocol))
			}
		}
		for j, e := range s.Endpoints {
			if e == "" {
				errs = append(errs, configfile.Errorf(fmt.Sprintf("%s%d.endpoints.%d", prefix, i, j), "empty address"))
			}
		}
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	if len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
