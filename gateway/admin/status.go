package admin

import (
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/sovereignty"
)

// Status is the document served on /v1/status and printed by `strait status`.
type Status struct {
	Node      string          `json:"node"`
	Cluster   string          `json:"cluster"`
	Region    string          `json:"region"`
	Zone      string          `json:"zone,omitempty"`
	Cloud     string          `json:"cloud,omitempty"`
	Version   string          `json:"version,omitempty"`
	Ready     bool            `json:"ready"`
	StartedAt time.Time       `json:"startedAt"`
	Addresses Addresses       `json:"addresses"`
	Imports   []ImportStatus  `json:"imports"`
	Members   []MemberStatus  `json:"members"`
	Clusters  []ClusterStatus `json:"clusters"`
	// State is the routing state; absent when it is not enabled.
	State *StateStatus `json:"state,omitempty"`
	// Tunnels are the pooled tunnels to other gateways.
	Tunnels []TunnelStatus `json:"tunnels"`
	// Certificate is the gateway's own certificate and where it comes from.
	Certificate *CertificateStatus `json:"certificate,omitempty"`
	// Trust is what peers are verified by.
	Trust *TrustStatus `json:"trust,omitempty"`
	// Warnings are conditions that do not stop routing (a stale state).
	Warnings []string `json:"warnings,omitempty"`
	// Ejected lists the local endpoints and remote gateways that passive
	// outlier detection ejected: tried only after every other candidate.
	Ejected []route.EjectedStatus `json:"ejected,omitempty"`
	// DNS is the server answering the imports' names; absent without
	// dns.listen.
	DNS *DNSStatus `json:"dns,omitempty"`
}

// DNSStatus is the DNS server that answers <service>.<namespace>.svc.<domain>.
type DNSStatus struct {
	Listen string `json:"listen"`
	Domain string `json:"domain"`
	// State is serving, or stopped once the gateway shuts down.
	State string `json:"state"`
	// Names are the names answered, one per imported service with an
	// address.
	Names []DNSName `json:"names"`
}

// DNSName is one name the DNS server answers.
type DNSName struct {
	Name      string   `json:"name"`
	Service   string   `json:"service"`
	Addresses []string `json:"addresses"`
	Ports     []int    `json:"ports"`
}

// TunnelStatus is one outbound tunnel, or one peer that only takes a
// connection per stream.
type TunnelStatus struct {
	Peer    string  `json:"peer"`
	Addr    string  `json:"addr"`
	Streams int64   `json:"streams"`
	RTTMs   float64 `json:"rttMs"`
	// State is open, draining (the peer is shutting down: no new streams),
	// per-stream (the peer does not offer tunnels) or down (the peer did
	// not answer: tried last, probed until it does).
	State string `json:"state"`
}

// Addresses are where the gateway listens.
type Addresses struct {
	Data      string `json:"data"`
	Advertise string `json:"advertise"`
	Gossip    string `json:"gossip"`
	Admin     string `json:"admin"`
	// Probes serves /healthz, /readyz and /metrics only (listen.probes).
	Probes  string `json:"probes,omitempty"`
	Connect string `json:"connect,omitempty"`
	Control string `json:"control,omitempty"`
	// Passthrough is the TLS passthrough port for local workloads.
	Passthrough string `json:"passthrough,omitempty"`
}

// ImportStatus is one per-import local port.
type ImportStatus struct {
	Service string `json:"service"`
	Port    int    `json:"port"`
	Listen  string `json:"listen"`
}

// MemberStatus is one gateway in the gossip pool.
type MemberStatus struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	Region  string `json:"region"`
	Zone    string `json:"zone,omitempty"`
	Gateway string `json:"gateway"`
	Control string `json:"control,omitempty"`
	State   string `json:"state"`
}

// ClusterStatus is one cluster and what it exports.
type ClusterStatus struct {
	Cluster   string          `json:"cluster"`
	Region    string          `json:"region"`
	Zone      string          `json:"zone,omitempty"`
	Cloud     string          `json:"cloud,omitempty"`
	Reachable bool            `json:"reachable"`
	Services  []ServiceStatus `json:"services"`
}

// ServiceStatus is one exported service of a cluster.
type ServiceStatus struct {
	Service string            `json:"service"`
	Ports   []int             `json:"ports"`
	Labels  map[string]string `json:"labels,omitempty"`
	Healthy int               `json:"healthy"`
	Total   int               `json:"total"`
}

// ResidencyStatus is the document served on /v1/residency.
type ResidencyStatus struct {
	Policy   sovereignty.PolicyInfo `json:"policy"`
	InForce  bool                   `json:"inForce"` // false: no policy accepted yet, every flow is refused
	Default  string                 `json:"default,omitempty"`
	Regions  []string               `json:"regions"`
	Groups   map[string][]string    `json:"groups"`
	Classes  []ResidencyClass       `json:"classes"`
	Headers  []string               `json:"headers"` // the headers the policy classifies by
	Rejected string                 `json:"lastRejected,omitempty"`
}

// ResidencyClass is one class of the policy in force.
type ResidencyClass struct {
	Name      string   `json:"name"`
	Allowed   []string `json:"allowed"`
	AllowedAs []string `json:"allowedAs"`
	Catalog   string   `json:"catalog"`
	Rule      string   `json:"rule"`
	Matchers  []string `json:"matchers"`
}

// StateStatus is the routing-state part of Status.
type StateStatus struct {
	state.Health
	// Policies lists residency policies with the index of their version.
	Policies []PolicyStatus `json:"policies"`
}

// PolicyStatus is one residency policy the gateway holds.
type PolicyStatus struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
}

// CertificateStatus is the gateway's own certificate.
type CertificateStatus struct {
	// Source is files, ca or acme; empty when the certificate was handed
	// to the gateway (tests, strait dev's in-process gateways).
	Source      string    `json:"source,omitempty"`
	Identity    string    `json:"identity"`
	Serial      string    `json:"serial"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	NextRenewal time.Time `json:"nextRenewal,omitzero"`
	Renewals    int       `json:"renewals"`
	Failures    int       `json:"failures"`
	LastError   string    `json:"lastError,omitempty"`
}

// TrustStatus is the trust a gateway verifies peers by.
type TrustStatus struct {
	Domains        []TrustDomainStatus `json:"domains"`
	RevokedSerials int                 `json:"revokedSerials"`
	RevokedIDs     int                 `json:"revokedIds"`
}

// TrustDomainStatus is one trusted domain.
type TrustDomainStatus struct {
	Name string `json:"name"`
	// Roots are the fingerprints (SHA-256) and expiry of its roots.
	Roots []RootStatus `json:"roots"`
	// Clusters, when set, are the only clusters this domain may identify.
	Clusters []string `json:"clusters,omitempty"`
}

// RootStatus is one trusted root certificate.
type RootStatus struct {
	Subject     string    `json:"subject"`
	Fingerprint string    `json:"sha256"`
	NotAfter    time.Time `json:"notAfter"`
}
