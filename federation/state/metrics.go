package state

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics exports the routing state's health: Raft role, leader,
// indexes and staleness are read at scrape time; apply latency and write
// outcomes are counted as they happen.
type storeMetrics struct {
	reg          prometheus.Registerer
	collector    *storeCollector
	applySeconds prometheus.Histogram
	writes       *prometheus.CounterVec
	forwarded    prometheus.Counter
	denied       *prometheus.CounterVec
	signed       *prometheus.CounterVec
}

func newStoreMetrics(s *Store, reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		reg:       reg,
		collector: &storeCollector{s: s},
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strait_state_apply_seconds",
			Help:    "Time from proposing a routing-state change on the leader until it is committed and applied.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 15),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_state_writes_total", Help: "Routing-state writes received by this gateway, by result (ok, invalid, error).",
		}, []string{"result"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strait_state_forwarded_total", Help: "Routing-state writes this gateway forwarded to the leader.",
		}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_state_denied_total", Help: "Control API changes refused for the caller's identity, by RPC and rule.",
		}, []string{"rpc", "rule"}),
		signed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_state_certificates_signed_total", Help: "Certificates this gateway's intermediate CA signed, by how the request was authorized (token, renewal).",
		}, []string{"how"}),
	}
	for _, how := range []string{"token", "renewal"} {
		m.signed.WithLabelValues(how)
	}
	if reg != nil {
		for _, c := range m.all() {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *storeMetrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.collector, m.applySeconds, m.writes, m.forwarded, m.denied, m.signed}
}

func (m *storeMetrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.all() {
		m.reg.Unregister(c)
	}
}

var (
	descState   = prometheus.NewDesc("strait_state_raft_state", "Raft state of this gateway: 1 for the current one.", []string{"state"}, nil)
	descLeader  = prometheus.NewDesc("strait_state_leader", "1 if this gateway is the routing-state leader.", nil, nil)
	descHasLdr  = prometheus.NewDesc("strait_state_has_leader", "1 if this gateway knows a leader.", nil, nil)
	descCommit  = prometheus.NewDesc("strait_state_commit_index", "Raft commit index known to this gateway.", nil, nil)
	descApplied = prometheus.NewDesc("strait_state_applied_index", "Raft index of the routing state this gateway routes on.", nil, nil)
	descStale   = prometheus.NewDesc("strait_state_stale", "1 if the routing state may be stale (no leader contact for longer than state.staleAfter).", nil, nil)
	descRecords = prometheus.NewDesc("strait_state_records", "Routing-state records, by kind.", []string{"kind"}, nil)
)

type storeCollector struct{ s *Store }

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descLeader, descHasLdr, descCommit, descApplied, descStale, descRecords} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	st := s.raft.State()
	for _, x := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(st == x), x.String())
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b2f(st == raft.Leader))
	ch <- prometheus.MustNewConstMetric(descHasLdr, prometheus.GaugeValue, b2f(s.Leader() != ""))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(s.raft.CommitIndex()))
	v := s.fsm.View()
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(v.Index))
	_, stale := s.staleness()
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, b2f(stale))
	for _, k := range append(UserKinds(), KindMember) {
		ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(v.Count(k)), k)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
