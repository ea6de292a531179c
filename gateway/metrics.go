package gateway

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections       *prometheus.CounterVec
	active            *prometheus.GaugeVec
	bytes             *prometheus.CounterVec
	dialFailures      *prometheus.CounterVec
	failovers         *prometheus.CounterVec
	handshakeFailures prometheus.Counter
	connectSeconds    *prometheus.HistogramVec
	endpointsDown     prometheus.Gauge

	passthroughRefused *prometheus.CounterVec
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
		}, []string{"direction", "service", "flow"}),
		dialFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_dial_failures_total", Help: "Failed attempts to reach a candidate cluster for a service.",
		}, []string{"service", "cluster"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_failovers_total", Help: "Times a connection moved on to a further candidate cluster.",
		}, []string{"service"}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_gateway_inbound_handshake_failures_total", Help: "Inbound connections refused during the mTLS handshake (no or foreign certificate).",
		}),
		connectSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strait_gateway_connect_seconds", Help: "Time to open a stream through a remote gateway, until its answer.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"cluster"}),
		endpointsDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_gateway_local_endpoints_down", Help: "Local endpoint addresses failing their TCP health check.",
		}),
		passthroughRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gateway_passthrough_refused_total",
			Help: "Connections on the passthrough port closed without being carried, by reason (client_hello, sni, unknown_service, residency, unavailable, upstream).",
		}, []string{"reason"}),
	}
	for _, c := range m.all() {
		reg.MustRegister(c)
	}
	return m
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.connections, m.active, m.bytes, m.dialFailures, m.failovers, m.handshakeFailures, m.connectSeconds, m.endpointsDown, m.passthroughRefused}
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.all() {
		reg.Unregister(c)
	}
}
