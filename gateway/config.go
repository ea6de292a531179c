package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/discovery/kube"
	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/gateway/clusterset"
	"github.com/straitmesh/strait/gateway/fault"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/internal/configfile"
	"github.com/straitmesh/strait/sovereignty"
)

// Config is everything one gateway process needs. Load it with
// configfile.Load from YAML, STRAIT_* environment variables and flags.
type Config struct {
	// Cluster is the name of the cluster this gateway fronts. Required.
	Cluster string `mapstructure:"cluster"`
	// Region is the residency region of the cluster (e.g. eu-west). Required.
	Region string `mapstructure:"region"`
	// Zone is the cluster's zone, used for locality ordering. Optional.
	Zone string `mapstructure:"zone"`
	// Cloud is a provider label (aws, gcp, onprem). Optional.
	Cloud string `mapstructure:"cloud"`
	// TrustDomain is the SPIFFE trust domain of the federation. Default strait.local.
	TrustDomain string `mapstructure:"trustDomain"`

	Listen ListenConfig `mapstructure:"listen"`
	// Admin guards the operator endpoints of the admin API.
	Admin AdminConfig `mapstructure:"admin"`
	// Advertise is the data-plane address other gateways dial. Default: the
	// data listen address; required when that binds 0.0.0.0 or ::.
	Advertise string `mapstructure:"advertise"`

	TLS    TLSConfig      `mapstructure:"tls"`
	Gossip catalog.Config `mapstructure:"gossip"`
	// State is the Raft-backed routing state. Off until state.dataDir is set.
	State    state.Config `mapstructure:"state"`
	Timeouts Timeouts     `mapstructure:"timeouts"`
	// Tunnels carry streams to other gateways over pooled, multiplexed
	// mTLS connections.
	Tunnels TunnelConfig `mapstructure:"tunnels"`
	// Limits cap what the gateway accepts.
	Limits LimitsConfig `mapstructure:"limits"`
	Health HealthConfig `mapstructure:"health"`
	// Outlier ejects local endpoints and remote gateways that keep
	// failing to connect.
	Outlier route.OutlierConfig `mapstructure:"outlier"`
	Log     LogConfig           `mapstructure:"log"`
	// HTTP configures the HTTP layer of ports that speak HTTP.
	HTTP HTTPConfig `mapstructure:"http"`

	// Discovery chooses where the local services this gateway exports
	// come from.
	Discovery DiscoveryConfig `mapstructure:"discovery"`
	// Services is the static discovery source: the local services this
	// gateway exports to the federation (discovery.source static).
	Services []discovery.Service `mapstructure:"services"`
	// Imports are remote services given a local port each.
	Imports []Import `mapstructure:"imports"`
	// DNS answers <service>.<namespace>.svc.clusterset.local for the
	// imports and gives them addresses of their own (dns.go).
	DNS DNSConfig `mapstructure:"dns"`
	// Residency enforces a data-residency policy (docs/residency.md).
	Residency ResidencyConfig `mapstructure:"residency"`
	// Faults is the fault mode failover drills inject faults through
	// (docs/drills.md). Off by default.
	Faults fault.Config `mapstructure:"faults"`
}

// Discovery sources (discovery.source).
const (
	DiscoveryStatic     = "static"
	DiscoveryFile       = "file"
	DiscoveryKubernetes = "kubernetes"
)

// DiscoveryConfig chooses one discovery source (package discovery).
type DiscoveryConfig struct {
	// Source is static (the services list of this file), file (a watched
	// services file, discovery.file.path) or kubernetes (Services and
	// EndpointSlices exported with the MCS API, discovery.kubernetes).
	// Default static.
	Source string `mapstructure:"source"`
	// File is the file source.
	File FileDiscoveryConfig `mapstructure:"file"`
	// Kubernetes is the kubernetes source (docs/kubernetes.md).
	Kubernetes kube.Config `mapstructure:"kubernetes"`
}

// FileDiscoveryConfig is the file source.
type FileDiscoveryConfig struct {
	// Path of a YAML or JSON file holding a services list like the
	// services key of this file; read again when it changes, the last
	// good list kept while it does not parse. Required for source file.
	Path string `mapstructure:"path"`
}

