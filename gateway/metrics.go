package gateway

import (
	"cmp"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/federation/catalog"
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
	healthFailures     prometheus.Counter
	duration           *prometheus.HistogramVec
	refused            *prometheus.CounterVec
	handshakeTimeouts  *prometheus.CounterVec
	idleClosed         prometheus.Counter
	tunnels            *prometheus.GaugeVec
	tunnelDials        *prometheus.CounterVec
	tunnelClosed       *prometheus.CounterVec
	windowRefused      *prometheus.CounterVec
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
	uiClients          prometheus.Gauge
	uiDropped          prometheus.Counter
	buildInfo          prometheus.Gauge
	peers              *peersCollector
}

// newMetrics registers the gateway's collectors on reg. version is the
// binary's version (-X main.version); self is this gateway's cluster, left
// out of strait_peer_up.
func newMetrics(reg prometheus.Registerer, version, self string) *metrics {
	m := &metrics{
		buildInfo: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "strait_build_info",
			Help:        "Always 1; its labels name the binary's version, VCS revision (unknown when it was built without one) and Go version.",
			ConstLabels: prometheus.Labels{"version": cmp.Or(version, "unknown"), "revision": vcsRevision(), "goversion": runtime.Version()},
		}),
		peers: newPeersCollector(self),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_connections_total",
			Help: "Connections handled, by direction (inbound from gateways, outbound from local workloads), service, source cluster (the peer for inbound, this one for outbound), destination cluster (this one for inbound, the target for outbound) and result.",
		}, []string{"direction", "service", "source_cluster", "destination_cluster", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_active_connections", Help: "Connections being carried now, by direction.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_bytes_total", Help: "Payload bytes carried, by direction, service, source and destination cluster and flow (tx toward the service, rx back).",
		}, []string{"direction", "service", "source_cluster", "destination_cluster", "flow"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_dial_failures_total", Help: "Failed attempts to reach a candidate cluster (destination_cluster) for a service.",
		}, []string{"service", "destination_cluster"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_failovers_total", Help: "Times a connection moved on from a candidate cluster (destination_cluster) to the next.",
		}, []string{"service", "destination_cluster"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_inbound_handshake_failures_total", Help: "Inbound connections refused during the mTLS handshake (no or foreign certificate).",
		}),
		connectSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_connect_seconds", Help: "Time from a client connection to the answer of the cluster that took it, failovers included, by service and destination cluster.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}, []string{"service", "destination_cluster"}),
		endpointsDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_gateway_local_endpoints_down", Help: "Local endpoint addresses marked down by their TCP health check (health.unhealthyThreshold failures in a row).",
		}),
		healthFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_health_check_failures_total", Help: "Failed TCP health checks of local endpoints, also those short of health.unhealthyThreshold.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_connection_duration_seconds", Help: "Lifetime of carried connections, by direction, service and source and destination cluster.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"direction", "service", "source_cluster", "destination_cluster"}),
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
		windowRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_tunnel_window_refused_total",
			Help: "Window growths of tunnel streams refused because the peer's budget (tunnels.peerWindowMiB) was spent, by direction and peer cluster: the stream keeps the window it has.",
		}, []string{"direction", "peer_cluster"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_ejections_total",
			Help: "Ejections by passive outlier detection of a local endpoint or a remote gateway, by service and the cluster it is in.",
		}, []string{"service", "destination_cluster"}),
		ejected: route.NewEjectedCollector(),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_gateway_inflight_streams",
			Help: "Streams open now, by the cluster they go to (this gateway's own cluster: streams to its local endpoints, from local workloads and other gateways).",
		}, []string{"destination_cluster"}),
		passthroughRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_passthrough_refused_total",
			Help: "Connections on the passthrough port closed without being carried, by reason (client_hello, sni, unknown_service, residency, unavailable).",
		}, []string{"reason"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_http_requests_total",
			Help: "HTTP requests from local workloads routed one by one (ports that speak HTTP, on every entry, and the proxy port's absolute-form requests), by service, the cluster that answered (empty when none did) and status code.",
		}, []string{"service", "destination_cluster", "code"}),
		httpSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_http_request_duration_seconds", Help: "From a request's head to the end of its response, by service and the cluster that answered.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"service", "destination_cluster"}),
		httpRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_http_retries_total",
			Help: "Retryable requests whose stream broke before a response started, by service, the cluster where it broke and result (retried on the next allowed cluster, or budget: refused by the retry budget).",
		}, []string{"service", "destination_cluster", "result"}),
		grpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_grpc_requests_total",
			Help: "gRPC calls from local workloads that got a response, by service, the cluster that answered and gRPC status code.",
		}, []string{"service", "destination_cluster", "grpc_status"}),
		httpStreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_http_upstream_streams_total",
			Help: "Streams HTTP requests went on, by service, destination cluster and whether the stream was new or kept from an earlier request with the same facts.",
		}, []string{"service", "destination_cluster", "stream"}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_admin_refused_total",
			Help: "Requests to the admin API's operator endpoints refused, by reason (host, cross_origin, no_credentials, bad_credentials, content_type).",
		}, []string{"reason"}),
		peerMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_peer_identity_mismatch_total",
			Help: "Outbound connections to another gateway closed after the handshake because its certificate did not name the cluster and region the catalog lists at its address, by the cluster expected there.",
		}, []string{"destination_cluster"}),
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
		uiClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_admin_ui_clients", Help: "Topology pages (/ui/events streams) connected now.",
		}),
		uiDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_admin_ui_events_dropped_total",
			Help: "Refusal events not sent to a topology page because it fell behind (its buffer was full); the data plane never waits for a page.",
		}),
	}
	m.buildInfo.Set(1)
	for _, r := range identity.Reasons {
		m.peerRefused.WithLabelValues(string(r))
	}
	for _, c := range m.all() {
		reg.MustRegister(c)
	}
	return m
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.connections, m.active, m.bytes, m.dialFailures, m.failovers, m.handshakeFailures, m.connectSeconds, m.endpointsDown, m.healthFailures,
		m.duration, m.refused, m.handshakeTimeouts, m.idleClosed, m.tunnels, m.tunnelDials, m.tunnelClosed, m.windowRefused,
		m.ejections, m.ejected, m.inflight, m.passthroughRefused, m.httpRequests, m.httpSeconds, m.httpRetries, m.grpcRequests, m.httpStreams, m.adminRefused,
		m.peerMismatch, m.peerRefused, m.accessRefused, m.dnsQueries, m.uiClients, m.uiDropped, m.buildInfo, m.peers}
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
	return tunnel.Metrics{Tunnels: m.tunnels, Dials: m.tunnelDials, Closed: m.tunnelClosed, Refused: m.refused.WithLabelValues("tunnel", refusedPeerStreams),
		WindowRefused: m.windowRefused}
}

