package identity

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/caddyserver/certmagic"
)

// SignRequest is what a CAIssuer asks a CA server to sign.
type SignRequest struct {
	// CSR is the DER of the certificate request certmagic made.
	CSR []byte
	// Token is set for a first certificate: the request goes without a
	// client certificate, with the token, to a server verified against
	// the token's pinned root. Nil for a renewal, which goes with the
	// bundle's current certificate.
	Token *Token
	// Lifetime asked for; 0 leaves it to the CA.
	Lifetime time.Duration
}

// SignedChain is a CA server's answer.
type SignedChain struct {
	// Chain is the PEM certificate, then its intermediates.
	Chain []byte
	// Roots is the PEM of the roots the chain ends at.
	Roots []byte
}

// SignFunc sends a SignRequest to the federation's CA servers. The
// control API's client provides it (state.NewCAIssuer); identity does
// not know the transport.
type SignFunc func(ctx context.Context, req SignRequest) (*SignedChain, error)

// CAIssuerConfig configures a CAIssuer.
type CAIssuerConfig struct {
	// Bundle is the gateway's identity: its ID is the only one asked for,
	// its current certificate authorizes renewals, and its trust checks
	// what comes back. Required.
	Bundle *Bundle
	// Token is the join token's text for the first certificate. It may
	// be empty once the bundle holds a certificate (a restart with
	// certmagic's storage).
	Token string
	// Sign reaches the CA servers. Required.
	Sign SignFunc
	// Lifetime to ask for; 0 leaves it to the CA (state.ca.lifetime,
	// default 24h).
	Lifetime time.Duration
	// Local says Sign signs with an intermediate this gateway holds (a
	// voter with state.ca): no join token is needed, and the roots it
	// answers are the ones the certificate is checked by.
	Local bool
	// OnRoots, when set, receives the CA's roots after a certificate
	// obtained with the token (or locally). Default: a bundle without trust is given
	// a trust of those roots.
	OnRoots func([]*x509.Certificate)
	Logger  *slog.Logger
	// Now is the clock a current certificate is judged by. Default
	// time.Now.
	Now func() time.Time
}

// CAIssuer is a certmagic.Issuer that obtains certificates from the
// federation's CA: with the join token while the bundle has no valid
// certificate, by the bundle's own certificate after that. Whatever the
// CA answers is checked before certmagic stores it: the certificate is
// for the CSR's key, names exactly the bundle's identity and chains to
// the pinned root (first certificate) or the bundle's trust (renewal).
type CAIssuer struct {
	cfg   CAIssuerConfig
	token *Token
	log   *slog.Logger
}

var _ certmagic.Issuer = (*CAIssuer)(nil)

// NewCAIssuer checks cfg and returns the issuer.
func NewCAIssuer(cfg CAIssuerConfig) (*CAIssuer, error) {
	var errs []error
	if cfg.Bundle == nil {
		errs = append(errs, errors.New("CA issuer: no bundle"))
	} else if !cfg.Bundle.ID.IsGateway() {
		errs = append(errs, fmt.Errorf("CA issuer: %s is not a gateway or voter identity", cfg.Bundle.ID))
	}
	if cfg.Sign == nil {
		errs = append(errs, errors.New("CA issuer: no way to reach a CA server"))
	}
	if cfg.Lifetime < 0 {
		errs = append(errs, fmt.Errorf("CA issuer: lifetime %s is negative", cfg.Lifetime))
	}
	is := &CAIssuer{cfg: cfg, log: cfg.Logger}
	if cfg.Token != "" {
		t, err := ParseToken(cfg.Token)
		if err != nil {
			errs = append(errs, fmt.Errorf("CA issuer: %w", err))
		}
		is.token = &t
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if is.log == nil {
		is.log = slog.Default()
	}
	if is.cfg.Now == nil {
		is.cfg.Now = time.Now
	}
	return is, nil
}

// IssuerKey names the issuer in certmagic's storage.
func (is *CAIssuer) IssuerKey() string { return "strait-ca" }

// Issue obtains a certificate for csr, which must ask for the bundle's
// identity.
func (is *CAIssuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	b := is.cfg.Bundle
	id, err := CSRIdentity(csr)
	if err != nil {
		return nil, err
	}
	if id != b.ID {
		return nil, fmt.Errorf("%w: certmagic asked for %s, this gateway is %s", ErrCSR, id, b.ID)
	}
	req := SignRequest{CSR: csr.Raw, Lifetime: is.cfg.Lifetime}
	now := is.cfg.Now()
	renewal := false
	if c := b.Certificate(); c != nil && c.Leaf != nil && now.Before(c.Leaf.NotAfter) && b.Trust() != nil {
		renewal = true
	} else if is.token != nil {
		req.Token = is.token
	} else if !is.cfg.Local {
		return nil, fmt.Errorf("obtain a certificate for %s: no current certificate to renew with and no join token (strait ca token)", id)
	}
	signed, err := is.cfg.Sign(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("CA servers for %s: %w", id, err)
	}
	chain, err := ParsePEMCertificates(signed.Chain)
	if err != nil {
		return nil, fmt.Errorf("certificate from the CA for %s: %w", id, err)
	}
	leaf := chain[0]
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(csr.PublicKey) {
		return nil, fmt.Errorf("the CA answered a certificate for another key than %s's request", id)
	}
	if leaf.Subject.CommonName != "" {
		return nil, fmt.Errorf("the CA answered a certificate with common name %q; certmagic would manage it under that name", leaf.Subject.CommonName)
	}
	trust := b.Trust()
	var roots []*x509.Certificate
	if !renewal {
		if len(signed.Roots) == 0 {
			return nil, errors.New("the CA answered no roots to check the first certificate by")
		}
		rs, err := ParsePEMCertificates(signed.Roots)
		if err != nil {
			return nil, fmt.Errorf("roots from the CA: %w", err)
		}
		if is.cfg.Local {
			roots = rs
		} else {
			root, err := req.Token.PinnedRoot(rs)
			if err != nil {
				return nil, err
			}
			roots = []*x509.Certificate{root}
		}
		if trust, err = NewTrust([]Domain{{Name: id.TrustDomain, Roots: roots}}, Revocations{}); err != nil {
			return nil, err
		}
	}
	got, err := trust.Verify(chain, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return nil, fmt.Errorf("certificate from the CA: %w", err)
	}
	if got != id {
		return nil, fmt.Errorf("the CA answered a certificate for %s, asked for %s", got, id)
	}
	if roots != nil {
		switch {
		case is.cfg.OnRoots != nil:
			is.cfg.OnRoots(roots)
		case b.Trust() == nil:
			b.SetTrust(trust)
		}
	}
	is.log.Info("certificate signed by the federation's CA", "identity", id.String(), "serial", SerialHex(leaf),
		"notAfter", leaf.NotAfter.UTC().Format(time.RFC3339), "renewal", renewal)
	return &certmagic.IssuedCertificate{Certificate: signed.Chain}, nil
}
