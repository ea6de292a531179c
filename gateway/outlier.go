package gateway

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/gateway/wire"
)

// clock tells the time to code whose behaviour depends on it, so tests can
// move it by hand.
type clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// outlierKey names one thing that can be ejected: a local endpoint (service
// empty: the endpoint address is the same socket whichever service asks),
// or a remote cluster's gateway for one service target.
type outlierKey struct {
	service string // wire.Target.String() for a remote gateway; "" for a local endpoint
	addr    string // endpoint or gateway data address
}

func endpointKey(addr string) outlierKey { return outlierKey{addr: addr} }
func gatewayKey(t wire.Target, addr string) outlierKey {
	return outlierKey{service: t.String(), addr: addr}
}

// outlierEntry is what is known about a key that failed since its last
// success. Keys that succeed have no entry.
type outlierEntry struct {
	service, cluster string // metric labels: the target of the last failure and the cluster it is in
	local            bool
	fails            int       // consecutive connect failures
	ejections        int       // ejections since the last success
	until            time.Time // ejected until
	last             time.Time // last failure
}

// outliers is passive outlier detection. A key that fails
// cfg.ConsecutiveFailures connects in a row is ejected for
// cfg.BaseEjection; a key whose ejection has ended is on probation: its
// next failure ejects it again, for twice as long each time up to
// cfg.MaxEjection. One success forgets everything about the key. An
// ejected key is never removed from the candidates: it is only tried after
// every other one.
type outliers struct {
	cfg   OutlierConfig
	clock clock
	log   *slog.Logger
	count *prometheus.CounterVec // strait_gateway_ejections_total, may be nil

	mu sync.Mutex
	m  map[outlierKey]*outlierEntry
}

// maxOutlierEntries bounds the memory of keys that failed and were never
// seen again (endpoints that went away); above it, entries that are not
// ejected are dropped.
const maxOutlierEntries = 8192

func newOutliers(cfg OutlierConfig, clk clock, log *slog.Logger, count *prometheus.CounterVec) *outliers {
	return &outliers{cfg: cfg, clock: clk, log: log, count: count, m: map[outlierKey]*outlierEntry{}}
}

// success records a connect that worked.
func (o *outliers) success(k outlierKey) {
	o.mu.Lock()
	e, ok := o.m[k]
	if ok {
		delete(o.m, k)
	}
	o.mu.Unlock()
	if ok && e.ejections > 0 {
		o.log.Info("outlier answered again", "service", e.service, "target_cluster", e.cluster, "addr", k.addr, "ejections", e.ejections)
	}
}

// failure records a failed connect and reports whether it ejected k.
func (o *outliers) failure(k outlierKey, service, cluster string, local bool) bool {
	now := o.clock.Now()
	o.mu.Lock()
	e, ok := o.m[k]
	if !ok {
		if len(o.m) >= maxOutlierEntries {
			o.pruneLocked(now)
		}
		e = &outlierEntry{}
		o.m[k] = e
	}
	e.service, e.cluster, e.local, e.last = service, cluster, local, now
	e.fails++
	if now.Before(e.until) || e.fails < o.cfg.ConsecutiveFailures {
		o.mu.Unlock()
		return false
	}
	e.ejections++
	d := o.ejectionTime(e.ejections)
	e.until = now.Add(d)
	fails, n := e.fails, e.ejections
	o.mu.Unlock()
	if o.count != nil {
		o.count.WithLabelValues(service, cluster).Inc()
	}
	o.log.Warn("outlier ejected", "service", service, "target_cluster", cluster, "addr", k.addr, "local", local,
		"consecutive_failures", fails, "ejection", n, "for", d)
	return true
}

// ejectionTime is the length of the n-th ejection in a row.
func (o *outliers) ejectionTime(n int) time.Duration {
	d := o.cfg.BaseEjection
	for i := 1; i < n && d < o.cfg.MaxEjection; i++ {
		d *= 2
	}
	return min(d, o.cfg.MaxEjection)
}

func (o *outliers) pruneLocked(now time.Time) {
	for k, e := range o.m {
		if !now.Before(e.until) {
			delete(o.m, k)
		}
	}
}

// ejected reports which of keys are ejected now.
func (o *outliers) ejected(keys []outlierKey, out []bool) {
	now := o.clock.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.m) == 0 {
		clear(out)
		return
	}
	for i, k := range keys {
		e, ok := o.m[k]
		out[i] = ok && now.Before(e.until)
	}
}

func (o *outliers) isEjected(k outlierKey) bool {
	var out [1]bool
	o.ejected([]outlierKey{k}, out[:])
	return out[0]
}

// EjectedStatus is one local endpoint or remote gateway that is ejected
// now: tried only after every other candidate until Until.
type EjectedStatus struct {
	// Service is the target ("namespace/name:port") whose connect failed
	// last.
	Service string `json:"service"`
	// Cluster is the cluster the endpoint or gateway is in.
	Cluster string `json:"cluster"`
	// Endpoint is a local endpoint's address; Gateway a remote gateway's.
	Endpoint string `json:"endpoint,omitempty"`
	Gateway  string `json:"gateway,omitempty"`
	// Failures are the consecutive failed connects so far.
	Failures int `json:"failures"`
	// Ejections counts the ejections in a row, without a success between.
	Ejections int       `json:"ejections"`
	Until     time.Time `json:"until"`
}

// status lists what is ejected now, by cluster, service and address.
func (o *outliers) status() []EjectedStatus {
	now := o.clock.Now()
	o.mu.Lock()
	var out []EjectedStatus
	for k, e := range o.m {
		if !now.Before(e.until) {
			continue
		}
		s := EjectedStatus{Service: e.service, Cluster: e.cluster, Failures: e.fails, Ejections: e.ejections, Until: e.until}
		if e.local {
			s.Endpoint = k.addr
		} else {
			s.Gateway = k.addr
		}
		out = append(out, s)
	}
	o.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Endpoint+a.Gateway < b.Endpoint+b.Gateway
	})
	return out
}

// ejectedCollector exports strait_gateway_ejected from the outliers it is
// given once they exist; expiry is evaluated when it is scraped.
type ejectedCollector struct {
	desc *prometheus.Desc
	src  atomic.Pointer[outliers]
}

func newEjectedCollector() *ejectedCollector {
	return &ejectedCollector{desc: prometheus.NewDesc("strait_gateway_ejected",
		"Local endpoints and remote gateways ejected now by passive outlier detection, by service and the cluster they are in.",
		[]string{"service", "cluster"}, nil)}
}

func (c *ejectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *ejectedCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.src.Load()
	if o == nil {
		return
	}
	type labels struct{ service, cluster string }
	n := map[labels]int{}
	for _, s := range o.status() {
		n[labels{s.Service, s.Cluster}]++
	}
	for l, v := range n {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), l.service, l.cluster)
	}
}