// vcsRevision returns the VCS revision the binary was built from, or
// "unknown".
func vcsRevision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// peersCollector exports, at each scrape, strait_peer_up from the catalog
// snapshot (one series per other cluster the catalog knows, 1 while gossip
// says one of its gateways is alive, gone once the catalog forgets it),
// strait_gateway_tunnel_rtt_seconds from the open outbound tunnels (the
// lowest last keepalive round trip to each peer cluster, once measured)
// and strait_gateway_tunnel_window_grown_bytes from the tunnel pool's
// window budgets (one series per direction and peer cluster with one).
type peersCollector struct {
	up      *prometheus.Desc
	rtt     *prometheus.Desc
	grown   *prometheus.Desc
	self    string
	catalog atomic.Pointer[catalog.Catalog]
	tunnels atomic.Pointer[tunnel.Pool]
}

func newPeersCollector(self string) *peersCollector {
	return &peersCollector{self: self,
		up: prometheus.NewDesc("strait_peer_up",
			"1 while gossip says a gateway of the peer cluster is alive and reachable, 0 while the catalog still lists the cluster but none of its gateways is; by cluster and region.",
			[]string{"destination_cluster", "region"}, nil),
		rtt: prometheus.NewDesc("strait_gateway_tunnel_rtt_seconds",
			"Last keepalive round trip of the open outbound tunnels to a peer cluster (the lowest when there are several).",
			[]string{"destination_cluster"}, nil),
		grown: prometheus.NewDesc("strait_gateway_tunnel_window_grown_bytes",
			"What the windows of tunnel streams have grown past tunnels.streamWindowKiB now, drawn from the peer's budget (tunnels.peerWindowMiB), by direction (outbound: streams of tunnels dialled to the peer's gateways; inbound: of tunnels they opened here) and peer cluster.",
			[]string{"direction", "peer_cluster"}, nil)}
}

// follow makes the collector read c's snapshots.
func (p *peersCollector) follow(c *catalog.Catalog) { p.catalog.Store(c) }

// followTunnels makes the collector read the round trips of t's tunnels.
func (p *peersCollector) followTunnels(t *tunnel.Pool) { p.tunnels.Store(t) }

func (p *peersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.up; ch <- p.rtt; ch <- p.grown }

func (p *peersCollector) Collect(ch chan<- prometheus.Metric) {
	if c := p.catalog.Load(); c != nil {
		if snap := c.Snapshot(); snap != nil {
			p.collectUp(ch, snap)
		}
	}
	if t := p.tunnels.Load(); t != nil {
		rtt := map[string]float64{}
		var order []string
		for _, ts := range t.Status() {
			if ts.State != "open" || ts.Peer == "" || ts.RTTMs <= 0 {
				continue
			}
			sec := ts.RTTMs / 1e3
			if old, ok := rtt[ts.Peer]; !ok {
				order = append(order, ts.Peer)
				rtt[ts.Peer] = sec
			} else if sec < old {
				rtt[ts.Peer] = sec
			}
		}
		for _, peer := range order {
			ch <- prometheus.MustNewConstMetric(p.rtt, prometheus.GaugeValue, rtt[peer], peer)
		}
		for _, w := range t.Windows() {
			ch <- prometheus.MustNewConstMetric(p.grown, prometheus.GaugeValue, float64(w.Grown), w.Direction, w.Cluster)
		}
	}
}

func (p *peersCollector) collectUp(ch chan<- prometheus.Metric, snap *catalog.Snapshot) {
	type peer struct{ cluster, region string }
	up := map[peer]bool{}
	var order []peer
	for _, v := range snap.Clusters {
		if v.Cluster == p.self {
			continue
		}
		k := peer{v.Cluster, v.Region}
		if _, ok := up[k]; !ok {
			order = append(order, k)
		}
		up[k] = up[k] || v.Reachable
	}
	for _, k := range order {
		val := 0.0
		if up[k] {
			val = 1
		}
		ch <- prometheus.MustNewConstMetric(p.up, prometheus.GaugeValue, val, k.cluster, k.region)
	}
}
