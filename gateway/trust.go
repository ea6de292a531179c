package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

// The trust a gateway verifies peers by (every handshake: tunnels and
// connections of the data plane, Raft, the control API) is composed from
//
//   - the trust it started with: its own domain's roots from tls.ca (and
//     whatever else Options.Identity trusted), the base;
//   - the routing state's trust records: each replaces the base's roots
//     for its domain; a record for another domain may limit it to some
//     clusters;
//   - the routing state's revocation records: serials and SPIFFE IDs
//     refused whatever their chain.
//
// The own domain's record, once written, is the own domain's roots: a CA
// removed from it is no longer trusted, although tls.ca may still hold
// it. Without it, tls.ca alone. A gateway never composes a trust that
// fails its own certificate: when the own record's roots do not verify
// it (a record written before this gateway's certificate was re-issued)
// the base roots are kept beside them and a warning says so. The
// control API refuses such a record when it fails the certificate of the
// gateway taking the write (state.checkOwnTrust), so this is the net
// under that check.
//
// When the revocations change, open tunnels are verified again and the
// tunnels of a revoked peer closed (tunnel.Pool.Recheck): revocation
// takes effect within one routing-state change.

// composeTrust builds the trust from base, the records of view and this
// gateway's own certificate self. problems say what was skipped or kept.
func composeTrust(own string, base *identity.Trust, self *tls.Certificate, view *state.View, now time.Time) (*identity.Trust, []string, error) {
	var problems []string
	domains := map[string]identity.Domain{}
	if base != nil {
		for _, d := range base.Domains() {
			domains[d.Name] = d
		}
	}
	baseOwn := domains[own].Roots
	for _, r := range view.List(state.KindTrust) {
		b, err := state.ParseTrust([]byte(r.Value))
		if err != nil {
			problems = append(problems, fmt.Sprintf("trust record %s@%d skipped: %v", r.Key, r.Index, err))
			continue
		}
		d := identity.Domain{Name: r.Key, Roots: b.Roots, Clusters: b.Clusters}
		if bd, ok := domains[r.Key]; ok {
			// How a domain's names are read is this gateway's config
			// (tls.acme), not the record's.
			d.DNSSuffix, d.ServerAuthAsClient = bd.DNSSuffix, bd.ServerAuthAsClient
		}
		if r.Key == own {
			d.Clusters = nil // the own domain speaks for every cluster
			if !verifies(d.Roots, self, now) && len(baseOwn) > 0 {
				problems = append(problems, fmt.Sprintf("trust record %s@%d does not verify this gateway's own certificate: tls.ca's roots are kept beside it", r.Key, r.Index))
				d.Roots = append(slices.Clone(d.Roots), baseOwn...)
			}
		}
		domains[r.Key] = d
	}
	var rev identity.Revocations
	for _, r := range view.List(state.KindRevocation) {
		rv, err := state.ParseRevocation([]byte(r.Value))
		if err != nil {
			problems = append(problems, fmt.Sprintf("revocation record %s@%d skipped: %v", r.Key, r.Index, err))
			continue
		}
		if rv.Serial != "" {
			rev.Serials = append(rev.Serials, rv.Serial)
		} else {
			rev.IDs = append(rev.IDs, rv.ID)
		}
	}
	list := make([]identity.Domain, 0, len(domains))
	for _, d := range domains {
		list = append(list, d)
	}
	slices.SortFunc(list, func(a, b identity.Domain) int { return strings.Compare(a.Name, b.Name) })
	t, err := identity.NewTrust(list, rev)
	return t, problems, err
}

