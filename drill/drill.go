package drill

import (
	"fmt"
	"time"
)

// APIVersion is the drill file version this package reads.
const APIVersion = "strait.io/v1"

// Kind is the kind of a drill document.
const Kind = "Drill"

// Limits a drill file must keep within.
const (
	// MaxFileBytes is the largest drill file read.
	MaxFileBytes = 1 << 20
	// MaxRate is the highest rate of one traffic entry, per second.
	MaxRate = 10_000
	// MaxDuration is the longest drill.
	MaxDuration = 24 * time.Hour
)

// Protocols of a traffic entry.
const (
	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
	ProtocolTCP  = "tcp"
)

// FaultKind is what a timeline step does.
type FaultKind string

// Fault kinds, and restore, which undoes an earlier step.
const (
	// Kill stops a cluster's gateways (or one of them) at once, as a crash.
	Kill FaultKind = "kill"
	// Freeze stops a cluster's gateways (or one of them) from answering
	// while their connections stay open.
	Freeze FaultKind = "freeze"
	// Blackhole drops every packet to and from a cluster.
	Blackhole FaultKind = "blackhole"
	// Partition cuts two regions or two clusters off from each other.
	Partition FaultKind = "partition"
	// Latency adds a delay, with jitter, to the link between two clusters.
	Latency FaultKind = "latency"
	// Loss drops a percentage of the packets on the link between two clusters.
	Loss FaultKind = "loss"
	// Drain takes a cluster's gateways out gracefully, as a rolling
	// restart or a scale-down does.
	Drain FaultKind = "drain"
	// LoseRegion takes down every cluster of a region.
	LoseRegion FaultKind = "lose-region"
	// LoseCloud takes down every cluster of a cloud.
	LoseCloud FaultKind = "lose-cloud"
	// Restore undoes an earlier step.
	Restore FaultKind = "restore"
)

// FaultKinds lists every kind a step may have, in the order documented.
var FaultKinds = []FaultKind{Kill, Freeze, Blackhole, Partition, Latency, Loss, Drain, LoseRegion, LoseCloud, Restore}

// Drill is a parsed and validated drill file: the traffic to drive, the
// faults to inject and undo, what must hold, and when to give up.
type Drill struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Duration    time.Duration `json:"duration"` // the whole drill, from its start
	Traffic     []Traffic     `json:"traffic"`
	Timeline    []Step        `json:"timeline"`
	Expect      Expect        `json:"expect"`
	Stop        Stop          `json:"stop"`
}

// Traffic is one stream of requests (or connections, for tcp) the drill
// drives from clients in the given clusters to one service port.
type Traffic struct {
	Name     string            `json:"name"`     // unique in the drill; "traffic[i]" when not written
	From     []string          `json:"from"`     // clusters the clients run in
	To       Service           `json:"to"`       // namespace/name:port
	Protocol string            `json:"protocol"` // http (default), grpc or tcp
	Rate     int               `json:"rate"`     // requests (connections) per second, 1..MaxRate
	Start    time.Duration     `json:"start"`    // offset from the drill's start; default 0
	Duration time.Duration     `json:"duration"` // default: to the end of the drill
	Path     string            `json:"path,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"` // http and grpc only
}

// Service is a service port as `namespace/name:port`.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Port      int    `json:"port,omitempty"` // 0 where a port is not asked for
}

// Key returns "namespace/name".
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// String returns "namespace/name:port", or "namespace/name" without a port.
func (s Service) String() string {
	if s.Port == 0 {
		return s.Key()
	}
	return fmt.Sprintf("%s:%d", s.Key(), s.Port)
}

// Step is one entry of the timeline: a fault, or the restore of an
// earlier one, at an offset from the drill's start. Which target fields
// are set depends on Kind.
type Step struct {
	Name string        `json:"name"`
	At   time.Duration `json:"at"`
	Kind FaultKind     `json:"kind"`
	// Cluster is the target of kill, freeze, blackhole and drain.
	Cluster string `json:"cluster,omitempty"`
	// Gateway narrows kill and freeze to one gateway of Cluster; "" is
	// every gateway of it.
	Gateway string `json:"gateway,omitempty"`
	// Region is the target of lose-region.
	Region string `json:"region,omitempty"`
	// Cloud is the target of lose-cloud.
	Cloud string `json:"cloud,omitempty"`
	// Regions or Clusters hold the two sides of a partition; one is set.
	Regions  []string `json:"regions,omitempty"`
	Clusters []string `json:"clusters,omitempty"`
	// Link is the two clusters whose link latency and loss degrade.
	Link []string `json:"link,omitempty"`
	// Delay and Jitter are latency's added delay and its variation.
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	// Percent is the share of packets loss drops, 0..100.
	Percent float64 `json:"percent,omitempty"`
	// Restores names the earlier step a restore undoes.
	Restores string `json:"step,omitempty"`
}

// Expect is what must hold for the drill to pass.
type Expect struct {
	Services  []ServiceExpectation   `json:"services,omitempty"`
	Residency []ResidencyExpectation `json:"residency,omitempty"`
}

// ServiceExpectation bounds what the faults may do to one service's
// traffic. A zero bound is not checked.
type ServiceExpectation struct {
	Service         Service       `json:"service"`
	MaxFailoverTime time.Duration `json:"maxFailoverTime,omitempty"` // from a fault to the first success elsewhere
	MaxErrorRate    *float64      `json:"maxErrorRate,omitempty"`    // percent of requests over the drill, 0..100
	MaxAddedP99     time.Duration `json:"maxAddedP99,omitempty"`     // p99 latency above the drill's first seconds
}

// ResidencyExpectation is a residency verdict for one class.
type ResidencyExpectation struct {
	Class string `json:"class"`
	// NeverReaches lists regions no request of the class may reach, at
	// any time of the drill.
	NeverReaches []string `json:"neverReaches,omitempty"`
	// RefusedWhile names a step: while its fault holds, every request of
	// the class is refused.
	RefusedWhile string `json:"refusedWhile,omitempty"`
}

// Stop holds the conditions that abort the drill and undo every fault.
type Stop struct {
	ErrorRateAbove        *ErrorRateStop `json:"errorRateAbove,omitempty"`
	AnyResidencyViolation bool           `json:"anyResidencyViolation,omitempty"`
	// GatewayNotReadyFor aborts when a gateway the drill did not take
	// down is not ready for this long; 0 is not checked.
	GatewayNotReadyFor time.Duration `json:"gatewayNotReadyFor,omitempty"`
}

// ErrorRateStop aborts the drill when the error rate of all its traffic
// stays above Percent for For.
type ErrorRateStop struct {
	Percent float64       `json:"percent"`
	For     time.Duration `json:"for"`
}

// Summary says in one line what the drill does, for `strait drill
// validate`: "drill lose-a-cluster: 2m0s, 1 traffic, 2 steps, 3 expectations".
func (d *Drill) Summary() string {
	return fmt.Sprintf("drill %s: %s, %d traffic, %d %s, %d %s", d.Name, d.Duration,
		len(d.Traffic), len(d.Timeline), plural(len(d.Timeline), "step"),
		len(d.Expect.Services)+len(d.Expect.Residency), plural(len(d.Expect.Services)+len(d.Expect.Residency), "expectation"))
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
