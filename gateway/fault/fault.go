package fault

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind is what a fault does; see docs/drills.md for each kind's effect.
type Kind string

// The fault kinds.
const (
	// Kill: the gateway behaves as crashed to all but its admin listener.
	Kill Kind = "kill"
	// Freeze: like Kill, but connections are held without an answer.
	Freeze Kind = "freeze"
	// Blackhole: traffic with Peers (empty: every other cluster) is
	// dropped silently.
	Blackhole Kind = "blackhole"
	// Partition: Blackhole with Peers required.
	Partition Kind = "partition"
	// Latency: writes toward Peers wait Delay ± Jitter.
	Latency Kind = "latency"
	// Loss: Percent of the traffic toward Peers is lost.
	Loss Kind = "loss"
	// Drain: the gateway drains as on shutdown but does not exit.
	Drain Kind = "drain"
)

// Kinds lists every kind, for messages and metrics.
var Kinds = []Kind{Kill, Freeze, Blackhole, Partition, Latency, Loss, Drain}

// Errors callers branch on.
var (
	// ErrOff: faults.enabled is false.
	ErrOff = errors.New("fault injection is off: set faults.enabled: true in this gateway's config")
	// ErrConflict: a fault of that id is in force with another kind or
	// other parameters.
	ErrConflict = errors.New("fault conflicts with the one in force under that id")
	// ErrNotFound: no fault of that id is in force.
	ErrNotFound = errors.New("no such fault")
)

// InvalidError is a request with a missing or wrong field.
type InvalidError struct {
	Field, Problem string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Problem }

// Duration is a time.Duration written in JSON as a Go duration string
// ("50ms").
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"15s\", found %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Spec is a fault as a drill asks for it (POST /v1/faults).
type Spec struct {
	ID      string   `json:"id"`
	Kind    Kind     `json:"kind"`
	Peers   []string `json:"peers,omitempty"`
	Delay   Duration `json:"delay,omitempty"`
	Jitter  Duration `json:"jitter,omitempty"`
	Percent float64  `json:"percent,omitempty"`
	Lease   Duration `json:"lease"`
}

// Fault is a fault in force: its spec and when its lease runs out.
type Fault struct {
	Spec
	Injected time.Time `json:"injected"`
	Expires  time.Time `json:"expires"`
}

// validate checks s against the kind's needs and maxLease; the error is
// an *InvalidError naming the field.
func (s Spec) validate(maxLease time.Duration) error {
	bad := func(field, format string, args ...any) error {
		return &InvalidError{Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	if s.ID == "" {
		return bad("id", "required value missing")
	}
	if len(s.ID) > 200 || strings.ContainsAny(s.ID, "\x00\n\r") {
		return bad("id", "at most 200 characters on one line")
	}
	known := false
	for _, k := range Kinds {
		known = known || k == s.Kind
	}
	if !known {
		names := make([]string, len(Kinds))
		for i, k := range Kinds {
			names[i] = string(k)
		}
		return bad("kind", "want one of %s, found %q", strings.Join(names, ", "), s.Kind)
	}
	for i, p := range s.Peers {
		if p == "" {
			return bad(fmt.Sprintf("peers.%d", i), "empty cluster name")
		}
	}
	switch s.Kind {
	case Partition, Latency, Loss:
		if len(s.Peers) == 0 {
			return bad("peers", "required for kind %s: the clusters it applies to", s.Kind)
		}
	}
	if s.Kind == Latency {
		if s.Delay <= 0 {
			return bad("delay", "must be positive for kind latency, found %s", time.Duration(s.Delay))
		}
		if s.Jitter < 0 || s.Jitter > s.Delay {
			return bad("jitter", "must be between 0 and delay (%s), found %s", time.Duration(s.Delay), time.Duration(s.Jitter))
		}
	}
	if s.Kind == Loss && !(s.Percent > 0 && s.Percent <= 100) {
		return bad("percent", "must be in (0, 100] for kind loss, found %g", s.Percent)
	}
	if s.Lease <= 0 {
		return bad("lease", "must be positive, found %s", time.Duration(s.Lease))
	}
	if time.Duration(s.Lease) > maxLease {
		return bad("lease", "%s is above faults.maxLease (%s)", time.Duration(s.Lease), maxLease)
	}
	return nil
}

// applicable returns s with only the fields its kind takes: a drill may
// send every field with every kind, and what is not used is dropped
// rather than refused (kill, freeze and drain apply to every peer).
func (s Spec) applicable() Spec {
	switch s.Kind {
	case Kill, Freeze, Drain:
		s.Peers = nil
	}
	if s.Kind != Latency {
		s.Delay, s.Jitter = 0, 0
	}
	if s.Kind != Loss {
		s.Percent = 0
	}
	return s
}

// sameFault reports whether a renewal of a asks for the same fault as b.
func sameFault(a, b Spec) bool {
	if a.Kind != b.Kind || a.Delay != b.Delay || a.Jitter != b.Jitter || a.Percent != b.Percent || len(a.Peers) != len(b.Peers) {
		return false
	}
	for i := range a.Peers {
		if a.Peers[i] != b.Peers[i] {
			return false
		}
	}
	return true
}
