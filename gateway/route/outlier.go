package route

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/straitmesh/strait/gateway/wire"
)

// Clock tells the time to code whose behaviour depends on it, so tests can
// move it by hand.
type Clock interface {
	Now() time.Time
}

type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

// OutlierKey names one thing that can be ejected: a local endpoint (service
// empty: the endpoint address is the same socket whichever service asks),
// or a remote cluster's gateway for one service target.
type OutlierKey struct {
	service string // wire.Target.String() for a remote gateway; "" for a local endpoint
	addr    string // endpoint or gateway data address
}

func EndpointKey(addr string) OutlierKey { return OutlierKey{addr: addr} }
func GatewayKey(t wire.Target, addr string) OutlierKey {
	return OutlierKey{service: t.String(), addr: addr}
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

// Outliers is passive outlier detection. A key that fails
// cfg.ConsecutiveFailures connects in a row is ejected for
// cfg.BaseEjection; a key whose ejection has ended is on probation: its
// next failure ejects it again, for twice as long each time up to
// cfg.MaxEjection. One success forgets everything about the key. An
// ejected key is never removed from the candidates: it is only tried after
// every other one.
type Outliers struct {
	cfg   OutlierConfig
	clock Clock
	log   *slog.Logger
	count *prometheus.CounterVec // strait_gateway_ejections_total, may be nil

	mu sync.Mutex
	m  map[OutlierKey]*outlierEntry
}

// maxOutlierEntries bounds the memory of keys that failed and were never
// seen again (endpoints that went away); above it, entries that are not
// ejected are dropped.
const maxOutlierEntries = 8192

func NewOutliers(cfg OutlierConfig, clk Clock, log *slog.Logger, count *prometheus.CounterVec) *Outliers {
	return &Outliers{cfg: cfg, clock: clk, log: log, count: count, m: map[OutlierKey]*outlierEntry{}}
}

// Success records a connect that worked.
func (o *Outliers) Success(k OutlierKey) {
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

// Failure records a failed connect and reports whether it ejected k.
func (o *Outliers) Failure(k OutlierKey, service, cluster string, local bool) bool {
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
func (o *Outliers) ejectionTime(n int) time.Duration {
	d := o.cfg.BaseEjection
	for i := 1; i < n && d < o.cfg.MaxEjection; i++ {
		d *= 2
	}
	return min(d, o.cfg.MaxEjection)
}

func (o *Outliers) pruneLocked(now time.Time) {
	for k, e := range o.m {
		if !now.Before(e.until) {
			delete(o.m, k)
		}
	}
}

// Ejected reports which of keys are Ejected now.
func (o *Outliers) Ejected(keys []OutlierKey, out []bool) {
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

func (o *Outliers) IsEjected(k OutlierKey) bool {
	var out [1]bool
	o.Ejected([]OutlierKey{k}, out[:])
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

// Status lists what is ejected now, by cluster, service and address.
func (o *Outliers) Status() []EjectedStatus {
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

// EjectedCollector exports strait_gateway_ejected from the outliers it is
// given once they exist; expiry is evaluated when it is scraped.
type EjectedCollector struct {
	desc *prometheus.Desc
	src  atomic.Pointer[Outliers]
}

func NewEjectedCollector() *EjectedCollector {
	return &EjectedCollector{desc: prometheus.NewDesc("strait_gateway_ejected",
		"Local endpoints and remote gateways ejected now by passive outlier detection, by service and the cluster they are in.",
		[]string{"service", "destination_cluster"}, nil)}
}

func (c *EjectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *EjectedCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.src.Load()
	if o == nil {
		return
	}
	type labels struct{ service, cluster string }
	n := map[labels]int{}
	for _, s := range o.Status() {
		n[labels{s.Service, s.Cluster}]++
	}
	for l, v := range n {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), l.service, l.cluster)
	}
}

// OutlierConfig sets passive outlier ejection: a local endpoint, or a
// remote cluster's gateway for one service, that fails this many connects
// in a row is tried only after every other candidate for a while.
type OutlierConfig struct {
	// ConsecutiveFailures that eject. Default 3.
	ConsecutiveFailures int `mapstructure:"consecutiveFailures"`
	// BaseEjection is the first ejection's length; it doubles with each
	// further ejection without a success in between. Default 5s.
	BaseEjection time.Duration `mapstructure:"baseEjection"`
	// MaxEjection caps the ejection time. Default 5m.
	MaxEjection time.Duration `mapstructure:"maxEjection"`
}

// DefaultOutlierConfig ejects after 3 failed connects in a row, for 5s,
// doubling up to 5m.
func DefaultOutlierConfig() OutlierConfig {
	return OutlierConfig{ConsecutiveFailures: 3, BaseEjection: 5 * time.Second, MaxEjection: 5 * time.Minute}
}

// SetRand replaces the selector's uniform random source in [0, 1), for
// deterministic orders in tests.
func (s *Selector) SetRand(float func() float64) { s.float = float }
