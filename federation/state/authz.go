package state

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/straitmesh/strait/identity"
)

// Who may change the routing state, decided by the verified identity of
// the caller's certificate (identity.Role), never by anything it sends:
//
//	RPC         allowed to (always an identity of the federation's own
//	            trust domain: another domain's operators and gateways
//	            never change anything, whatever its trust record says)
//	Write       an operator whose scope names the record's kind
//	Restore     an operator without a scope
//	RemovePeer  an operator whose scope names "member" (or none)
//	Join        a gateway for its own cluster and region, as a server ID
//	            no other cluster's member record holds; as a voter only
//	            with a voter identity
//	SignCertificate  its own identity again with a gateway or voter
//	            certificate; without a certificate, what a join token
//	            allows (ca.go)
//	the rest    any identity of the trust domain (reads); a caller
//	            without a certificate is answered Unauthenticated
//	            (requireCertificate)
//
// A change is never forwarded: a follower answers with the leader's
// address and the caller asks the leader, so the leader always authorizes
// the caller's own certificate. A refusal is PermissionDenied naming the
// rule, counted in strait_state_denied_total{rpc,rule}, logged, and handed
// to Options.OnDenied (the gateway's audit trail).

// Denial is a change the control API refused.
type Denial struct {
	RPC    string // Write, Join, RemovePeer, Restore
	Caller string // the caller's SPIFFE ID, "" when it presented none
	Rule   string // the rule that refused it
	Reason string
}

// authRule is a refusal and the rule that made it.
type authRule struct{ rule, reason string }

func (r *authRule) Error() string { return r.reason + " (rule " + r.rule + ")" }

// Is makes a refusal match ErrDenied.
func (r *authRule) Is(target error) bool { return target == ErrDenied }

func refuse(rule, format string, args ...any) error {
	return &authRule{rule: rule, reason: fmt.Sprintf(format, args...)}
}

// authorizer checks the changes a control server is asked for.
type authorizer struct {
	store *Store // nil when the server fronts another Control (tests)
}

func newAuthorizer(c Control) *authorizer {
	s, _ := c.(*Store)
	return &authorizer{store: s}
}

// ownDomain refuses a change asked by an identity of another trust
// domain: a trust record lets another domain's gateways carry traffic
// for their clusters, never change the routing state.
func (a *authorizer) ownDomain(caller identity.ID) error {
	if a.store == nil || caller.TrustDomain == a.store.opts.TrustDomain {
		return nil
	}
	return refuse("own-domain", "changes are asked by identities of trust domain %s; %s is of %s", a.store.opts.TrustDomain, caller, caller.TrustDomain)
}

// deny records a refusal and returns its status error.
func (a *authorizer) deny(rpc string, caller identity.ID, err error) error {
	rule := "identity"
	var ar *authRule
	if errors.As(err, &ar) {
		rule = ar.rule
	}
	reason := err.Error()
	d := Denial{RPC: rpc, Rule: rule, Reason: reason}
	if caller.TrustDomain != "" {
		d.Caller = caller.String()
	}
	if s := a.store; s != nil {
		s.metrics.denied.WithLabelValues(rpc, rule).Inc()
		s.log.Warn("control call refused", "rpc", rpc, "caller", d.Caller, "rule", rule, "reason", reason)
		if s.opts.OnDenied != nil {
			s.opts.OnDenied(d)
		}
	}
	return toStatus(fmt.Errorf("%w: %s %s: %s", ErrDenied, rpc, orUnknown(d.Caller), reason))
}

// leader reports whether changes are served here, and where the leader
// is otherwise.
func (a *authorizer) leader() (addr string, here bool) {
	s := a.store
	if s == nil || s.raft.State() == raft.Leader {
		return "", true
	}
	addr, _ = s.leaderControl()
	return addr, false
}

func mayWrite(caller identity.ID, r *WriteRequest) error {
	switch {
	case caller.Role != identity.RoleOperator:
		return refuse("operator-writes", "records are written by operators; %s is a %s", caller, roleOf(caller))
	case !caller.MayWrite(r.Kind):
		return refuse("operator-scope", "operator %s may write %s records only, not %s", caller.Name, caller.Scope, r.Kind)
	}
	return nil
}

func mayRestore(caller identity.ID, _ *RestoreRequest) error {
	if caller.Role != identity.RoleOperator || caller.Scope != "" {
		return refuse("operator-restore", "a restore replaces every record: it needs an operator without a scope; %s is not one", caller)
	}
	return nil
}

func mayRemovePeer(caller identity.ID, _ *RemovePeerRequest) error {
	if !caller.MayWrite(KindMember) && !(caller.Role == identity.RoleOperator && caller.Scope == "") {
		return refuse("operator-remove-peer", "removing a server needs an operator; %s is a %s", caller, roleOf(caller))
	}
	return nil
}

// mayJoin lets a gateway join only as itself: its own cluster and region,
// a server ID no other cluster holds, a voter only with a voter identity.
func (a *authorizer) mayJoin(caller identity.ID, r *JoinRequest) error {
	m := r.Server.Member
	switch {
	case !caller.IsGateway():
		return refuse("join-identity", "only gateways join; %s is a %s", caller, roleOf(caller))
	case caller.Cluster != m.Cluster || caller.Region != m.Region:
		return refuse("join-identity", "%s may join for cluster %s in region %s only, not for cluster %s in region %s",
			caller, caller.Cluster, caller.Region, m.Cluster, m.Region)
	case m.Voter && caller.Role != identity.RoleVoter:
		return refuse("join-voter", "%s asked to vote; voting needs a voter identity (strait ca issue --voter)", caller)
	}
	if a.store != nil {
		if cur, ok := a.store.member(r.Server.ID); ok && cur.Cluster != "" && cur.Cluster != caller.Cluster {
			return refuse("join-owner", "server %s belongs to cluster %s; %s may not take it over", r.Server.ID, cur.Cluster, caller)
		}
	}
	return nil
}

// maySign decides who may have claimed signed: the caller itself
// (caller is its verified SPIFFE ID), or, for a caller without a
// certificate, whoever a join token allows (decided when the token is
// consumed).
func maySign(caller string, claimed identity.ID, hasToken bool, trustDomain string) error {
	switch {
	case claimed.TrustDomain != trustDomain:
		return refuse("csr-names", "the request is for trust domain %q; this federation is %q", claimed.TrustDomain, trustDomain)
	case caller != "" && caller != claimed.String():
		return refuse("sign-own-identity", "%s may renew its own certificate only, not ask for %s", caller, claimed)
	case caller != "" && hasToken:
		return refuse("sign-own-identity", "%s renews with its certificate: a join token is for a first certificate only", caller)
	case caller == "" && !hasToken:
		return refuse("sign-token", "a caller without a certificate needs a join token (strait ca token) to ask for %s", claimed)
	}
	return nil
}

func roleOf(id identity.ID) identity.Role {
	if id.Role == "" {
		return identity.RoleGateway
	}
	return id.Role
}
