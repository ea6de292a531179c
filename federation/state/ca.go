package state

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/straitmesh/strait/identity"
)

// The federation's CA on the control API. A voter configured with an
// intermediate (state.ca) signs certificate requests while it leads:
//
//	caller                     may obtain                        rule when refused
//	a gateway or voter cert    exactly its own identity again    sign-own-identity
//	no certificate             what a join token allows: its     sign-token, token-*
//	                           cluster, region and role, once,
//	                           before the token expires
//	anyone                     a CSR whose only SAN is one       csr-names
//	                           SPIFFE ID of a gateway or voter
//
// A join token is a jointoken record, written by an operator
// (`strait ca token`), keyed by the token's ID, holding the SHA-256 of
// its secret, never the secret. Using a token is a log entry (OpConsume)
// decided by the state machine with decideTokenUse, so every replica
// agrees, two requests racing for one token are decided in log order
// (the second finds it used), and expiry is judged by the time the
// leader wrote into the entry, never a follower's clock. The leader runs
// the same decision on its own view first, so a wrong or used token
// never reaches the log. Refusals are PermissionDenied with their rule,
// counted in strait_state_denied_total{rpc="SignCertificate"} and handed
// to Options.OnDenied (the audit trail); signed certificates are counted
// in strait_state_certificates_signed_total{how}.

// KindJoinToken is a join token, keyed by its ID (16 hex digits).
const KindJoinToken = "jointoken"

// OpConsume uses a join token (written by SignCertificate only).
const OpConsume = "consume"

// Token limits.
const (
	// MaxTokenTTL is the longest a join token may live.
	MaxTokenTTL = 7 * 24 * time.Hour
)

// ErrNoCA is returned by a gateway that holds no intermediate CA.
var ErrNoCA = errors.New("this gateway signs no certificates: it holds no intermediate CA (state.ca)")

// JoinToken is the value of a jointoken record.
type JoinToken struct {
	// Cluster, Region and Role ("gateway" or "voter") are the only
	// identity the token obtains a certificate for.
	Cluster string `json:"cluster"`
	Region  string `json:"region"`
	Role    string `json:"role"`
	// SecretHash is "sha256:<hex>" of the token's secret.
	SecretHash string `json:"secretHash"`
	// TTLSeconds is how long after the record was written (the leader's
	// time of that change) the token may be used.
	TTLSeconds int64 `json:"ttlSeconds"`
	// UsedBy, UsedCSR and UsedIndex are set by the state machine when
	// the token is used: the identity it obtained, the digest of the
	// request, and the index of that change.
	UsedBy    string `json:"usedBy,omitempty"`
	UsedCSR   string `json:"usedCsr,omitempty"`
	UsedIndex uint64 `json:"usedIndex,omitempty"`
}

// tokenUse is the value of an OpConsume command: what the request
// proves and asks for.
type tokenUse struct {
	SecretHash string `json:"secretHash"`
	Cluster    string `json:"cluster"`
	Region     string `json:"region"`
	Role       string `json:"role"`
	CSR        string `json:"csr"` // digest of the request's DER
}

func validateJoinToken(payload []byte) error {
	var t JoinToken
	if err := strictJSON(payload, &t); err != nil {
		return fmt.Errorf("%w: jointoken: %v", ErrInvalid, err)
	}
	if err := checkTokenFields(t.Cluster, t.Region, t.Role, t.SecretHash); err != nil {
		return err
	}
	if t.TTLSeconds < 1 || t.TTLSeconds > int64(MaxTokenTTL/time.Second) {
		return fmt.Errorf("%w: jointoken: ttlSeconds %d out of range 1-%d", ErrInvalid, t.TTLSeconds, int64(MaxTokenTTL/time.Second))
	}
	if t.UsedCSR != "" && !digestRE.MatchString(t.UsedCSR) {
		return fmt.Errorf("%w: jointoken: usedCsr %q is not sha256:<64 hex digits>", ErrInvalid, t.UsedCSR)
	}
	return nil
}

