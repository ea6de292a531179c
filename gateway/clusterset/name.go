package clusterset

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/straitmesh/strait/sovereignty"
)

// DefaultDomain is the domain of the Multi-Cluster Services API's names.
const DefaultDomain = "clusterset.local"

// Kind says what a name under the domain has the shape of.
type Kind int

const (
	// KindOther is a name under the domain of no known shape: it never
	// exists.
	KindOther Kind = iota
	// KindApex is the domain itself.
	KindApex
	// KindParent is svc.<domain> or <namespace>.svc.<domain>: it exists
	// (without records) when a service below it does.
	KindParent
	// KindService is <service>.<namespace>.svc.<domain>.
	KindService
	// KindPort is _<port>._<proto>.<service>.<namespace>.svc.<domain>, the
	// name of a service port's SRV records.
	KindPort
)

// Name is a query name under the domain, parsed.
type Name struct {
	Kind Kind
	// Namespace and Service are set for KindService and KindPort, and
	// Namespace for a <namespace>.svc.<domain> parent.
	Namespace, Service string
	// PortName and Proto are set for KindPort, without their underscores.
	PortName, Proto string
}

// Key is the service's namespace/name.
func (n Name) Key() string { return n.Namespace + "/" + n.Service }

// ParseName parses qname, a name in presentation format (as miekg/dns
// gives a question's name; the trailing dot may be missing), against
// domain (lower-case labels, no trailing dot). It reports false when
// qname is not the domain or below it. Letters are compared without
// regard to case; a label with escapes or characters other than letters,
// digits and '-' is never a service, namespace or port name.
func ParseName(qname, domain string) (Name, bool) {
	labels := dns.SplitDomainName(strings.ToLower(qname))
	dl := dns.SplitDomainName(domain)
	if len(dl) == 0 || len(labels) < len(dl) {
		return Name{}, false
	}
	cut := len(labels) - len(dl)
	for i, l := range dl {
		if labels[cut+i] != l {
			return Name{}, false
		}
	}
	rest := labels[:cut]
	n := len(rest)
	switch {
	case n == 0:
		return Name{Kind: KindApex}, true
	case rest[n-1] != "svc":
		return Name{Kind: KindOther}, true
	case n == 1:
		return Name{Kind: KindParent}, true
	case n == 2 && sovereignty.IsLabel(rest[0]):
		return Name{Kind: KindParent, Namespace: rest[0]}, true
	case n == 3 && sovereignty.IsLabel(rest[0]) && sovereignty.IsLabel(rest[1]):
		return Name{Kind: KindService, Service: rest[0], Namespace: rest[1]}, true
	case n == 5 && sovereignty.IsLabel(rest[2]) && sovereignty.IsLabel(rest[3]):
		port, okp := strings.CutPrefix(rest[0], "_")
		proto, okq := strings.CutPrefix(rest[1], "_")
		if okp && okq && sovereignty.IsLabel(port) && sovereignty.IsLabel(proto) {
			return Name{Kind: KindPort, PortName: port, Proto: proto, Service: rest[2], Namespace: rest[3]}, true
		}
	}
	return Name{Kind: KindOther}, true
}

// ServiceName is the fully qualified name of a service under domain.
func ServiceName(namespace, service, domain string) string {
	return service + "." + namespace + ".svc." + domain + "."
}

// NormalizeDomain returns domain in lower case without its trailing dot,
// or false when it is not one or more DNS labels.
func NormalizeDomain(domain string) (string, bool) {
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	if d == "" || len(d) > 200 {
		return "", false
	}
	for _, l := range strings.Split(d, ".") {
		if !sovereignty.IsLabel(l) {
			return "", false
		}
	}
	return d, true
}
