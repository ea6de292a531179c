package sovereignty

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Audit record kinds.
const (
	// KindDecision records a refused flow, or a candidate cluster removed
	// from a flow that went elsewhere.
	KindDecision = "decision"
	// KindPolicy records a policy taken into force or an update refused.
	KindPolicy = "policy"
	// KindAccess records a change of the routing state refused for the
	// caller's identity (Direction control, Entry the RPC).
	KindAccess = "access"
	// KindApproval records a step of a four-eyes change of the routing
	// state: Decision proposed, approved or applied; Policy names the
	// record and the digest of its proposed value.
	KindApproval = "approval"
	// KindIdentity records an outbound connection refused because the
	// gateway at a peer's address presented a certificate for another
	// cluster or region than the catalog lists there.
	KindIdentity = "identity"
)

// Audit decisions.
const (
	DecisionDeny     = "deny"     // the flow was refused
	DecisionFiltered = "filtered" // a candidate was removed; the flow went to an allowed cluster
	DecisionApplied  = "applied"  // a policy version came into force
	DecisionRejected = "rejected" // a policy update failed validation; the last good one stays
)

// Record is one audit line. Every field is documented in docs/residency.md.
type Record struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Gateway   string    `json:"gateway"` // cluster of the gateway writing the record
	Region    string    `json:"region"`
	Decision  string    `json:"decision"`
	Direction string    `json:"direction,omitempty"` // outbound or inbound
	Entry     string    `json:"entry,omitempty"`     // connect, http, import, passthrough or inbound
	Flow      *FlowInfo `json:"flow,omitempty"`
	// Status is the HTTP status a refused CONNECT or HTTP client got
	// (403: the policy allows no cluster; 503: allowed clusters are down).
	Status     int             `json:"status,omitempty"`
	Rule       string          `json:"rule,omitempty"`   // Rule.ID
	RuleAt     string          `json:"ruleAt,omitempty"` // Rule.Path at Rule.At
	Class      string          `json:"class,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Candidates []CandidateInfo `json:"candidates,omitempty"`
	Policy     PolicyInfo      `json:"policy"`
	Error      string          `json:"error,omitempty"`
	// Caller is the verified identity (SPIFFE ID) an access record is
	// about.
	Caller string `json:"caller,omitempty"`
}

// FlowInfo is the flow a decision record is about.
type FlowInfo struct {
	Service         string            `json:"service"` // namespace/name
	Port            int               `json:"port,omitempty"`
	Protocol        string            `json:"protocol"` // http (headers were read) or tcp
	SourceCluster   string            `json:"sourceCluster"`
	SourceRegion    string            `json:"sourceRegion"`
	SourceNamespace string            `json:"sourceNamespace,omitempty"`
	Classes         []string          `json:"classes"`
	Headers         map[string]string `json:"headers,omitempty"` // classifying headers only
	// Unreadable: the gateway could not read the flow's bytes, so it
	// carries every class that matches headers (unless unreadable: allow).
	Unreadable bool `json:"unreadable,omitempty"`
}

// CandidateInfo is one cluster considered for a flow and what the policy said.
type CandidateInfo struct {
	Cluster  string `json:"cluster"`
	Region   string `json:"region"`
	Decision string `json:"decision"` // allow, deny, or down (allowed but not reachable)
	Rule     string `json:"rule,omitempty"`
}

// PolicyInfo names the policy a record cites.
type PolicyInfo struct {
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	Digest  string `json:"digest"`
	Source  string `json:"source,omitempty"` // where it came from: file:/path, raft
	// Previous is the version that was in force before an applied change.
	Previous uint64 `json:"previous,omitempty"`
}

// AuditConfig says where audit records go. The zero value writes them to
// the gateway's log.
type AuditConfig struct {
	// File receives one JSON object per line. Default: none (records go to
	// the log as "residency audit" lines).
	File string `mapstructure:"file"`
	// MaxSizeMB rotates the file when it would grow past this many
	// megabytes. Default 100.
	MaxSizeMB int `mapstructure:"maxSizeMB"`
	// MaxBackups is how many rotated files to keep; 0 keeps all. Default 10.
	MaxBackups int `mapstructure:"maxBackups"`
	// MaxAgeDays removes rotated files older than this; 0 keeps them. Default 0.
	MaxAgeDays int `mapstructure:"maxAgeDays"`
	// Compress gzips rotated files. Default false.
	Compress bool `mapstructure:"compress"`
}

// DefaultAuditConfig returns the documented defaults.
func DefaultAuditConfig() AuditConfig { return AuditConfig{MaxSizeMB: 100, MaxBackups: 10} }

// AuditorOptions carries an Auditor's dependencies.
type AuditorOptions struct {
	Config AuditConfig
	// Writer, when set, receives the records instead of Config.File.
	Writer io.Writer
	// Cluster and Region name the gateway in every record.
	Cluster, Region string
	// Registerer receives the residency metrics. Default: none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Tap, when set, sees every record once it is stamped, before it is
	// written: the gateway's live view follows refusals with it. It is
	// called on the caller's goroutine (the data plane's), so it must
	// not block.
	Tap func(Record)
}

// Auditor writes audit records as JSON lines and counts decisions. It is
// safe for concurrent use.
type Auditor struct {
	cluster, region string
	now             func() time.Time
	log             *slog.Logger
	reg             prometheus.Registerer
	tap             func(Record)

	mu     sync.Mutex
	w      io.Writer // nil: the log
	closer io.Closer

	decisions *prometheus.CounterVec
	records   *prometheus.CounterVec
	errors    prometheus.Counter
	version   prometheus.Gauge
	updates   *prometheus.CounterVec
	refused   *prometheus.CounterVec
}

// NewAuditor opens the audit file (creating its directory) and registers
// the residency metrics.
func NewAuditor(opts AuditorOptions) (*Auditor, error) {
	a := &Auditor{cluster: opts.Cluster, region: opts.Region, now: opts.Now, log: opts.Logger, reg: opts.Registerer, w: opts.Writer, tap: opts.Tap}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.w == nil && opts.Config.File != "" {
		if err := os.MkdirAll(filepath.Dir(opts.Config.File), 0o750); err != nil {
			return nil, fmt.Errorf("audit file %s: %w", opts.Config.File, err)
		}
		f, err := os.OpenFile(opts.Config.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("audit file %s: %w", opts.Config.File, err)
		}
		f.Close()
		lj := &lumberjack.Logger{Filename: opts.Config.File, MaxSize: opts.Config.MaxSizeMB,
			MaxBackups: opts.Config.MaxBackups, MaxAge: opts.Config.MaxAgeDays, Compress: opts.Config.Compress}
		a.w, a.closer = lj, lj
	}
	a.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strait_residency_decisions_total",
		Help: "Residency decisions the gateway acted on, per candidate cluster: decision allow or deny, the class and rule that decided.",
	}, []string{"decision", "class", "rule"})
	a.records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strait_residency_audit_records_total", Help: "Audit records written, by kind and decision.",
	}, []string{"kind", "decision"})
	a.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "strait_residency_audit_write_errors_total", Help: "Audit records that could not be written.",
	})
	a.version = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "strait_residency_policy_version", Help: "Version of the residency policy in force (0: none).",
	})
	a.updates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strait_residency_policy_updates_total", Help: "Residency policy updates, by result: applied or rejected.",
	}, []string{"result"})
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "strait_residency_refused_flows_total", Help: "Flows refused for residency, by direction and HTTP status (403 not allowed anywhere, 503 allowed clusters down).",
	}, []string{"direction", "status"})
	// Every refusal series exists from the start, so increase() over a
	// window sees the first refusal too.
	for _, d := range []string{"inbound", "outbound"} {
		for _, st := range []string{"403", "503"} {
			a.refused.WithLabelValues(d, st)
		}
	}
	if a.reg != nil {
		for _, c := range a.collectors() {
			if err := a.reg.Register(c); err != nil {
				a.Close()
				return nil, fmt.Errorf("register residency metrics: %w", err)
			}
		}
	}
	return a, nil
}

func (a *Auditor) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.decisions, a.records, a.errors, a.version, a.updates, a.refused}
}

// Count counts one decision the gateway acted on.
func (a *Auditor) Count(d Decision) {
	outcome := "deny"
	if d.Allow {
		outcome = "allow"
	}
	a.decisions.WithLabelValues(outcome, d.Rule.Class, d.Rule.ID).Inc()
}

// Refused counts one refused flow.
func (a *Auditor) Refused(direction string, status int) {
	a.refused.WithLabelValues(direction, fmt.Sprint(status)).Inc()
}

// Write stamps rec with the time and the gateway, and writes it.
func (a *Auditor) Write(rec Record) {
	rec.Time = a.now().UTC()
	rec.Gateway, rec.Region = a.cluster, a.region
	b, err := json.Marshal(rec)
	if err != nil {
		a.errors.Inc()
		a.log.Error("encode audit record", "err", err)
		return
	}
	a.records.WithLabelValues(rec.Kind, rec.Decision).Inc()
	if a.tap != nil {
		a.tap(rec)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w == nil {
		a.log.Info("residency audit", "record", string(b))
		return
	}
	if _, err := a.w.Write(append(b, '\n')); err != nil {
		a.errors.Inc()
		a.log.Error("write audit record", "err", err)
	}
}

// PolicyApplied records that a policy version came into force.
func (a *Auditor) PolicyApplied(p PolicyInfo) {
	a.version.Set(float64(p.Version))
	a.updates.WithLabelValues(DecisionApplied).Inc()
	a.Write(Record{Kind: KindPolicy, Decision: DecisionApplied, Policy: p})
}

// PolicyRejected records an update that failed; current is the policy
// that stays in force.
func (a *Auditor) PolicyRejected(current PolicyInfo, source string, err error) {
	a.updates.WithLabelValues(DecisionRejected).Inc()
	current.Source = source
	a.Write(Record{Kind: KindPolicy, Decision: DecisionRejected, Policy: current, Error: err.Error()})
}

// Close unregisters the metrics and closes the file.
func (a *Auditor) Close() error {
	if a.reg != nil {
		for _, c := range a.collectors() {
			a.reg.Unregister(c)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closer != nil {
		err := a.closer.Close()
		a.closer, a.w = nil, io.Discard
		if err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("close audit file: %w", err)
		}
	}
	return nil
}