// ListenConfig holds the gateway's listen addresses.
type ListenConfig struct {
	// Data is the mTLS east-west listener. Default 0.0.0.0:15443.
	Data string `mapstructure:"data"`
	// Admin serves the probes (/healthz, /readyz, /metrics) and the
	// operator endpoints (/v1/...). Default 127.0.0.1:15000. Anywhere but
	// loopback it needs admin.tokenFile.
	Admin string `mapstructure:"admin"`
	// Probes serves /healthz, /readyz and /metrics only, with no Host or
	// credential check, so it may bind wider than listen.admin for
	// kubelets and Prometheus. Default empty: the probes are served on
	// listen.admin only.
	Probes string `mapstructure:"probes"`
	// Connect is the HTTP CONNECT port for local workloads. Default
	// 127.0.0.1:15001; empty disables it.
	Connect string `mapstructure:"connect"`
	// Passthrough takes TLS from local workloads and routes it by its SNI
	// (outbound_.<port>_._.<name>.<ns>.svc.cluster.local) without
	// terminating it. Default 127.0.0.1:15002; empty disables it.
	Passthrough string `mapstructure:"passthrough"`
	// Control is the gRPC control API of the routing state (mTLS). Default
	// 0.0.0.0:15012; bound only when the routing state is enabled.
	Control string `mapstructure:"control"`
}

// AdminConfig guards the operator endpoints of the admin API (gossip
// keys, status, residency views; gateway/admin.Handler lists them).
type AdminConfig struct {
	// TokenFile holds the bearer token operator requests must carry
	// ("Authorization: Bearer <token>"), at least 16 characters; read at
	// start. Required when listen.admin is not a loopback address. Empty:
	// operator requests need no credentials, only a loopback connection.
	TokenFile string `mapstructure:"tokenFile"`
	// AllowedHosts are Host names (or addresses) operator requests may
	// carry besides localhost, loopback addresses and the host of
	// listen.admin: the names operators reach the gateway by. Anything
	// else is refused, which defeats DNS rebinding. Default none.
	AllowedHosts []string `mapstructure:"allowedHosts"`
}

// TLSConfig names the PEM files of the gateway's federation identity.
type TLSConfig struct {
	// Source of the gateway's certificate: files (default: cert, key and
	// ca, reloaded when they change), ca (the federation's CA, see
	// tls.authority) or acme (see tls.acme).
	Source string `mapstructure:"source"`
	Cert   string `mapstructure:"cert"`
	Key    string `mapstructure:"key"`
	// CA is the PEM bundle of the federation's own roots. The routing
	// state's trust records add to it.
	CA string `mapstructure:"ca"`
	// Watch is how often the files are read for changes (source files).
	// Default 5s.
	Watch time.Duration `mapstructure:"watch"`
	// Storage is where the ca and acme sources keep certificates and
	// keys. Default: <state.dataDir>/certificates, else
	// ./strait-certificates.
	Storage string `mapstructure:"storage"`
	// RenewCheck is how often the certificate is checked for renewal
	// (renewed at two thirds of its lifetime). Default 1m.
	RenewCheck time.Duration `mapstructure:"renewCheck"`
	// Authority configures the ca source.
	Authority AuthorityConfig `mapstructure:"authority"`
	// ACME configures the acme source.
	ACME ACMEConfig `mapstructure:"acme"`
}

// AuthorityConfig is the ca source: the federation's CA, reached over
// the control API of its voters. A voter that holds the intermediate
// (state.ca) signs its own certificate and needs none of this.
type AuthorityConfig struct {
	// Servers are control addresses of voters. Default state.join.
	Servers []string `mapstructure:"servers"`
	// TokenFile holds the join token (strait ca token) for the first
	// certificate. Not needed once tls.storage holds a certificate.
	TokenFile string `mapstructure:"tokenFile"`
	// Lifetime asked for. Default: the CA's (state.ca.lifetime, 24h).
	Lifetime time.Duration `mapstructure:"lifetime"`
}

// ACMEConfig is the acme certificate source: an ACME directory (step-ca,
// Vault PKI, Let's Encrypt) issues the gateway a certificate for the DNS
// form of its identity, <cluster>.<region>.<dnsSuffix> (voters
// <cluster>.<region>.voters.<dnsSuffix>). tls.ca holds the roots the
// directory's certificates chain to.
type ACMEConfig struct {
	// Directory is the directory's URL (https).
	Directory string `mapstructure:"directory"`
	// Email is the account's contact address. Optional.
	Email string `mapstructure:"email"`
	// AgreeToTerms accepts the CA's subscriber agreement. Must be true.
	AgreeToTerms bool `mapstructure:"agreeToTerms"`
	// Roots is a PEM file of the roots that verify the directory's own
	// HTTPS certificate. Default: the system's roots.
	Roots string `mapstructure:"roots"`
	// EABKeyID and EABMACKeyFile bind the account to an external account
	// (the MAC key, base64url, read from the file).
	EABKeyID      string `mapstructure:"eabKeyID"`
	EABMACKeyFile string `mapstructure:"eabMACKeyFile"`
	// Challenges offered: http-01, tls-alpn-01. Default both.
	Challenges []string `mapstructure:"challenges"`
	// ListenHost, HTTPPort and TLSALPNPort are where the challenge
	// listeners bind while a challenge is open. Default every interface,
	// ports 80 and 443.
	ListenHost  string `mapstructure:"listenHost"`
	HTTPPort    int    `mapstructure:"httpPort"`
	TLSALPNPort int    `mapstructure:"tlsALPNPort"`
	// Profile names an ACME profile of the directory. Optional.
	Profile string `mapstructure:"profile"`
	// DNSSuffix is the trust domain's DNS suffix. Required.
	DNSSuffix string `mapstructure:"dnsSuffix"`
	// ServerAuthAsClient accepts peers' ACME certificates that allow only
	// TLS server authentication as client certificates (Pebble, and Let's
	// Encrypt since it dropped client authentication). Default false.
	ServerAuthAsClient bool `mapstructure:"serverAuthAsClient"`
}

