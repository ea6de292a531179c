package catalog

import "github.com/prometheus/client_golang/prometheus"

type catalogMetrics struct {
	reg          prometheus.Registerer
	members      *prometheus.GaugeVec
	entries      prometheus.Gauge
	bytesSent    prometheus.Counter
	bytesRecv    prometheus.Counter
	decodeErrors prometheus.Counter
	deltas       prometheus.Counter
	sendDrops    prometheus.Counter
	stateEncodes prometheus.Counter
	collected    prometheus.Counter
	keyOps       *prometheus.CounterVec
	propagation  prometheus.Histogram
	deadEvents   prometheus.Counter
	deltaBytes   prometheus.Counter
	rejected     *prometheus.CounterVec
}

func newCatalogMetrics(reg prometheus.Registerer) *catalogMetrics {
	m := &catalogMetrics{
		reg: reg,
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_federation_members", Help: "Gateways known to this gateway, by gossip state (alive, dead, left, unknown).",
		}, []string{"state"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strait_catalog_entries", Help: "Service entries (one per service per gateway) in this gateway's catalog.",
		}),
		bytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_sent_bytes_total", Help: "Catalog bytes sent: deltas, push/pull state, broadcasts.",
		}),
		bytesRecv: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_received_bytes_total", Help: "Catalog bytes received.",
		}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_decode_errors_total", Help: "Catalog messages dropped as malformed.",
		}),
		deltas: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_deltas_sent_total", Help: "Changes of this gateway's own entry sent to the federation.",
		}),
		sendDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_send_drops_total", Help: "Direct sends dropped because the send queue was full (push/pull repairs them).",
		}),
		stateEncodes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_state_encodes_total", Help: "Times the full push/pull state was encoded.",
		}),
		collected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_collections_total", Help: "Collection passes that removed tombstones or departed gateways.",
		}),
		keyOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_gossip_key_operations_total", Help: "Federation-wide gossip key operations started here.",
		}, []string{"op"}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strait_catalog_propagation_seconds",
			Help:    "Time from a change at its owner to its receipt here (owner's clock; meaningful with synchronised clocks).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		deadEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_federation_failures_total", Help: "Times gossip declared another gateway dead (not a graceful leave).",
		}),
		deltaBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_catalog_delta_sent_bytes_total", Help: "Bytes of change messages sent (direct and gossiped), without full-state exchanges.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_catalog_rejected_total", Help: "Catalog entries and records refused, by reason (unsigned, bad_certificate, unknown_certificate, identity_mismatch, bad_signature, node_cluster, inconsistent).",
		}, []string{"reason"}),
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	if reg != nil {
		for _, col := range m.collectors() {
			reg.MustRegister(col)
		}
	}
	return m
}

func (m *catalogMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.entries, m.bytesSent, m.bytesRecv, m.decodeErrors, m.deltas, m.sendDrops, m.stateEncodes, m.collected, m.keyOps, m.propagation, m.deadEvents, m.deltaBytes, m.rejected}
}

func (m *catalogMetrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, col := range m.collectors() {
		m.reg.Unregister(col)
	}
}