func validateTokenUse(value string) (tokenUse, error) {
	var u tokenUse
	if err := strictJSON([]byte(value), &u); err != nil {
		return u, fmt.Errorf("%w: consume: %v", ErrInvalid, err)
	}
	if err := checkTokenFields(u.Cluster, u.Region, u.Role, u.SecretHash); err != nil {
		return u, err
	}
	if !digestRE.MatchString(u.CSR) {
		return u, fmt.Errorf("%w: consume: csr %q is not sha256:<64 hex digits>", ErrInvalid, u.CSR)
	}
	return u, nil
}

func checkTokenFields(cluster, region, role, secretHash string) error {
	for _, v := range []string{cluster, region} {
		if !nameRE.MatchString(v) {
			return fmt.Errorf("%w: jointoken: %q is not a cluster or region name", ErrInvalid, v)
		}
	}
	if role != string(identity.RoleGateway) && role != string(identity.RoleVoter) {
		return fmt.Errorf("%w: jointoken: role %q, want gateway or voter", ErrInvalid, role)
	}
	if !digestRE.MatchString(secretHash) {
		return fmt.Errorf("%w: jointoken: secretHash is not sha256:<64 hex digits>", ErrInvalid)
	}
	return nil
}

// decideTokenUse decides whether use may take the token of record rec
// (found: whether the record exists) at now, the leader's time of the
// change, for the identity by. It returns the token as used, and again
// when by had used it before with the same request (an answer lost and
// asked again). It is the one decision: the leader runs it on its view
// before proposing, the state machine on its own state when applying.
func decideTokenUse(rec Record, found bool, use tokenUse, by string, now time.Time) (tok JoinToken, again bool, err error) {
	if !found {
		return tok, false, refuse("token-unknown", "join token %s is not known (never created, or deleted)", rec.Key)
	}
	if err := strictJSON([]byte(rec.Value), &tok); err != nil {
		return tok, false, refuse("token-unknown", "join token %s is unreadable: %v", rec.Key, err)
	}
	if subtle.ConstantTimeCompare([]byte(tok.SecretHash), []byte(use.SecretHash)) != 1 {
		return tok, false, refuse("token-secret", "join token %s: wrong secret", rec.Key)
	}
	if tok.UsedBy != "" {
		if tok.UsedBy == by && tok.UsedCSR == use.CSR {
			return tok, true, nil
		}
		return tok, false, refuse("token-used", "join token %s was used at index %d by %s", rec.Key, tok.UsedIndex, tok.UsedBy)
	}
	if exp := rec.Time.Add(time.Duration(tok.TTLSeconds) * time.Second); !now.Before(exp) {
		return tok, false, refuse("token-expired", "join token %s expired at %s (leader's time now %s)", rec.Key,
			exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if tok.Cluster != use.Cluster || tok.Region != use.Region || tok.Role != use.Role {
		return tok, false, refuse("token-binding", "join token %s is for a %s of cluster %s in region %s, not a %s of cluster %s in region %s",
			rec.Key, tok.Role, tok.Cluster, tok.Region, use.Role, use.Cluster, use.Region)
	}
	tok.UsedBy, tok.UsedCSR = by, use.CSR
	return tok, false, nil
}

// applyConsumeLocked applies an OpConsume command at index.
func (f *fsm) applyConsumeLocked(c *command, index uint64) error {
	use, err := validateTokenUse(c.Value)
	if err != nil {
		return err
	}
	var rec Record
	r, found := f.records[KindJoinToken][c.Key]
	if found {
		rec = *r
	} else {
		rec = Record{Kind: KindJoinToken, Key: c.Key}
	}
	tok, again, err := decideTokenUse(rec, found, use, c.By, c.Time)
	if err != nil || again {
		return err
	}
	tok.UsedIndex = index
	b, err := jsonMarshal(tok)
	if err != nil {
		return err
	}
	f.putLocked(Record{Kind: KindJoinToken, Key: c.Key, Value: string(b), Index: index, Time: c.Time, By: c.By}, c.RequestID)
	return nil
}

// SignRequest asks the CA for a certificate (SignCertificate).
type SignRequest struct {
	// CSR is the DER of the certificate request.
	CSR []byte `json:"csr"`
	// Token is a join token's text, for a caller without a certificate.
	Token string `json:"token,omitempty"`
	// Lifetime asked for; 0 or more than state.ca.lifetime gives that.
	Lifetime time.Duration `json:"lifetime,omitempty"`
}

// SignResponse carries the signed certificate.
type SignResponse struct {
	// Chain is PEM: the certificate, then the intermediate.
	Chain string `json:"chain"`
	// Roots is PEM: the roots the intermediate chains to.
	Roots string `json:"roots"`
	// Index is the Raft index that consumed the join token; 0 for a
	// renewal.
	Index uint64 `json:"index,omitempty"`
}

func csrDigest(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// SignCertificate signs a certificate request on the leader with its
// intermediate CA. The caller is the verified identity the context
// carries (WithCaller): with one, the request must be for exactly that
// identity; without one, Token must allow it (see the top of this file).
// Refusals are errors that match ErrDenied.
func (s *Store) SignCertificate(ctx context.Context, req *SignRequest) (*SignResponse, error) {
	if s.raft.State() != raft.Leader {
		return nil, fmt.Errorf("%w: certificates are signed by the leader", ErrNotLeader)
	}
	if s.ca == nil {
		return nil, ErrNoCA
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate request: %v", ErrInvalid, err)
	}
	claimed, err := identity.CSRIdentity(csr)
	if err != nil {
		return nil, refuse("csr-names", "%v", err)
	}
	caller := callerOf(ctx)
	if err := maySign(caller, claimed, req.Token != "", s.opts.TrustDomain); err != nil {
		return nil, err
	}
	lifetime := s.cfg.CA.Lifetime
	if lifetime <= 0 {
		lifetime = identity.DefaultLifetime
	}
	if req.Lifetime > 0 && req.Lifetime < lifetime {
		lifetime = req.Lifetime
	}
	how, index := "renewal", uint64(0)
	if caller == "" {
		how = "token"
		if index, err = s.consumeToken(ctx, req.Token, claimed, csr); err != nil {
			return nil, err
		}
	}
	chain, err := s.ca.SignCSR(csr, claimed, lifetime)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", claimed, err)
	}
	s.metrics.signed.WithLabelValues(how).Inc()
	s.log.Info("certificate signed", "identity", claimed.String(), "how", how, "index", index, "lifetime", lifetime.String())
	return &SignResponse{Chain: string(chain), Roots: string(s.ca.RootsPEM()), Index: index}, nil
}

// consumeToken uses the join token text for claimed's request csr and
// returns the index that did.
func (s *Store) consumeToken(ctx context.Context, text string, claimed identity.ID, csr *x509.CertificateRequest) (uint64, error) {
	tok, err := identity.ParseToken(text)
	if err != nil {
		return 0, refuse("token-malformed", "%v", err)
	}
	use := tokenUse{SecretHash: tok.SecretHash(), Cluster: claimed.Cluster, Region: claimed.Region, Role: string(claimed.Role), CSR: csrDigest(csr.Raw)}
	// The same decision on this leader's view first: a wrong, used or
	// expired token costs no log entry.
	rec, found := s.fsm.View().Get(KindJoinToken, tok.ID)
	if !found {
		rec = Record{Kind: KindJoinToken, Key: tok.ID}
	}
	if _, _, err := decideTokenUse(rec, found, use, claimed.String(), s.now()); err != nil {
		return 0, err
	}
	value, err := jsonMarshal(use)
	if err != nil {
		return 0, err
	}
	resp, err := s.applyLocal(ctx, &WriteRequest{Op: OpConsume, Kind: KindJoinToken, Key: tok.ID, Value: string(value), By: claimed.String(), RequestID: newRequestID()})
	if err != nil {
		return 0, err
	}
	return resp.Index, nil
}
