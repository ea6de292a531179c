package state

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Four-eyes changes. With a governance record {"approvals": N} (N > 0),
// the residency policy and the governance record itself are no longer
// written directly: one operator proposes a change (OpPropose), and it is
// applied only once N operators other than the proposer have approved it
// (OpApprove), each naming the proposal by its digest, so that what is
// approved is exactly what was proposed. The state machine decides every
// step, so every replica agrees: direct writes and deletes of those kinds
// are refused (rule approvals-required), a restore leaves them as they
// are, an approval by the proposer, by no identity, or of another digest
// is refused, and a second approval by the same operator changes nothing.
// A new proposal for the same record replaces the pending one and its
// approvals. Each step is a version of the proposal record (its history)
// and an event for the gateway's audit trail (Options.OnApproval).

// Governance is the value of the governance record.
type Governance struct {
	Approvals int `json:"approvals"`
}

// maxApprovals bounds Governance.Approvals.
const maxApprovals = 9

// Proposal is a change waiting for approvals: the value of a proposal
// record.
type Proposal struct {
	Kind      string    `json:"kind"`
	Key       string    `json:"key"`
	Value     string    `json:"value"`
	Digest    string    `json:"digest"`
	Proposer  string    `json:"proposer"`
	Approvals []string  `json:"approvals"`
	Needed    int       `json:"needed"`
	Time      time.Time `json:"time"`
}

// ApprovalEvent is one step of a four-eyes change, for the audit trail.
type ApprovalEvent struct {
	Step   string // proposed, approved, applied
	Kind   string
	Key    string
	Digest string
	By     string
	Index  uint64
	Count  int // approvals so far
	Needed int
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Digest is the digest a proposal is approved by: the same as the
// residency engine's digest of a policy file.
func Digest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// guarded reports whether records of kind change only by approval when
// approvals are required.
func guarded(kind string) bool { return kind == KindPolicy || kind == KindGovernance }

// ProposalKey is the key of the proposal record for kind/key.
func ProposalKey(kind, key string) string { return kind + "/" + key }

// approvalsLocked is how many approvals a guarded change needs now.
func (f *fsm) approvalsLocked() int {
	r, ok := f.records[KindGovernance]["policy"]
	if !ok {
		return 0
	}
	var g Governance
	if strictJSON([]byte(r.Value), &g) != nil {
		return 0
	}
	return g.Approvals
}

// applyApprovalLocked applies a propose or approve command at index and
// returns the events it makes, or an error that leaves the state as it
// was.
func (f *fsm) applyApprovalLocked(c *command, index uint64) ([]ApprovalEvent, error) {
	key := ProposalKey(c.Kind, c.Key)
	needed := f.approvalsLocked()
	var p Proposal
	var events []ApprovalEvent
	switch c.Op {
	case OpPropose:
		if c.By == "" {
			return nil, fmt.Errorf("%w: a proposal needs an operator's identity (rule four-eyes)", ErrDenied)
		}
		p = Proposal{Kind: c.Kind, Key: c.Key, Value: c.Value, Digest: Digest(c.Value), Proposer: c.By, Approvals: []string{}, Needed: needed, Time: c.Time}
		events = append(events, ApprovalEvent{Step: "proposed", Kind: c.Kind, Key: c.Key, Digest: p.Digest, By: c.By, Index: index, Needed: needed})
	case OpApprove:
		r, ok := f.records[KindProposal][key]
		if !ok {
			return nil, fmt.Errorf("%w: no pending proposal for %s %s", ErrInvalid, c.Kind, c.Key)
		}
		if err := strictJSON([]byte(r.Value), &p); err != nil {
			return nil, fmt.Errorf("%w: proposal %s: %v", ErrInvalid, key, err)
		}
		switch {
		case p.Digest != c.Value:
			return nil, fmt.Errorf("%w: the pending proposal for %s %s is %s, not %s", ErrInvalid, c.Kind, c.Key, p.Digest, c.Value)
		case c.By == "":
			return nil, fmt.Errorf("%w: an approval needs an operator's identity (rule four-eyes)", ErrDenied)
		case c.By == p.Proposer:
			return nil, fmt.Errorf("%w: %s proposed this change and cannot approve it (rule four-eyes)", ErrDenied, c.By)
		case slices.Contains(p.Approvals, c.By):
			return nil, nil // approved already
		}
		p.Approvals = append(slices.Clone(p.Approvals), c.By)
		p.Needed = needed
		events = append(events, ApprovalEvent{Step: "approved", Kind: c.Kind, Key: c.Key, Digest: p.Digest, By: c.By, Index: index,
			Count: len(p.Approvals), Needed: needed})
	}
	if len(p.Approvals) >= needed {
		// Enough: the change is made, by its proposer, and the proposal
		// ends.
		f.putLocked(Record{Kind: p.Kind, Key: p.Key, Value: p.Value, Index: index, Time: c.Time, By: p.Proposer}, c.RequestID)
		if _, ok := f.records[KindProposal][key]; ok {
			f.deleteLocked(KindProposal, key, Version{Index: index, Op: c.Op, Time: c.Time, By: c.By, RequestID: c.RequestID})
		}
		events = append(events, ApprovalEvent{Step: "applied", Kind: p.Kind, Key: p.Key, Digest: p.Digest, By: c.By, Index: index,
			Count: len(p.Approvals), Needed: needed})
		return events, nil
	}
	b, err := jsonMarshal(p)
	if err != nil {
		return nil, err
	}
	f.putLocked(Record{Kind: KindProposal, Key: key, Value: string(b), Index: index, Time: c.Time, By: c.By}, c.RequestID)
	return events, nil
}
