package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/identity"
)

// newIdentity makes the gateway's bundle from its config. The files
// source loads its certificate at once (so a wrong certificate stops the
// start with a clear error); the other sources start with none, and the
// certificate manager obtains it.
func newIdentity(cfg Config) (*identity.Bundle, error) {
	if cfg.TLS.Source == identity.SourceFiles || cfg.TLS.Source == "" {
		return identity.LoadFiles(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.CA)
	}
	role := identity.RoleGateway
	if cfg.State.Enabled() && cfg.State.Voter {
		role = identity.RoleVoter
	}
	id := identity.ID{TrustDomain: cfg.TrustDomain, Role: role, Region: cfg.Region, Cluster: cfg.Cluster}
	var roots []*x509.Certificate
	if cfg.TLS.CA != "" {
		var err error
		if roots, err = identity.ReadRoots(cfg.TLS.CA); err != nil {
			return nil, fmt.Errorf("tls.ca: %w", err)
		}
	}
	b := identity.NewBundleFor(id, nil)
	if len(roots) > 0 {
		t, err := identity.NewTrust([]identity.Domain{{Name: cfg.TrustDomain, Roots: roots}}, identity.Revocations{})
		if err != nil {
			return nil, fmt.Errorf("tls.ca %s: %w", cfg.TLS.CA, err)
		}
		b.SetTrust(t)
	}
	return b, nil
}

// startCertificates starts the certificate manager of a gateway whose
// identity comes from its config: it keeps the certificate current and,
// for the files source, follows changes of the CA bundle.
func (g *Gateway) startCertificates() error {
	if d, ok := g.id.Trust().Domain(g.id.ID.TrustDomain); ok {
		g.ownRoots = d.Roots
	}
	if !g.manageCerts {
		return nil
	}
	cfg := g.cfg.TLS
	mc := identity.ManagerConfig{Bundle: g.id, Source: cfg.Source, Storage: g.cfg.CertStorage(), RenewCheck: cfg.RenewCheck,
		Logger: g.log, Registry: g.reg}
	switch cfg.Source {
	case identity.SourceFiles, "":
		mc.Source = identity.SourceFiles
		mc.Files = identity.FilesSource{Cert: cfg.Cert, Key: cfg.Key, CA: cfg.CA, Poll: cfg.Watch}
		mc.OnRoots = g.setOwnRoots
	default:
		return fmt.Errorf("tls.source %s: not available in this build", cfg.Source)
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.Timeouts.Budget+g.cfg.Timeouts.Connect)
	defer cancel()
	m, err := identity.StartManager(ctx, mc)
	if err != nil {
		return fmt.Errorf("gateway certificate: %w", err)
	}
	g.certs = m
	return nil
}

func (g *Gateway) stopCertificates() {
	if g.certs != nil {
		g.certs.Close()
	}
}

// setOwnRoots takes a new CA bundle of the gateway's own trust domain.
func (g *Gateway) setOwnRoots(roots []*x509.Certificate) {
	g.trustMu.Lock()
	defer g.trustMu.Unlock()
	g.ownRoots = roots
	g.rebuildTrust()
}

// rebuildTrust makes the trust the gateway verifies peers by from its own
// roots. Called with trustMu held.
func (g *Gateway) rebuildTrust() {
	t, err := identity.NewTrust([]identity.Domain{{Name: g.id.ID.TrustDomain, Roots: g.ownRoots}}, identity.Revocations{})
	if err != nil {
		g.log.Warn("trust not changed", "err", err)
		return
	}
	g.id.SetTrust(t)
}

func (g *Gateway) certificateStatus() *admin.CertificateStatus {
	c := g.id.Certificate()
	if c == nil || c.Leaf == nil {
		return nil
	}
	st := &admin.CertificateStatus{Identity: g.id.ID.String(), Serial: identity.SerialHex(c.Leaf), Issuer: c.Leaf.Issuer.String(),
		NotBefore: c.Leaf.NotBefore, NotAfter: c.Leaf.NotAfter}
	if g.certs != nil {
		ms := g.certs.Status()
		st.Source, st.NextRenewal, st.Renewals, st.Failures, st.LastError = ms.Source, ms.NextRenewal, ms.Renewals, ms.Failures, ms.LastError
	}
	return st
}

func (g *Gateway) trustStatus() *admin.TrustStatus {
	t := g.id.Trust()
	if t == nil {
		return nil
	}
	st := &admin.TrustStatus{Domains: []admin.TrustDomainStatus{}}
	st.RevokedSerials, st.RevokedIDs = t.Revoked()
	for _, d := range t.Domains() {
		ds := admin.TrustDomainStatus{Name: d.Name, Clusters: d.Clusters, Roots: []admin.RootStatus{}}
		for _, r := range d.Roots {
			fp := sha256.Sum256(r.Raw)
			ds.Roots = append(ds.Roots, admin.RootStatus{Subject: r.Subject.CommonName, Fingerprint: hex.EncodeToString(fp[:]), NotAfter: r.NotAfter})
		}
		st.Domains = append(st.Domains, ds)
	}
	return st
}