// Timeouts bound every wait on the network.
type Timeouts struct {
	// Connect bounds establishing one upstream connection, including the
	// mTLS handshake and the remote gateway's answer. Default 3s.
	Connect time.Duration `mapstructure:"connect"`
	// Budget bounds trying all candidates for one client connection. Default 5s.
	Budget time.Duration `mapstructure:"budget"`
	// Drain is how long shutdown waits for open connections. Default 5s.
	Drain time.Duration `mapstructure:"drain"`
	// Idle closes a connection that carried no byte either way for this
	// long. Default 1h.
	Idle time.Duration `mapstructure:"idle"`
}

// TunnelConfig sets the pooled mTLS tunnels between gateways.
type TunnelConfig struct {
	// Enabled opens streams to other gateways on shared tunnels. Off, or
	// with a peer that does not offer tunnels, every stream is its own
	// mTLS connection. Default true.
	Enabled bool `mapstructure:"enabled"`
	// Keepalive is the interval between pings on an idle tunnel. Default 250ms.
	Keepalive time.Duration `mapstructure:"keepalive"`
	// KeepaliveTimeout declares a tunnel dead when a ping is not answered
	// in time; its streams fail and new ones go elsewhere. Default 500ms.
	KeepaliveTimeout time.Duration `mapstructure:"keepaliveTimeout"`
	// PerPeer is the number of tunnels kept to each peer gateway; streams
	// spread over them. Default 2.
	PerPeer int `mapstructure:"perPeer"`
	// EarlyData sends a client's first bytes (import ports) right behind
	// the stream header instead of after the remote answer: a new
	// connection costs one round trip less. A stream whose tunnel breaks
	// before the answer is then not retried elsewhere when such bytes went
	// out. Default true.
	EarlyData bool `mapstructure:"earlyData"`
	// StreamWindowKiB is each tunnel stream's receive window to begin
	// with, and what it keeps whatever other streams do. One stream moves
	// at most about a window per round trip (4096 KiB over a 50 ms round
	// trip: some 40-80 MiB/s) until its window grows (MaxStreamWindowKiB),
	// and a slow reader can leave a window buffered in the gateway.
	// Default 4096 (4 MiB), at least 256.
	StreamWindowKiB int `mapstructure:"streamWindowKiB"`
	// MaxStreamWindowKiB is the largest a stream's window grows to: a
	// stream whose sender is held up by its window (it moves a window per
	// round trip) has the window doubled, as far as PeerWindowMiB allows.
	// Equal to streamWindowKiB, windows do not grow. Default 65536
	// (64 MiB: some 600 MiB/s over 50 ms), at least streamWindowKiB.
	MaxStreamWindowKiB int `mapstructure:"maxStreamWindowKiB"`
	// PeerWindowMiB is what the windows of one peer's streams may grow
	// past streamWindowKiB, together, in each direction: it bounds what
	// grown windows can leave buffered, on top of streamWindowKiB per
	// stream. 0: windows do not grow. Default 128.
	PeerWindowMiB int `mapstructure:"peerWindowMiB"`
	// MaxStreamsPerPeer caps the streams one peer cluster has open on the
	// tunnels it opened to this gateway, together. A stream over it is
	// answered ERR and closed (the peer tries the next cluster). What one
	// peer can leave buffered here is at most maxStreamsPerPeer ×
	// streamWindowKiB + peerWindowMiB (4 GiB and 128 MiB with the
	// defaults, and only while local services read slower than the peer
	// sends): lower them to pin less. Default 1024.
	MaxStreamsPerPeer int `mapstructure:"maxStreamsPerPeer"`
}