// verifies reports whether roots verify cert's chain at now.
func verifies(roots []*x509.Certificate, cert *tls.Certificate, now time.Time) bool {
	if cert == nil || len(cert.Certificate) == 0 {
		return true // nothing to lose
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// followTrust composes the trust from the routing state now and again at
// every change of its trust or revocation records, until the gateway
// stops. It runs after the routing state opened.
func (g *Gateway) followTrust() {
	g.trustMu.Lock()
	g.trustFromState = true
	g.trustMu.Unlock()
	g.applyTrust()
	ch, stop := g.state.Watch()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer stop()
		for {
			select {
			case <-g.ctx.Done():
				return
			case <-ch:
				g.applyTrust()
			}
		}
	}()
}

// applyTrust composes the trust from the base (tls.ca as last read, and
// whatever else the gateway started with) and, once the gateway follows
// the routing state, its trust and revocation records, and puts it in
// force if anything changed.
func (g *Gateway) applyTrust() {
	g.trustMu.Lock()
	defer g.trustMu.Unlock()
	key := fmt.Sprint(g.trustGen)
	var view *state.View
	if g.trustFromState {
		view = g.state.View()
		key += "|" + recordsKey(view, state.KindTrust) + "|" + recordsKey(view, state.KindRevocation)
	}
	if key == g.trustSeen {
		return
	}
	g.trustSeen = key
	t := g.baseTrust
	if view != nil {
		var problems []string
		var err error
		t, problems, err = composeTrust(g.cfg.TrustDomain, g.baseTrust, g.id.Certificate(), view, time.Now())
		for _, p := range problems {
			g.log.Warn("trust record not applied as written", "problem", p, "index", view.Index)
		}
		if err != nil {
			g.log.Error("trust records not applied: the last trust stays in force", "index", view.Index, "err", err)
			return
		}
	}
	if t == nil {
		return
	}
	g.id.SetTrust(t)
	serials, ids := t.Revoked()
	names := make([]string, 0)
	for _, d := range t.Domains() {
		names = append(names, fmt.Sprintf("%s(%d roots)", d.Name, len(d.Roots)))
	}
	var index uint64
	if view != nil {
		index = view.Index
	}
	g.log.Info("trust in force", "index", index, "domains", names, "revoked_serials", serials, "revoked_ids", ids)
	if view != nil {
		g.recheckTunnels(t)
	}
}

// recordsKey identifies the versions of the records of kind in view.
func recordsKey(v *state.View, kind string) string {
	var b []byte
	for _, r := range v.List(kind) {
		b = fmt.Appendf(b, "%s@%d,", r.Key, r.Index)
	}
	return string(b)
}

// recheckTunnels closes the open tunnels whose peer certificate t now
// revokes. Only revocation closes a tunnel: a CA removed from a trust
// record (the end of a rotation) ends at the next handshake, so that
// streams in flight on certificates being replaced are not cut.
func (g *Gateway) recheckTunnels(t *identity.Trust) {
	now := time.Now()
	closed := g.tunnels.Recheck("revoked", func(chain []*x509.Certificate, inbound bool) error {
		usage := x509.ExtKeyUsageServerAuth
		if inbound {
			usage = x509.ExtKeyUsageClientAuth
		}
		_, err := t.Verify(chain, usage, now)
		var r *identity.RefusedError
		if errors.As(err, &r) && r.Reason == identity.ReasonRevoked {
			return err
		}
		return nil
	})
	for peer, err := range closed {
		g.log.Warn("tunnel closed: peer certificate revoked", "peer", peer, "err", err)
	}
}

// refusals logs, counts and audits the peer certificates the gateway's
// identity refuses. The counter sees every one; the log and the audit
// trail at most one line per reason a second (a peer hammering the port
// with a bad certificate does not flood them), with the number left out.
type refusals struct {
	g *Gateway

	mu         sync.Mutex
	last       map[identity.Reason]time.Time
	suppressed map[identity.Reason]int
}

func newRefusals(g *Gateway) *refusals {
	return &refusals{g: g, last: map[identity.Reason]time.Time{}, suppressed: map[identity.Reason]int{}}
}

func (r *refusals) refused(e *identity.RefusedError) {
	g := r.g
	g.metrics.peerRefused.WithLabelValues(string(e.Reason)).Inc()
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last[e.Reason]) < time.Second {
		r.suppressed[e.Reason]++
		r.mu.Unlock()
		return
	}
	r.last[e.Reason] = now
	skipped := r.suppressed[e.Reason]
	r.suppressed[e.Reason] = 0
	r.mu.Unlock()
	g.log.Warn("peer certificate refused", "reason", string(e.Reason), "subject", e.Subject, "serial", e.Serial, "err", e.Err,
		"suppressed", skipped)
	eng, version := g.res.current()
	g.res.audit.Write(sovereignty.Record{Kind: sovereignty.KindIdentity, Decision: sovereignty.DecisionDeny, Direction: "handshake",
		Reason: string(e.Reason), Caller: e.Subject, Error: fmt.Sprintf("%v (serial %s)", e, e.Serial),
		Policy: g.res.info(eng, version)})
}
