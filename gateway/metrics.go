package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/gateway/tunnel"
	"github.com/straitmesh/strait/identity"
)

type metrics struct {
	connections        *prometheus.CounterVec
	active             *prometheus.GaugeVec
	bytes              *prometheus.CounterVec
	dialFailures       *prometheus.CounterVec
	failovers          *prometheus.CounterVec
	handshakeFailures  prometheus.Counter
	connectSeconds     *prometheus.HistogramVec
	endpointsDown      prometheus.Gauge
	duration           *prometheus.HistogramVec
	refused            *prometheus.CounterVec
	handshakeTimeouts  *prometheus.CounterVec
	idleClosed         prometheus.Counter
	tunnels            *prometheus.GaugeVec
	tunnelDials        *prometheus.CounterVec
	tunnelClosed       *prometheus.CounterVec
	ejections          *prometheus.CounterVec
	ejected            *route.EjectedCollector
	inflight           *prometheus.GaugeVec
	passthroughRefused *prometheus.CounterVec
	httpRequests       *prometheus.CounterVec
	httpSeconds        *prometheus.HistogramVec
	httpRetries        *prometheus.CounterVec
	grpcRequests       *prometheus.CounterVec
	httpStreams        *prometheus.CounterVec
	adminRefused       *prometheus.CounterVec
	peerMismatch       *prometheus.CounterVec
	peerRefused        *prometheus.CounterVec
	accessRefused      *prometheus.CounterVec
	dnsQueries         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_connections_total",
			Help: "Connections handled, by direction (inbound from gateways, outbound from local workloads), service, peer or target cluster and result.",
		}, []string{"direction", "service", "cluster", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_active_connections", Help: "Connections being carried now, by direction.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_bytes_total", Help: "Payload bytes carried, by direction, service and flow (tx toward the service, rx back).",
		}, []string{"direction", "service", "cluster", "flow"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_dial_failures_total", Help: "Failed attempts to reach a candidate cluster for a service.",
		}, []string{"service", "cluster"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_failovers_total", Help: "Times a connection moved on from a candidate cluster (the cluster label) to the next.",
		}, []string{"service", "cluster"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_inbound_handshake_failures_total", Help: "Inbound connections refused during the mTLS handshake (no or foreign certificate).",
		}),
		connectSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_connect_seconds", Help: "Time from a client connection to the answer of the cluster that took it, failovers included, by service and cluster.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}, []string{"service", "cluster"}),
		endpointsDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_gateway_local_endpoints_down", Help: "Local endpoint addresses failing their TCP health check.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_connection_duration_seconds", Help: "Lifetime of carried connections, by direction, service and peer or target cluster.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"direction", "service", "cluster"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_connections_refused_total",
			Help: "Connections and tunnel streams refused over a budget, by listener and reason (listener: limits.listeners.<listener>; source: limits.handshakesPerSource; max_connections: limits.maxConnections; peer_streams: tunnels.maxStreamsPerPeer).",
		}, []string{"listener", "reason"}),
		handshakeTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_handshake_timeouts_total", Help: "Connections to the data, Raft and control ports closed because their TLS handshake did not finish within limits.handshakeTimeout, by listener.",
		}, []string{"listener"}),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_idle_closed_total", Help: "Connections closed after timeouts.idle without a byte either way.",
		}),
		tunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_tunnels", Help: "Open tunnels to (outbound) and from (inbound) other gateways.",
		}, []string{"direction"}),
		tunnelDials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_tunnel_dials_total", Help: "Tunnels dialled to other gateways, by result (ok, failed, no-tunnels: the peer only takes one connection per stream).",
		}, []string{"result"}),
		tunnelClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_tunnels_closed_total", Help: "Tunnels ended, by reason (keepalive: the peer stopped answering; closed; shutdown).",
		}, []string{"reason"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_ejections_total",
			Help: "Ejections by passive outlier detection of a local endpoint or a remote gateway, by service and the cluster it is in.",
		}, []string{"service", "cluster"}),
		ejected: route.NewEjectedCollector(),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_inflight_streams",
			Help: "Streams open now, by the cluster they go to (this gateway's own cluster: streams to its local endpoints, from local workloads and other gateways).",
		}, []string{"cluster"}),
		passthroughRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_passthrough_refused_total",
			Help: "Connections on the passthrough port closed without being carried, by reason (client_hello, sni, unknown_service, residency, unavailable).",
		}, []string{"reason"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_http_requests_total",
			Help: "HTTP requests from local workloads routed one by one (ports that speak HTTP, on every entry, and the proxy port's absolute-form requests), by service, the cluster that answered (empty when none did) and status code.",
		}, []string{"service", "cluster", "code"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_http_request_duration_seconds", Help: "From a request's head to the end of its response, by service and the cluster that answered.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"service", "cluster"}),
		httpRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_http_retries_total",
			Help: "Retryable requests whose stream broke before a response started, by service, the cluster where it broke and result (retried on the next allowed cluster, or budget: refused by the retry budget).",
		}, []string{"service", "cluster", "result"}),
		grpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_grpc_requests_total",
			Help: "gRPC calls from local workloads that got a response, by service, the cluster that answered and gRPC status code.",
		}, []string{"service", "cluster", "grpc_status"}),
		httpStreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_http_upstream_streams_total",
			Help: "Streams HTTP requests went on, by service, cluster and whether the stream was new or kept from an earlier request with the same facts.",
		}, []string{"service", "cluster", "stream"}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_admin_refused_total",
			Help: "Requests to the admin API's operator endpoints refused, by reason (host, cross_origin, no_credentials, bad_credentials, content_type).",
		}, []string{"reason"}),
		peerMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_peer_identity_mismatch_total",
			Help: "Outbound connections to another gateway closed after the handshake because its certificate did not name the cluster and region the catalog lists at its address, by the cluster expected there.",
		}, []string{"cluster"}),
		peerRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_identity_peer_refused_total",
			Help: "Peer certificates refused at a handshake (data plane, tunnels, Raft, control API), by reason (identity.Reasons: expired, not_yet_valid, self_signed, wrong_key_usage, no_identity, unknown_trust_domain, cluster_not_allowed, unknown_authority, revoked, ...).",
		}, []string{"reason"}),
		accessRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_access_refused_total",
			Help: "Flows refused by the routing state's export and import records, by direction (outbound: no cluster left to try; inbound: a stream from a peer) and service.",
		}, []string{"direction", "service"}),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_dns_queries_total",
			Help: "DNS queries on dns.listen, by query type (A, AAAA, SRV, ...; other; none when no question could be read) and response code (NOERROR, NXDOMAIN, REFUSED, FORMERR, ...; dropped: too short to answer).",
		}, []string{"qtype", "rcode"}),
	}
	for _, r := range identity.Reasons {
		m.peerRefused.WithLabelValues(string(r))
	}
	for _, c := range m.all() {
		reg.MustRegister(c)
	}
	return m
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.connections, m.active, m.bytes, m.dialFailures, m.failovers, m.handshakeFailures, m.connectSeconds, m.endpointsDown,
		m.duration, m.refused, m.handshakeTimeouts, m.idleClosed, m.tunnels, m.tunnelDials, m.tunnelClosed,
		m.ejections, m.ejected, m.inflight, m.passthroughRefused, m.httpRequests, m.httpSeconds, m.httpRetries, m.grpcRequests, m.httpStreams, m.adminRefused,
		m.peerMismatch, m.peerRefused, m.accessRefused, m.dnsQueries}
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.all() {
		reg.Unregister(c)
	}
}

// selector returns the collectors the endpoint selector updates.
func (m *metrics) selector() route.Metrics {
	return route.Metrics{Ejections: m.ejections, Inflight: m.inflight, Ejected: m.ejected}
}

// tunnel returns the collectors of the tunnel pool.
func (m *metrics) tunnel() tunnel.Metrics {
	return tunnel.Metrics{Tunnels: m.tunnels, Dials: m.tunnelDials, Closed: m.tunnelClosed, Refused: m.refused.WithLabelValues("tunnel", refusedPeerStreams)}
}