// windowKiBLimit bounds tunnels.streamWindowKiB and
// tunnels.maxStreamWindowKiB (1 GiB).
const windowKiBLimit = 1 << 20

// LimitsConfig caps what the gateway accepts. Every listener has a
// budget of its own (Listeners), so that a flood of one port, such as
// unauthenticated handshakes on the data, Raft or control port, never
// takes the connections local workloads need, nor the other way round.
type LimitsConfig struct {
	// MaxConnections caps, together, the connections local workloads have
	// open on the connect, passthrough and import ports and the streams
	// other gateways have open here (on tunnels, or a connection each);
	// more are refused at once. Connections on the data, Raft, control and
	// admin ports have only their listener's budget. Default 16384.
	MaxConnections int `mapstructure:"maxConnections"`
	// HandshakeTimeout is how long a connection to the data, Raft or
	// control port may take to finish its TLS handshake; then it is
	// closed. The data port's handshake also ends at timeouts.connect.
	// Default 5s.
	HandshakeTimeout time.Duration `mapstructure:"handshakeTimeout"`
	// HandshakesPerSource caps the TLS handshakes one client address (an
	// IPv6 /64) has under way on the data, Raft and control ports
	// together; more are refused at once. Default 64.
	HandshakesPerSource int `mapstructure:"handshakesPerSource"`
	// Listeners are the listeners' own budgets.
	Listeners ListenerLimits `mapstructure:"listeners"`
}

// ListenerLimits cap how many connections each listener holds open at
// once, whatever their state (a TLS handshake, a tunnel, a client being
// carried). A connection over its listener's budget is closed as soon as
// it is accepted and counted in strait_gateway_connections_refused_total.
type ListenerLimits struct {
	// Data is listen.data's budget: handshakes, tunnels and streams on a
	// connection of their own. Default 4096.
	Data int `mapstructure:"data"`
	// Raft is state.bind's budget. Default 256.
	Raft int `mapstructure:"raft"`
	// Control is listen.control's budget. Default 1024.
	Control int `mapstructure:"control"`
	// Connect is listen.connect's budget. Default 8192.
	Connect int `mapstructure:"connect"`
	// Passthrough is listen.passthrough's budget. Default 8192.
	Passthrough int `mapstructure:"passthrough"`
	// Import is the budget of each import port. Default 4096.
	Import int `mapstructure:"import"`
	// Admin is listen.admin's budget. Default 64.
	Admin int `mapstructure:"admin"`
	// DNS is the budget of dns.listen's TCP connections, checked only
	// with dns.listen. Default 256.
	DNS int `mapstructure:"dns"`
}

// HealthConfig sets the active health check of local endpoints: a TCP
// connect to each endpoint's target port.
type HealthConfig struct {
	// Interval between checks. Default 2s.
	Interval time.Duration `mapstructure:"interval"`
	// Timeout of one connect. Default 1s.
	Timeout time.Duration `mapstructure:"timeout"`
	// UnhealthyThreshold is how many checks in a row an endpoint that
	// passed one must fail before it is marked down (one slow connect on
	// a busy node is not an outage). An endpoint that never passed is
	// down at its first failure. Default 2.
	UnhealthyThreshold int `mapstructure:"unhealthyThreshold"`
	// HealthyThreshold is how many checks in a row a down endpoint must
	// pass before it is marked up again. Default 1.
	HealthyThreshold int `mapstructure:"healthyThreshold"`
}

// HTTPConfig configures how the gateway carries requests on ports
// declared http, http2 or grpc.
type HTTPConfig struct {
	// RetryableGRPCMethods are gRPC methods that may be sent twice, as
	// "/package.Service/Method" or "/package.Service/*": a call whose
	// upstream broke before its response started is retried once on the
	// next allowed cluster, like an idempotent HTTP request. Only name
	// unary methods here: the request is held in memory (64 KiB at most)
	// until it is sent.
	RetryableGRPCMethods []string `mapstructure:"retryableGrpcMethods"`
}

// retryableGRPC reports whether the gRPC method path is listed.
func (h HTTPConfig) retryableGRPC(path string) bool {
	for _, m := range h.RetryableGRPCMethods {
		if m == path || strings.HasSuffix(m, "/*") && strings.HasPrefix(path, m[:len(m)-1]) {
			return true
		}
	}
	return false
}

// LogConfig sets logging.
type LogConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `mapstructure:"level"`
	// Format is text (default) or json.
	Format string `mapstructure:"format"`
}

