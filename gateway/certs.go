package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/straitmesh/strait/federation/state"
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
	} else if cfg.TLS.Source == identity.SourceCA {
		// The roots learned at enrolment, if this gateway enrolled before.
		if _, err := os.Stat(cfg.rootsFile()); err == nil {
			if roots, err = identity.ReadRoots(cfg.rootsFile()); err != nil {
				return nil, fmt.Errorf("federation roots kept at enrolment: %w", err)
			}
		}
	}
	b := identity.NewBundleFor(id, nil)
	if len(roots) > 0 {
		own := identity.Domain{Name: cfg.TrustDomain, Roots: roots}
		if cfg.TLS.Source == identity.SourceACME {
			own.DNSSuffix, own.ServerAuthAsClient = cfg.TLS.ACME.DNSSuffix, cfg.TLS.ACME.ServerAuthAsClient
		}
		t, err := identity.NewTrust([]identity.Domain{own}, identity.Revocations{})
		if err != nil {
			return nil, fmt.Errorf("tls.ca %s: %w", cfg.TLS.CA, err)
		}
		b.SetTrust(t)
	}
	return b, nil
}

// certIssueWait bounds how long a gateway waits at start for the ca or
// acme source's first certificate.
const certIssueWait = 2 * time.Minute

// startCertificates starts the certificate manager of a gateway whose
// identity comes from its config: it keeps the certificate current and,
// for the files source, follows changes of the CA bundle.
func (g *Gateway) startCertificates() error {
	g.trustMu.Lock()
	g.baseTrust = g.id.Trust()
	g.trustMu.Unlock()
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
	case identity.SourceCA:
		iss, err := g.caIssuer()
		if err != nil {
			return err
		}
		mc.Issuer = iss
	case identity.SourceACME:
		iss, err := g.acmeIssuer()
		if err != nil {
			return err
		}
		mc.Issuer = iss
	default:
		return fmt.Errorf("tls.source %s: not available in this build", cfg.Source)
	}
	// A gateway starts with a certificate or not at all: the files are
	// read at once; an issuer is given time for a CA's round trips.
	wait := g.cfg.Timeouts.Budget + g.cfg.Timeouts.Connect
	if mc.Source != identity.SourceFiles {
		wait = max(wait, certIssueWait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
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

// setOwnRoots takes a new CA bundle of the gateway's own trust domain
// (tls.ca changed) into the base of its trust.
func (g *Gateway) setOwnRoots(roots []*x509.Certificate) {
	g.trustMu.Lock()
	var domains []identity.Domain
	own := identity.Domain{Name: g.id.ID.TrustDomain}
	if g.baseTrust != nil {
		for _, d := range g.baseTrust.Domains() {
			if d.Name == own.Name {
				own = d
				continue
			}
			domains = append(domains, d)
		}
	}
	own.Roots = roots
	t, err := identity.NewTrust(append(domains, own), identity.Revocations{})
	if err != nil {
		g.trustMu.Unlock()
		g.log.Warn("tls.ca not taken: the trust stays as it was", "file", g.cfg.TLS.CA, "err", err)
		return
	}
	g.baseTrust = t
	g.trustGen++
	g.trustMu.Unlock()
	g.applyTrust()
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

// issuerConfig is the identity package's view of tls.acme; roots verify
// the directory.
func (c ACMEConfig) issuerConfig(roots []*x509.Certificate) identity.ACMEConfig {
	ic := identity.ACMEConfig{Directory: c.Directory, Email: c.Email, AgreeToTerms: c.AgreeToTerms, Roots: roots,
		Challenges: c.Challenges, ListenHost: c.ListenHost, HTTPPort: c.HTTPPort, TLSALPNPort: c.TLSALPNPort, Profile: c.Profile}
	if c.EABKeyID != "" || c.EABMACKeyFile != "" {
		ic.EAB = &identity.EAB{KeyID: c.EABKeyID, MACKey: "(file)"}
	}
	return ic
}

// acmeIssuer builds the acme source's issuer from the config.
func (g *Gateway) acmeIssuer() (*identity.ACMEIssuer, error) {
	c := g.cfg.TLS.ACME
	var roots []*x509.Certificate
	if c.Roots != "" {
		var err error
		if roots, err = identity.ReadRoots(c.Roots); err != nil {
			return nil, fmt.Errorf("tls.acme.roots: %w", err)
		}
	}
	ic := c.issuerConfig(roots)
	ic.Logger = g.log
	if ic.EAB != nil {
		mac, err := os.ReadFile(c.EABMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.eabMACKeyFile: %w", err)
		}
		ic.EAB.MACKey = strings.TrimSpace(string(mac))
	}
	iss, err := identity.NewACMEIssuer(ic)
	if err != nil {
		return nil, fmt.Errorf("tls.acme: %w", err)
	}
	return iss, nil
}

// rootsFile is where the ca source keeps the federation's roots it
// learned at enrolment, for the next start.
func (c Config) rootsFile() string { return filepath.Join(c.CertStorage(), "strait-roots.pem") }

// caIssuer builds the ca source's issuer: local signing on a voter that
// holds the intermediate, the control API of the voters elsewhere.
func (g *Gateway) caIssuer() (*identity.CAIssuer, error) {
	cfg := g.cfg
	onRoots := func(roots []*x509.Certificate) {
		var pemBytes []byte
		for _, r := range roots {
			pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Raw})...)
		}
		if err := os.MkdirAll(cfg.CertStorage(), 0o700); err == nil {
			if err := os.WriteFile(cfg.rootsFile(), pemBytes, 0o644); err != nil {
				g.log.Warn("federation roots not kept for the next start", "file", cfg.rootsFile(), "err", err)
			}
		}
		g.setOwnRoots(roots)
	}
	if cfg.State.CA.Enabled() {
		inter, err := identity.LoadIntermediate(cfg.State.CA.Intermediate, cfg.State.CA.IntermediateKey)
		if err != nil {
			return nil, fmt.Errorf("state.ca: %w", err)
		}
		lifetime := cmp.Or(cfg.TLS.Authority.Lifetime, cfg.State.CA.Lifetime)
		sign := func(_ context.Context, req identity.SignRequest) (*identity.SignedChain, error) {
			csr, err := x509.ParseCertificateRequest(req.CSR)
			if err != nil {
				return nil, fmt.Errorf("certificate request: %w", err)
			}
			chain, err := inter.SignCSR(csr, g.id.ID, lifetime)
			if err != nil {
				return nil, err
			}
			return &identity.SignedChain{Chain: chain, Roots: inter.RootsPEM()}, nil
		}
		return identity.NewCAIssuer(identity.CAIssuerConfig{Bundle: g.id, Sign: sign, Local: true, Lifetime: lifetime, OnRoots: onRoots, Logger: g.log})
	}
	var token string
	if f := cfg.TLS.Authority.TokenFile; f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tls.authority.tokenFile: %w", err)
		}
		token = strings.TrimSpace(string(data))
	}
	servers := cfg.TLS.Authority.Servers
	if len(servers) == 0 {
		servers = cfg.State.Join
	}
	iss, err := state.NewCAIssuer(state.CAIssuerConfig{Bundle: g.id, Servers: servers, Token: token, Lifetime: cfg.TLS.Authority.Lifetime,
		Timeout: cfg.Timeouts.Connect + cfg.Timeouts.Budget, OnRoots: onRoots, Logger: g.log})
	if err != nil {
		return nil, fmt.Errorf("tls.authority: %w", err)
	}
	return iss, nil
}
