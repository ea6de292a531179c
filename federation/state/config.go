package state

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/straitmesh/strait/internal/configfile"
)

// Config configures a gateway's part in the Raft-backed routing
// state. An empty DataDir turns the routing state off.
type Config struct {
	// DataDir holds the Raft log (raft-wal), snapshots and the last applied
	// state. Empty disables the routing state and the control API.
	DataDir string `mapstructure:"dataDir"`
	// Bind is the mTLS Raft listener. Default 0.0.0.0:8300.
	Bind string `mapstructure:"bind"`
	// Advertise is the Raft address other gateways dial. Default: the bind
	// address; required when Bind is on all interfaces.
	Advertise string `mapstructure:"advertise"`
	// ControlAdvertise is the control API address other gateways forward
	// writes to. Default: the host of Advertise with the port of
	// listen.control.
	ControlAdvertise string `mapstructure:"controlAdvertise"`
	// Voter makes this gateway a Raft voter. Run 3 or 5 voters spread over
	// regions; every other gateway is a non-voting replica. Default false.
	Voter bool `mapstructure:"voter"`
	// BootstrapExpect is how many voters form a new federation together: a
	// voter without state waits until it has seen that many voters without
	// state (itself included) and then they bootstrap. 0 (default) never
	// bootstraps; the gateway joins an existing federation instead.
	BootstrapExpect int `mapstructure:"bootstrapExpect"`
	// Join lists control API addresses (host:port) of other gateways. A
	// gateway asks them to add it to the federation, retrying until one
	// does; voters also find their bootstrap peers through them.
	Join []string `mapstructure:"join"`
	// HeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it starts an election; the leader's lease is half
	// of it. A leader's loss is noticed after 1-2x this. Lower means faster
	// failover and more elections on slow links. Default 700ms.
	HeartbeatTimeout time.Duration `mapstructure:"heartbeatTimeout"`
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one (then the log is compacted). Default 1024.
	SnapshotThreshold uint64 `mapstructure:"snapshotThreshold"`
	// TrailingLogs is how many entries stay in the log after a snapshot, so
	// lagging replicas catch up without a full snapshot. Default 1024.
	TrailingLogs uint64 `mapstructure:"trailingLogs"`
	// StaleAfter is how long without contact with a leader before the
	// gateway reports its routing state as possibly stale. Default 5s.
	StaleAfter time.Duration `mapstructure:"staleAfter"`
	// CA makes a voter a CA server: while it leads it signs certificate
	// requests (the control API's SignCertificate) with an intermediate
	// of the federation's root. Off unless both files are set.
	CA CAConfig `mapstructure:"ca"`
}

// CAConfig is the intermediate CA a voter signs certificates with.
type CAConfig struct {
	// Intermediate is a PEM file: the intermediate certificate, then the
	// root it chains to (`strait ca intermediate` writes intermediate.pem).
	Intermediate string `mapstructure:"intermediate"`
	// IntermediateKey is the intermediate's PEM private key
	// (intermediate-key.pem).
	IntermediateKey string `mapstructure:"intermediateKey"`
	// Lifetime is how long the certificates it signs are valid: what a
	// request gets unless it asks for less. Default 24h; at least 1s,
	// at most 30 days (0 reads as the default).
	Lifetime time.Duration `mapstructure:"lifetime"`
}

// Enabled reports whether a CA is configured.
func (c CAConfig) Enabled() bool { return c.Intermediate != "" || c.IntermediateKey != "" }

// DefaultConfig returns the documented defaults (routing state off
// until DataDir is set).
func DefaultConfig() Config {
	return Config{
		Bind: "0.0.0.0:8300", HeartbeatTimeout: 700 * time.Millisecond,
		SnapshotThreshold: 1024, TrailingLogs: 1024, StaleAfter: 5 * time.Second,
		CA: CAConfig{Lifetime: 24 * time.Hour},
	}
}

// Enabled reports whether the routing state is configured.
func (c Config) Enabled() bool { return c.DataDir != "" }