// DNSConfig lets workloads reach imports by name: the gateway answers
// DNS for <service>.<namespace>.svc.<domain> with the addresses where it
// serves the service's imported ports.
type DNSConfig struct {
	// Listen is where DNS is answered, over UDP and TCP, e.g.
	// 127.0.0.1:15053. Default empty: no DNS server.
	Listen string `mapstructure:"listen"`
	// TTL of every answer, negative ones included (whole seconds, 1s to
	// 24h). Default 5s.
	TTL time.Duration `mapstructure:"ttl"`
	// Domain the names are under. Default clusterset.local. The CONNECT
	// and passthrough ports take clusterset.local names whatever it is.
	Domain string `mapstructure:"domain"`
	// ImportAddresses is an address block (CIDR, e.g. 127.77.0.0/16):
	// every imported service gets one address of it, chosen by a hash of
	// namespace/name, and the gateway listens there on each imported port
	// of the service, besides the import's own listen address. An import
	// may then leave out listen. Default empty: no addresses of their own.
	ImportAddresses string `mapstructure:"importAddresses"`
}

// Import gives a remote service port a local listener.
type Import struct {
	// Service is namespace/name.
	Service string `mapstructure:"service"`
	// Port is the service port.
	Port int `mapstructure:"port"`
	// Listen is the local address to accept on, e.g. 127.0.0.1:18080.
	// Optional with dns.importAddresses: the service's own address then
	// serves the port.
	Listen string `mapstructure:"listen"`
	// Namespace is the namespace of the workloads this port serves, for
	// residency classes that match sources by namespace. Optional.
	Namespace string `mapstructure:"namespace"`
	// Protocol is how the port speaks: http, http2 or grpc (the gateway
	// reads each request and routes it on its own), or tcp (bytes are
	// carried as they come, and residency treats the flow as unreadable).
	// Empty: as the clusters that export the service declare the port.
	Protocol string `mapstructure:"protocol"`
}

// Target returns the import's destination.
func (im Import) Target() wire.Target {
	ns, name, _ := strings.Cut(im.Service, "/")
	return wire.Target{Namespace: ns, Name: name, Port: im.Port}
}

// CertStorage is where the ca and acme sources keep certificates.
func (c Config) CertStorage() string {
	switch {
	case c.TLS.Storage != "":
		return c.TLS.Storage
	case c.State.DataDir != "":
		return filepath.Join(c.State.DataDir, "certificates")
	}
	return "strait-certificates"
}

// DefaultConfig returns a config with every documented default set.
func DefaultConfig() Config {
	return Config{
		TrustDomain: "strait.local",
		TLS:         TLSConfig{Source: identity.SourceFiles, Watch: 5 * time.Second, RenewCheck: time.Minute},
		Listen:      ListenConfig{Data: "0.0.0.0:15443", Admin: "127.0.0.1:15000", Connect: "127.0.0.1:15001", Passthrough: "127.0.0.1:15002", Control: "0.0.0.0:15012"},
		Gossip:      catalog.DefaultConfig(),
		State:       state.DefaultConfig(),
		Timeouts:    Timeouts{Connect: 3 * time.Second, Budget: 5 * time.Second, Drain: 5 * time.Second, Idle: time.Hour},
		Tunnels:     TunnelConfig{Enabled: true, Keepalive: 250 * time.Millisecond, KeepaliveTimeout: 500 * time.Millisecond, PerPeer: 2, EarlyData: true, StreamWindowKiB: 4096, MaxStreamWindowKiB: 65536, PeerWindowMiB: 128, MaxStreamsPerPeer: 1024},
		Limits:      defaultLimits(),
		Health:      HealthConfig{Interval: 2 * time.Second, Timeout: time.Second, UnhealthyThreshold: 2, HealthyThreshold: 1},
		Outlier:     route.DefaultOutlierConfig(),
		Log:         LogConfig{Level: "info", Format: "text"},
		Residency:   ResidencyConfig{Audit: sovereignty.DefaultAuditConfig()},
		Discovery:   DiscoveryConfig{Source: DiscoveryStatic, Kubernetes: kube.DefaultConfig()},
		DNS:         DNSConfig{TTL: 5 * time.Second, Domain: clusterset.DefaultDomain},
		Faults:      fault.DefaultConfig(),
	}
}

// defaultLimits are the documented defaults of limits.*.
func defaultLimits() LimitsConfig {
	return LimitsConfig{MaxConnections: 16384, HandshakeTimeout: 5 * time.Second, HandshakesPerSource: 64,
		Listeners: ListenerLimits{Data: 4096, Raft: 256, Control: 1024, Connect: 8192, Passthrough: 8192, Import: 4096, Admin: 64, DNS: 256}}
}

