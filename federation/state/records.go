package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/straitmesh/strait/identity"
)

// Kinds of routing-state records.
const (
	// KindPolicy is a residency policy document: YAML with apiVersion and
	// kind, keyed by the policy's name. Its content is checked by the
	// store's Validator (package sovereignty) before it reaches the log.
	KindPolicy = "policy"
	// KindFailover is a service's failover priority, keyed "namespace/name".
	KindFailover = "failover"
	// KindExport says which clusters export a service, keyed "namespace/name".
	KindExport = "export"
	// KindImport says which clusters import a service, keyed "namespace/name".
	KindImport = "import"
	// KindCluster is one entry of the cluster registry, keyed by cluster name.
	KindCluster = "cluster"
	// KindTrust is a trust bundle, keyed by trust domain: PEM CA
	// certificates, or JSON naming the clusters another domain may speak
	// for (trust.go).
	KindTrust = "trust"
	// KindMember is a Raft server's addresses, keyed by node name. Written
	// only by the join path, never by clients.
	KindMember = "member"
)

// Kinds of the approval workflow (approvals.go).
const (
	// KindGovernance holds how many operators must approve a change of
	// the residency policy: key "policy", value {"approvals": N}.
	KindGovernance = "governance"
	// KindProposal is a change waiting for approvals, keyed by
	// "<kind>/<key>" of the record it changes. Written by propose and
	// approve only.
	KindProposal = "proposal"
)

// UserKinds are the kinds clients may write.
var userKinds = []string{KindPolicy, KindFailover, KindExport, KindImport, KindCluster, KindTrust, KindRevocation, KindGovernance, KindJoinToken}

// UserKinds returns the kinds clients may write, in display order.
func UserKinds() []string { return append([]string(nil), userKinds...) }

func knownKind(k string) bool { return k == KindMember || k == KindProposal || isUserKind(k) }

func isUserKind(k string) bool {
	for _, u := range userKinds {
		if u == k {
			return true
		}
	}
	return false
}

// Limits on what the store accepts. Larger input is refused, not truncated.
const (
	MaxKeyLen      = 253
	MaxValueBytes  = 1 << 20
	MaxCommandSize = 32 << 20 // a restore command carries a whole state
	maxListItems   = 256
)

// ErrInvalid is wrapped by every rejected payload, key or command.
var ErrInvalid = errors.New("invalid routing-state record")

// Validator checks a payload of kind before it is written. It runs on the
// gateway that receives the write, before the write reaches the log, never
// when a log entry is applied (so that gateways of different versions never
// disagree about what was applied).
type Validator func(kind string, payload []byte) error

// Record is one versioned entry of the routing state.
type Record struct {
	Kind  string `json:"kind"`
	Key   string `json:"key"`
	Value string `json:"value"`
	// Index is the Raft index of the change that wrote this version: the
	// version audit records cite.
	Index uint64 `json:"index"`
	// Created is the Raft index of the write that created the key.
	Created uint64 `json:"created"`
	// Time is the leader's clock when the change was proposed.
	Time time.Time `json:"time"`
	// By is the identity (SPIFFE ID) that asked for the change.
	By string `json:"by,omitempty"`
}

// Failover is the payload of a KindFailover record: clusters to try for
// the service, best first, after the local cluster and the clusters of the
// local zone and region; clusters it does not name come last.
type Failover struct {
	Priority []string `json:"priority"`
}

// Export is the payload of a KindExport record: the clusters allowed to
// export the service (empty: every cluster that runs it).
type Export struct {
	Clusters []string `json:"clusters"`
	Ports    []int    `json:"ports,omitempty"`
}

// Import is the payload of a KindImport record: the clusters that import
// the service (empty: every cluster).
type Import struct {
	Clusters []string `json:"clusters"`
}

// ClusterInfo is the payload of a KindCluster record.
type ClusterInfo struct {
	Region string `json:"region"`
	Zone   string `json:"zone,omitempty"`
	Cloud  string `json:"cloud,omitempty"`
}

