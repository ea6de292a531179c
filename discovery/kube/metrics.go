package kube

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the strait_discovery_kube_* series.
type metrics struct {
	reachable   prometheus.Gauge
	apiErrors   prometheus.Counter
	watchErrors *prometheus.CounterVec
	services    prometheus.Gauge
	updates     prometheus.Counter
	problems    *prometheus.GaugeVec
	writes      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reachable: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_discovery_kube_api_reachable",
			Help: "1 while the Kubernetes API server answers discovery's requests; 0 while the last good service list is served without it."}),
		apiErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_discovery_kube_api_errors_total",
			Help: "Requests to the Kubernetes API server that got no answer or a 5xx."}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_discovery_kube_watch_errors_total",
			Help: "Failed lists and watches of discovery's informers, by resource."}, []string{"resource"}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_discovery_kube_services",
			Help: "Services exported from Kubernetes (ServiceExports that are valid)."}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_discovery_kube_updates_total",
			Help: "Changes of the exported service list published to the gateway."}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_discovery_kube_export_problems",
			Help: "ServiceExports with a problem, by reason: NoService, InvalidServiceType, InvalidLabels, NoTCPPorts, TooManyPorts (not exported); NoSelector, PortConflict (exported)."},
			[]string{"reason"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_discovery_kube_writes_total",
			Help: "Writes to the Kubernetes API (serviceexports/status, serviceimports) by result: ok, conflict, forbidden, error, foreign (a ServiceImport of another owner left alone)."},
			[]string{"resource", "result"}),
	}
	m.reachable.Set(1)
	return m
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.reachable, m.apiErrors, m.watchErrors, m.services, m.updates, m.problems, m.writes}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for i, c := range m.all() {
		if err := r.Register(c); err != nil {
			for _, d := range m.all()[:i] {
				r.Unregister(d)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.all() {
		r.Unregister(c)
	}
}