// Validate reports every problem at once, each naming its key.
func (c Config) Validate() error {
	var errs []error
	req := func(key, v string) {
		if v == "" {
			errs = append(errs, configfile.Errorf(key, "required value missing"))
		}
	}
	req("cluster", c.Cluster)
	if c.Faults.MaxLease < 0 {
		errs = append(errs, configfile.Errorf("faults.maxLease", "must not be negative (0: the default, 5m), found %s", c.Faults.MaxLease))
	}
	req("region", c.Region)
	req("trustDomain", c.TrustDomain)
	switch c.TLS.Source {
	case "", identity.SourceFiles:
		req("tls.cert", c.TLS.Cert)
		req("tls.key", c.TLS.Key)
		req("tls.ca", c.TLS.CA)
		if c.TLS.Watch < 0 {
			errs = append(errs, configfile.Errorf("tls.watch", "must be positive, found %s", c.TLS.Watch))
		}
	case identity.SourceCA, identity.SourceACME:
		if c.TLS.RenewCheck < 0 {
			errs = append(errs, configfile.Errorf("tls.renewCheck", "must be positive, found %s", c.TLS.RenewCheck))
		}
		if c.TLS.Source == identity.SourceCA && !c.State.CA.Enabled() && len(c.TLS.Authority.Servers) == 0 && len(c.State.Join) == 0 {
			errs = append(errs, configfile.Errorf("tls.authority.servers", "required for tls.source ca: control addresses of voters (or state.join, or state.ca on a voter that signs its own)"))
		}
		if c.TLS.Authority.Lifetime < 0 {
			errs = append(errs, configfile.Errorf("tls.authority.lifetime", "must be positive, found %s", c.TLS.Authority.Lifetime))
		}
		if c.TLS.Source == identity.SourceACME {
			req("tls.ca", c.TLS.CA)
			req("tls.acme.dnsSuffix", c.TLS.ACME.DNSSuffix)
			if c.TLS.ACME.DNSSuffix != "" {
				if _, err := identity.NormalizeDNSSuffix(c.TLS.ACME.DNSSuffix); err != nil {
					errs = append(errs, configfile.Errorf("tls.acme.dnsSuffix", "%v", err))
				}
			}
			if err := c.TLS.ACME.issuerConfig(nil).Validate(); err != nil {
				errs = append(errs, fmt.Errorf("tls.%w", err))
			}
		}
	default:
		errs = append(errs, configfile.Errorf("tls.source", "%q is not a certificate source (files, ca, acme)", c.TLS.Source))
	}
	for _, k := range []struct{ key, v string }{{"cluster", c.Cluster}, {"region", c.Region}, {"zone", c.Zone}} {
		if k.v != "" && !sovereignty.IsLabel(k.v) {
			errs = append(errs, configfile.Errorf(k.key, "%q is not a DNS label (lower-case letters, digits, '-')", k.v))
		}
	}

	// Listeners: valid addresses, and no two on the same port.
	type bound struct{ key, addr string }
	var binds []bound
	addr := func(key, v string, optional bool) {
		if v == "" {
			if !optional {
				errs = append(errs, configfile.Errorf(key, "required value missing"))
			}
			return
		}
		if _, _, err := configfile.HostPort(v); err != nil {
			errs = append(errs, configfile.Errorf(key, "%v", err))
			return
		}
		binds = append(binds, bound{key, v})
	}
	addr("listen.data", c.Listen.Data, false)
	addr("listen.admin", c.Listen.Admin, false)
	addr("listen.probes", c.Listen.Probes, true)
	addr("listen.connect", c.Listen.Connect, true)
	addr("listen.passthrough", c.Listen.Passthrough, true)
	addr("gossip.bind", c.Gossip.Bind, false)
	if c.State.Enabled() {
		addr("listen.control", c.Listen.Control, false)
		addr("state.bind", c.State.Bind, false)
	}
	for i, im := range c.Imports {
		key := fmt.Sprintf("imports.%d", i)
		if ns, name, ok := strings.Cut(im.Service, "/"); !ok || !sovereignty.IsLabel(ns) || !sovereignty.IsLabel(name) {
			errs = append(errs, configfile.Errorf(key+".service", "want namespace/name, found %q", im.Service))
		}
		if im.Port < 1 || im.Port > 65535 {
			errs = append(errs, configfile.Errorf(key+".port", "%d out of range 1-65535", im.Port))
		}
		addr(key+".listen", im.Listen, c.DNS.ImportAddresses != "")
		if im.Namespace != "" && !sovereignty.IsLabel(im.Namespace) {
			errs = append(errs, configfile.Errorf(key+".namespace", "%q is not a DNS label (lower-case letters, digits, '-')", im.Namespace))
		}
		if im.Protocol != "" && !discovery.ValidProtocol(im.Protocol) {
			errs = append(errs, configfile.Errorf(key+".protocol", "want one of %s, found %q", discovery.Protocols, im.Protocol))
		}
	}
	errs = append(errs, c.DNS.validate(c.Imports, c.Limits.Listeners.DNS, func(key, v string) { binds = append(binds, bound{key, v}) })...)
	addr("dns.listen", c.DNS.Listen, true)
	for i, m := range c.HTTP.RetryableGRPCMethods {
		svc, method, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !strings.HasPrefix(m, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/") || strings.Contains(method, "*") && method != "*" {
			errs = append(errs, configfile.Errorf(fmt.Sprintf("http.retryableGrpcMethods.%d", i), "want /package.Service/Method or /package.Service/*, found %q", m))
		}
	}
	for i := range binds {
		for j := 0; j < i; j++ {
			if clash(binds[i].addr, binds[j].addr) {
				errs = append(errs, configfile.Errorf(binds[i].key, "address %s clashes with %s (%s)", binds[i].addr, binds[j].key, binds[j].addr))
			}
		}
	}
	if h, _, err := configfile.HostPort(c.Listen.Admin); err == nil && !configfile.Loopback(h) && c.Admin.TokenFile == "" {
		errs = append(errs, configfile.Errorf("listen.admin", "%s is not a loopback address and admin.tokenFile is not set: "+
			"the operator endpoints (gossip keys) would be open to the network; set admin.tokenFile, or bind listen.admin to 127.0.0.1 "+
			"and serve probes and metrics on listen.probes", c.Listen.Admin))
	}
	for i, h := range c.Admin.AllowedHosts {
		if !validHost(h) {
			errs = append(errs, configfile.Errorf(fmt.Sprintf("admin.allowedHosts.%d", i), "want a host name or an IP address without port, found %q", h))
		}
	}
	if c.Advertise != "" {
		if _, _, err := configfile.HostPort(c.Advertise); err != nil {
			errs = append(errs, configfile.Errorf("advertise", "%v", err))
		}
	} else if h, _, err := configfile.HostPort(c.Listen.Data); err == nil && configfile.Unspecified(h) {
		errs = append(errs, configfile.Errorf("advertise", "required when listen.data binds all interfaces (%s): other gateways need an address to dial", c.Listen.Data))
	}
	if err := c.Gossip.Validate("gossip."); err != nil {
		errs = append(errs, err)
	}
	if err := c.State.Validate("state."); err != nil {
		errs = append(errs, err)
	}
	if c.State.Enabled() && c.State.ControlAdvertise == "" {
		if h, _, err := configfile.HostPort(c.Listen.Control); err == nil && configfile.Unspecified(h) && c.State.Advertise == "" {
			errs = append(errs, configfile.Errorf("state.controlAdvertise", "required when listen.control (%s) and state.bind listen on all interfaces and state.advertise is not set", c.Listen.Control))
		}
	}
	if err := discovery.Validate("services.", c.Services); err != nil {
		errs = append(errs, err)
	}
	switch c.Discovery.Source {
	case "", DiscoveryStatic:
	case DiscoveryFile:
		req("discovery.file.path", c.Discovery.File.Path)
	case DiscoveryKubernetes:
		if err := c.Discovery.Kubernetes.Validate("discovery.kubernetes."); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, configfile.Errorf("discovery.source", "want static, file or kubernetes, found %q", c.Discovery.Source))
	}
	if c.Discovery.Source != "" && c.Discovery.Source != DiscoveryStatic && len(c.Services) > 0 {
		errs = append(errs, configfile.Errorf("services", "the static list is used only with discovery.source static, found %s with %d services listed: "+
			"move them to the services file, or remove them", c.Discovery.Source, len(c.Services)))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"timeouts.connect", c.Timeouts.Connect}, {"timeouts.budget", c.Timeouts.Budget}, {"timeouts.drain", c.Timeouts.Drain},
		{"timeouts.idle", c.Timeouts.Idle}, {"tunnels.keepalive", c.Tunnels.Keepalive}, {"tunnels.keepaliveTimeout", c.Tunnels.KeepaliveTimeout},
		{"health.interval", c.Health.Interval}, {"health.timeout", c.Health.Timeout},
		{"outlier.baseEjection", c.Outlier.BaseEjection}, {"outlier.maxEjection", c.Outlier.MaxEjection},
		{"limits.handshakeTimeout", c.Limits.HandshakeTimeout}} {
		if d.v <= 0 {
			errs = append(errs, configfile.Errorf(d.key, "must be positive, found %s", d.v))
		}
	}
	for _, n := range []struct {
		key string
		v   int
		min int
	}{{"residency.audit.maxSizeMB", c.Residency.Audit.MaxSizeMB, 1}, {"residency.audit.maxBackups", c.Residency.Audit.MaxBackups, 0},
		{"residency.audit.maxAgeDays", c.Residency.Audit.MaxAgeDays, 0},
		{"tunnels.perPeer", c.Tunnels.PerPeer, 1}, {"limits.maxConnections", c.Limits.MaxConnections, 1},
		{"health.unhealthyThreshold", c.Health.UnhealthyThreshold, 1}, {"health.healthyThreshold", c.Health.HealthyThreshold, 1},
		{"limits.handshakesPerSource", c.Limits.HandshakesPerSource, 1},
		{"limits.listeners.data", c.Limits.Listeners.Data, 1}, {"limits.listeners.raft", c.Limits.Listeners.Raft, 1},
		{"limits.listeners.control", c.Limits.Listeners.Control, 1}, {"limits.listeners.connect", c.Limits.Listeners.Connect, 1},
		{"limits.listeners.passthrough", c.Limits.Listeners.Passthrough, 1}, {"limits.listeners.import", c.Limits.Listeners.Import, 1},
		{"limits.listeners.admin", c.Limits.Listeners.Admin, 1},
		{"tunnels.streamWindowKiB", c.Tunnels.StreamWindowKiB, 256}, {"tunnels.maxStreamsPerPeer", c.Tunnels.MaxStreamsPerPeer, 1},
		{"outlier.consecutiveFailures", c.Outlier.ConsecutiveFailures, 1}} {
		if n.v < n.min {
			errs = append(errs, configfile.Errorf(n.key, "must be at least %d, found %d", n.min, n.v))
		}
	}
	if c.Tunnels.StreamWindowKiB > windowKiBLimit {
		errs = append(errs, configfile.Errorf("tunnels.streamWindowKiB", "must be at most %d (1 GiB), found %d", windowKiBLimit, c.Tunnels.StreamWindowKiB))
	}
	if c.Tunnels.MaxStreamWindowKiB > windowKiBLimit {
		errs = append(errs, configfile.Errorf("tunnels.maxStreamWindowKiB", "must be at most %d (1 GiB), found %d", windowKiBLimit, c.Tunnels.MaxStreamWindowKiB))
	}
	if c.Tunnels.MaxStreamWindowKiB < c.Tunnels.StreamWindowKiB {
		errs = append(errs, configfile.Errorf("tunnels.maxStreamWindowKiB", "must be at least tunnels.streamWindowKiB (%d), found %d", c.Tunnels.StreamWindowKiB, c.Tunnels.MaxStreamWindowKiB))
	}
	if c.Tunnels.PeerWindowMiB < 0 {
		errs = append(errs, configfile.Errorf("tunnels.peerWindowMiB", "must be at least 0, found %d", c.Tunnels.PeerWindowMiB))
	}
	if c.Outlier.BaseEjection > 0 && c.Outlier.MaxEjection > 0 && c.Outlier.MaxEjection < c.Outlier.BaseEjection {
		errs = append(errs, configfile.Errorf("outlier.maxEjection", "must be at least outlier.baseEjection (%s), found %s", c.Outlier.BaseEjection, c.Outlier.MaxEjection))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, configfile.Errorf("log.level", "want debug, info, warn or error; found %q", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, configfile.Errorf("log.format", "want text or json, found %q", c.Log.Format))
	}
	return errors.Join(errs...)
}

// AdvertiseAddr is the data-plane address other gateways dial.
func (c Config) AdvertiseAddr() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Listen.Data
}

// validHost reports whether h is an IP address or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// clash reports whether two listen addresses would fight over a port.
// Port 0 never clashes (the kernel picks a free one).
func clash(a, b string) bool {
	ha, pa, _ := configfile.HostPort(a)
	hb, pb, _ := configfile.HostPort(b)
	if pa == 0 || pa != pb {
		return false
	}
	return ha == hb || configfile.Unspecified(ha) || configfile.Unspecified(hb)
}

// ControlAdvertise is the control API address other gateways forward
// writes to, given the bound control address: state.controlAdvertise, or
// the bound address when listen.control names a host, or the host of the
// Raft address with the bound port.
func (c Config) ControlAdvertise(bound, raftAddr string) string {
	if c.State.ControlAdvertise != "" {
		return c.State.ControlAdvertise
	}
	h, _, _ := configfile.HostPort(c.Listen.Control)
	if !configfile.Unspecified(h) {
		return bound
	}
	rh, _, _ := net.SplitHostPort(raftAddr)
	_, bp, _ := net.SplitHostPort(bound)
	return net.JoinHostPort(rh, bp)
}