// Member is the payload of a KindMember record: where a Raft server is.
type Member struct {
	RaftAddr    string `json:"raftAddr"`
	ControlAddr string `json:"controlAddr"`
	Cluster     string `json:"cluster,omitempty"`
	Region      string `json:"region,omitempty"`
	Voter       bool   `json:"voter"`
}

var (
	labelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	nameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// ValidateKey checks the key of a record of kind.
func ValidateKey(kind, key string) error {
	if key == "" {
		return fmt.Errorf("%w: %s key is empty", ErrInvalid, kind)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %s key is %d bytes, limit %d", ErrInvalid, kind, len(key), MaxKeyLen)
	}
	switch kind {
	case KindFailover, KindExport, KindImport:
		ns, name, ok := strings.Cut(key, "/")
		if !ok || !labelRE.MatchString(ns) || !labelRE.MatchString(name) {
			return fmt.Errorf("%w: %s key %q: want namespace/name (DNS labels)", ErrInvalid, kind, key)
		}
	case KindCluster:
		if !labelRE.MatchString(key) {
			return fmt.Errorf("%w: cluster key %q is not a DNS label", ErrInvalid, key)
		}
	case KindProposal:
		kind, rest, ok := strings.Cut(key, "/")
		if !ok || !guarded(kind) {
			return fmt.Errorf("%w: proposal key %q: want <kind>/<key> of a policy or governance record", ErrInvalid, key)
		}
		return ValidateKey(kind, rest)
	case KindGovernance:
		if key != "policy" {
			return fmt.Errorf("%w: governance key %q: want policy", ErrInvalid, key)
		}
	case KindRevocation:
		if !revocationKeyRE.MatchString(key) {
			return fmt.Errorf("%w: revocation key %q: want serial-<hex> or id-<32 hex digits> (state.RevocationKey)", ErrInvalid, key)
		}
	case KindJoinToken:
		if !identity.IsTokenID(key) {
			return fmt.Errorf("%w: jointoken key %q: want the token's ID (16 lower-case hex digits)", ErrInvalid, key)
		}
	case KindPolicy, KindTrust, KindMember:
		if !nameRE.MatchString(key) {
			return fmt.Errorf("%w: %s key %q: want lower-case letters, digits, '-' and '.'", ErrInvalid, kind, key)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q (want one of %s)", ErrInvalid, kind, strings.Join(userKinds, ", "))
	}
	return nil
}

// ValidatePayload checks the built-in shape of a payload of kind: what
// every gateway version agrees on. A policy must be a YAML mapping with
// string apiVersion and kind; typed kinds must be strict JSON of their type.
func ValidatePayload(kind string, payload []byte) error {
	if len(payload) == 0 {
		return fmt.Errorf("%w: %s payload is empty", ErrInvalid, kind)
	}
	if len(payload) > MaxValueBytes {
		return fmt.Errorf("%w: %s payload is %d bytes, limit %d", ErrInvalid, kind, len(payload), MaxValueBytes)
	}
	if !utf8.Valid(payload) {
		return fmt.Errorf("%w: %s payload is not UTF-8 text", ErrInvalid, kind)
	}
	switch kind {
	case KindPolicy:
		return validatePolicyShape(payload)
	case KindProposal:
		var pr Proposal
		if err := strictJSON(payload, &pr); err != nil {
			return fmt.Errorf("%w: proposal: %v", ErrInvalid, err)
		}
		return nil
	case KindGovernance:
		var g Governance
		if err := strictJSON(payload, &g); err != nil {
			return fmt.Errorf("%w: governance: %v", ErrInvalid, err)
		}
		if g.Approvals < 0 || g.Approvals > maxApprovals {
			return fmt.Errorf("%w: governance: approvals %d out of range 0-%d", ErrInvalid, g.Approvals, maxApprovals)
		}
		return nil
	case KindFailover:
		var f Failover
		if err := strictJSON(payload, &f); err != nil {
			return fmt.Errorf("%w: failover: %v", ErrInvalid, err)
		}
		if len(f.Priority) == 0 {
			return fmt.Errorf("%w: failover: priority is empty", ErrInvalid)
		}
		return labels("failover: priority", f.Priority)
	case KindExport:
		var e Export
		if err := strictJSON(payload, &e); err != nil {
			return fmt.Errorf("%w: export: %v", ErrInvalid, err)
		}
		for _, p := range e.Ports {
			if p < 1 || p > 65535 {
				return fmt.Errorf("%w: export: port %d out of range 1-65535", ErrInvalid, p)
			}
		}
		return labels("export: clusters", e.Clusters)
	case KindImport:
		var im Import
		if err := strictJSON(payload, &im); err != nil {
			return fmt.Errorf("%w: import: %v", ErrInvalid, err)
		}
		return labels("import: clusters", im.Clusters)
	case KindCluster:
		var c ClusterInfo
		if err := strictJSON(payload, &c); err != nil {
			return fmt.Errorf("%w: cluster: %v", ErrInvalid, err)
		}
		if !labelRE.MatchString(c.Region) {
			return fmt.Errorf("%w: cluster: region %q is not a DNS label", ErrInvalid, c.Region)
		}
		for _, v := range []string{c.Zone, c.Cloud} {
			if v != "" && !labelRE.MatchString(v) {
				return fmt.Errorf("%w: cluster: %q is not a DNS label", ErrInvalid, v)
			}
		}
		return nil
	case KindTrust:
		_, err := ParseTrust(payload)
		return err
	case KindRevocation:
		_, err := ParseRevocation(payload)
		return err
	case KindJoinToken:
		return validateJoinToken(payload)
	case KindMember:
		var m Member
		if err := strictJSON(payload, &m); err != nil {
			return fmt.Errorf("%w: member: %v", ErrInvalid, err)
		}
		if m.RaftAddr == "" || m.ControlAddr == "" {
			return fmt.Errorf("%w: member: raftAddr and controlAddr are required", ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown kind %q", ErrInvalid, kind)
}

func validatePolicyShape(payload []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(payload, &doc); err != nil {
		return fmt.Errorf("%w: policy is not YAML: %v", ErrInvalid, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%w: policy: want a YAML mapping with apiVersion and kind", ErrInvalid)
	}
	m := doc.Content[0]
	found := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if (k.Value == "apiVersion" || k.Value == "kind") && v.Kind == yaml.ScalarNode && v.Value != "" {
			found[k.Value] = true
		}
	}
	for _, k := range []string{"apiVersion", "kind"} {
		if !found[k] {
			return fmt.Errorf("%w: policy: missing %s (line %d)", ErrInvalid, k, m.Line)
		}
	}
	return nil
}

// PolicyName returns metadata.name of a policy document, or "".
func PolicyName(payload []byte) string {
	var doc struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	if yaml.Unmarshal(payload, &doc) != nil {
		return ""
	}
	return doc.Metadata.Name
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func labels(what string, vs []string) error {
	if len(vs) > maxListItems {
		return fmt.Errorf("%w: %s: %d items, limit %d", ErrInvalid, what, len(vs), maxListItems)
	}
	seen := map[string]bool{}
	for _, v := range vs {
		if !labelRE.MatchString(v) {
			return fmt.Errorf("%w: %s: %q is not a DNS label", ErrInvalid, what, v)
		}
		if seen[v] {
			return fmt.Errorf("%w: %s: %q listed twice", ErrInvalid, what, v)
		}
		seen[v] = true
	}
	return nil
}

// Operations of a command.
const (
	OpPut     = "put"
	OpDelete  = "delete"
	OpRestore = "restore" // replace every client-written record at once
	OpPropose = "propose" // a change that waits for approvals (approvals.go)
	OpApprove = "approve" // approve a proposal, named by its digest
	// OpConsume (ca.go) uses a join token.
)

// command is one Raft log entry of the routing state.
type command struct {
	Op    string `json:"op"`
	Kind  string `json:"kind,omitempty"`
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
	// Records is the new client-written state of a restore.
	Records []Record `json:"records,omitempty"`
	// RequestID makes a retried write apply once.
	RequestID string    `json:"requestId,omitempty"`
	By        string    `json:"by,omitempty"`
	Time      time.Time `json:"time"`
}

// commandVersion prefixes every encoded command so the format can change.
const commandVersion = 1

func encodeCommand(c *command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	return append([]byte{commandVersion}, b...), nil
}

// decodeCommand parses and checks one log entry. It never panics and
// checks only what every gateway version agrees on (no Validator).
func decodeCommand(b []byte) (*command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrInvalid)
	}
	if len(b) > MaxCommandSize {
		return nil, fmt.Errorf("%w: command is %d bytes, limit %d", ErrInvalid, len(b), MaxCommandSize)
	}
	if b[0] != commandVersion {
		return nil, fmt.Errorf("%w: command format %d, want %d", ErrInvalid, b[0], commandVersion)
	}
	var c command
	if err := strictJSON(b[1:], &c); err != nil {
		return nil, fmt.Errorf("%w: command: %v", ErrInvalid, err)
	}
	if len(c.RequestID) > 128 {
		return nil, fmt.Errorf("%w: request id longer than 128 bytes", ErrInvalid)
	}
	switch c.Op {
	case OpPut:
		if err := ValidateKey(c.Kind, c.Key); err != nil {
			return nil, err
		}
		if err := ValidatePayload(c.Kind, []byte(c.Value)); err != nil {
			return nil, err
		}
	case OpDelete:
		if err := ValidateKey(c.Kind, c.Key); err != nil {
			return nil, err
		}
	case OpRestore:
		if err := validateRecords(c.Records, false); err != nil {
			return nil, err
		}
	case OpPropose:
		if !guarded(c.Kind) {
			return nil, fmt.Errorf("%w: only policy and governance changes are proposed, not %s", ErrInvalid, c.Kind)
		}
		if err := ValidateKey(c.Kind, c.Key); err != nil {
			return nil, err
		}
		if err := ValidatePayload(c.Kind, []byte(c.Value)); err != nil {
			return nil, err
		}
	case OpApprove:
		if !guarded(c.Kind) {
			return nil, fmt.Errorf("%w: only policy and governance changes are approved, not %s", ErrInvalid, c.Kind)
		}
		if err := ValidateKey(c.Kind, c.Key); err != nil {
			return nil, err
		}
		if !digestRE.MatchString(c.Value) {
			return nil, fmt.Errorf("%w: approve names the proposal by its digest (sha256:<64 hex digits>), not %q", ErrInvalid, c.Value)
		}
	case OpConsume:
		if c.Kind != KindJoinToken {
			return nil, fmt.Errorf("%w: only join tokens are consumed, not %s", ErrInvalid, c.Kind)
		}
		if err := ValidateKey(c.Kind, c.Key); err != nil {
			return nil, err
		}
		if _, err := validateTokenUse(c.Value); err != nil {
			return nil, err
		}
		if c.By == "" {
			return nil, fmt.Errorf("%w: consume names the identity the token is used for", ErrInvalid)
		}
	default:
		return nil, fmt.Errorf("%w: unknown op %q", ErrInvalid, c.Op)
	}
	return &c, nil
}

// validateRecords checks a set of records: known kinds (members only when
// allowMembers), valid keys and payloads, no duplicates.
func validateRecords(recs []Record, allowMembers bool) error {
	seen := map[string]bool{}
	for i, r := range recs {
		if r.Kind == KindMember && !allowMembers {
			return fmt.Errorf("%w: records[%d]: member records cannot be restored", ErrInvalid, i)
		}
		if err := ValidateKey(r.Kind, r.Key); err != nil {
			return fmt.Errorf("records[%d]: %w", i, err)
		}
		if err := ValidatePayload(r.Kind, []byte(r.Value)); err != nil {
			return fmt.Errorf("records[%d] %s/%s: %w", i, r.Kind, r.Key, err)
		}
		if err := checkRecordPair(r.Kind, r.Key, []byte(r.Value)); err != nil {
			return fmt.Errorf("records[%d]: %w", i, err)
		}
		id := r.Kind + "\x00" + r.Key
		if seen[id] {
			return fmt.Errorf("%w: records[%d]: %s %s listed twice", ErrInvalid, i, r.Kind, r.Key)
		}
		seen[id] = true
	}
	return nil
}