// Validate reports every problem with c, each naming its key under prefix.
func (c Config) Validate(prefix string) error {
	if !c.Enabled() {
		if c.Voter || c.BootstrapExpect > 0 || len(c.Join) > 0 {
			return configfile.Errorf(prefix+"dataDir", "required when %svoter, %sbootstrapExpect or %sjoin is set: the routing state needs a directory", prefix, prefix, prefix)
		}
		return nil
	}
	var errs []error
	host, _, err := configfile.HostPort(c.Bind)
	if err != nil {
		errs = append(errs, configfile.Errorf(prefix+"bind", "%v", err))
	}
	if c.Advertise != "" {
		if ah, ap, err := configfile.HostPort(c.Advertise); err != nil {
			errs = append(errs, configfile.Errorf(prefix+"advertise", "%v", err))
		} else if configfile.Unspecified(ah) || ap == 0 {
			errs = append(errs, configfile.Errorf(prefix+"advertise", "want an address others can dial, found %q", c.Advertise))
		}
	} else if err == nil && configfile.Unspecified(host) {
		errs = append(errs, configfile.Errorf(prefix+"advertise", "required when %sbind listens on all interfaces (%s): other gateways need a Raft address to dial", prefix, c.Bind))
	}
	if c.ControlAdvertise != "" {
		if h, p, err := configfile.HostPort(c.ControlAdvertise); err != nil {
			errs = append(errs, configfile.Errorf(prefix+"controlAdvertise", "%v", err))
		} else if configfile.Unspecified(h) || p == 0 {
			errs = append(errs, configfile.Errorf(prefix+"controlAdvertise", "want an address others can dial, found %q", c.ControlAdvertise))
		}
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, configfile.Errorf(fmt.Sprintf("%sjoin.%d", prefix, i), "want host:port of a control API, found %q", j))
		}
	}
	switch {
	case c.BootstrapExpect < 0:
		errs = append(errs, configfile.Errorf(prefix+"bootstrapExpect", "must not be negative, found %d", c.BootstrapExpect))
	case c.BootstrapExpect > 0 && !c.Voter:
		errs = append(errs, configfile.Errorf(prefix+"bootstrapExpect", "only voters bootstrap: set %svoter: true or remove bootstrapExpect", prefix))
	case c.BootstrapExpect > 7:
		errs = append(errs, configfile.Errorf(prefix+"bootstrapExpect", "%d voters is more than Raft should have; use 3 or 5", c.BootstrapExpect))
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		errs = append(errs, configfile.Errorf(prefix+"join", "required unless %sbootstrapExpect is set: a gateway must bootstrap or join a federation", prefix))
	}
	if c.HeartbeatTimeout < 50*time.Millisecond {
		errs = append(errs, configfile.Errorf(prefix+"heartbeatTimeout", "must be at least 50ms, found %s", c.HeartbeatTimeout))
	}
	if c.StaleAfter <= 0 {
		errs = append(errs, configfile.Errorf(prefix+"staleAfter", "must be positive, found %s", c.StaleAfter))
	}
	if c.CA.Enabled() {
		switch {
		case c.CA.Intermediate == "":
			errs = append(errs, configfile.Errorf(prefix+"ca.intermediate", "required with %sca.intermediateKey: the intermediate certificate and its root (PEM)", prefix))
		case c.CA.IntermediateKey == "":
			errs = append(errs, configfile.Errorf(prefix+"ca.intermediateKey", "required with %sca.intermediate: the intermediate's private key (PEM)", prefix))
		}
		if !c.Voter {
			errs = append(errs, configfile.Errorf(prefix+"ca.intermediate", "only voters sign certificates (the leader does): set %svoter: true or remove %sca", prefix, prefix))
		}
	}
	if c.CA.Lifetime != 0 && (c.CA.Lifetime < time.Second || c.CA.Lifetime > 30*24*time.Hour) {
		errs = append(errs, configfile.Errorf(prefix+"ca.lifetime", "want 1s to 720h, found %s", c.CA.Lifetime))
	}
	if c.SnapshotThreshold == 0 {
		errs = append(errs, configfile.Errorf(prefix+"snapshotThreshold", "must be positive"))
	}
	return errors.Join(errs...)
}
