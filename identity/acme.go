package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// ACME challenge types an ACMEIssuer can solve.
const (
	// ChallengeHTTP01 answers the CA on port 80 of the name, over HTTP.
	ChallengeHTTP01 = "http-01"
	// ChallengeTLSALPN01 answers the CA on port 443 of the name, in a TLS
	// handshake with the acme-tls/1 protocol.
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ACMEConfig configures the ACME source of a trust domain whose gateways
// are identified by DNS name (Domain.DNSSuffix): any ACME directory,
// through certmagic's ACME issuer.
type ACMEConfig struct {
	// Directory is the URL of the ACME directory (https). Required.
	Directory string
	// Email is the account's contact address. Optional.
	Email string
	// AgreeToTerms accepts the CA's subscriber agreement on the
	// operator's behalf. Required: it must be true.
	AgreeToTerms bool
	// Roots verify the directory's TLS certificate (a private CA's, or
	// Pebble's test CA). Default: the system's roots.
	Roots []*x509.Certificate
	// EAB binds the account to an external account, for directories that
	// require one (ZeroSSL, step-ca, Vault PKI with EAB). Default none.
	EAB *EAB
	// Challenges are the challenge types offered to solve, from
	// ChallengeHTTP01 and ChallengeTLSALPN01. Default both.
	Challenges []string
	// ListenHost is the host the challenge listeners bind, for the
	// moments a challenge is open: "" binds every interface, 127.0.0.1
	// only loopback (behind a port forward or a proxy). Default "".
	ListenHost string
	// HTTPPort is the port the HTTP-01 listener binds. The CA always
	// connects to port 80 of the name; another port needs a forward from
	// 80. Default 80.
	HTTPPort int
	// TLSALPNPort is the port the TLS-ALPN-01 listener binds. The CA
	// always connects to port 443 of the name; another port needs a
	// forward from 443. Default 443.
	TLSALPNPort int
	// Profile names an ACME profile the directory offers (Let's Encrypt's
	// "shortlived", for example). Default "": the directory's default.
	Profile string
	// Logger receives the issuer's log lines; certmagic's informational
	// ones at debug level. Default slog.Default().
	Logger *slog.Logger
}

// EAB is an ACME external account binding: the key identifier and the
// base64url-encoded MAC key the CA gave out of band.
type EAB struct {
	KeyID  string
	MACKey string
}

// Validate reports every problem of c at once, each naming its field.
func (c ACMEConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("acme.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Directory == "" {
		bad("directory", "required value missing")
	} else if u, err := url.Parse(c.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("directory", "%q is not an https URL", c.Directory)
	}
	if !c.AgreeToTerms {
		bad("agreeToTerms", "must be true: the CA's subscriber agreement is accepted when the account is created")
	}
	if c.EAB != nil && (c.EAB.KeyID == "" || c.EAB.MACKey == "") {
		bad("eab", "needs both a key identifier and a MAC key")
	}
	for _, ch := range c.Challenges {
		if ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01 {
			bad("challenges", "%q is not %s or %s", ch, ChallengeHTTP01, ChallengeTLSALPN01)
		}
	}
	if c.Challenges != nil && len(c.Challenges) == 0 {
		bad("challenges", "empty: no challenge could be solved")
	}
	if c.ListenHost != "" && net.ParseIP(c.ListenHost) == nil {
		bad("listenHost", "%q is not an IP address", c.ListenHost)
	}
	for _, p := range []struct {
		field string
		port  int
	}{{"httpPort", c.HTTPPort}, {"tlsALPNPort", c.TLSALPNPort}} {
		if p.port < 0 || p.port > 65535 {
			bad(p.field, "%d is not a port", p.port)
		}
	}
	return errors.Join(errs...)
}

// ACMEIssuer obtains certificates from an ACME directory for a Manager
// (Source SourceACME). It wraps certmagic's ACMEIssuer, which the Manager
// binds to its own certmagic configuration (account storage, challenge
// listeners) when it starts; used without a Manager it refuses to issue.
type ACMEIssuer struct {
	cfg ACMEConfig

	mu    sync.Mutex
	inner *certmagic.ACMEIssuer
}

// NewACMEIssuer checks cfg and returns an issuer for it.
func NewACMEIssuer(cfg ACMEConfig) (*ACMEIssuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ACME issuer: %w", err)
	}
	cfg.Roots = slices.Clone(cfg.Roots)
	cfg.Challenges = slices.Clone(cfg.Challenges)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &ACMEIssuer{cfg: cfg}, nil
}

// SetConfig binds the issuer to the certmagic configuration of the
// Manager that uses it (caddy's ConfigSetter): certmagic keeps the ACME
// account in that configuration's storage and serves TLS-ALPN-01
// challenges through it.
func (a *ACMEIssuer) SetConfig(mc *certmagic.Config) {
	c := a.cfg
	tmpl := certmagic.ACMEIssuer{
		CA: c.Directory,
		// Retries stay on the configured directory: certmagic would
		// otherwise retry Let's Encrypt's production directory on its
		// staging one, whose roots nobody here trusts.
		TestCA:                  c.Directory,
		Email:                   c.Email,
		Agreed:                  c.AgreeToTerms,
		Profile:                 c.Profile,
		DisableHTTPChallenge:    !a.offers(ChallengeHTTP01),
		DisableTLSALPNChallenge: !a.offers(ChallengeTLSALPN01),
		ListenHost:              c.ListenHost,
		AltHTTPPort:             c.HTTPPort,
		AltTLSALPNPort:          c.TLSALPNPort,
		Logger:                  zapLogger(c.Logger.With("component", "acme", "directory", c.Directory)),
	}
	if c.EAB != nil {
		tmpl.ExternalAccount = &acme.EAB{KeyID: c.EAB.KeyID, MACKey: c.EAB.MACKey}
	}
	if len(c.Roots) > 0 {
		tmpl.TrustedRoots = x509.NewCertPool()
		for _, r := range c.Roots {
			tmpl.TrustedRoots.AddCert(r)
		}
	}
	inner := certmagic.NewACMEIssuer(mc, tmpl)
	a.mu.Lock()
	a.inner = inner
	a.mu.Unlock()
}

func (a *ACMEIssuer) offers(challenge string) bool {
	return a.cfg.Challenges == nil || slices.Contains(a.cfg.Challenges, challenge)
}

func (a *ACMEIssuer) bound() (*certmagic.ACMEIssuer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inner == nil {
		return nil, fmt.Errorf("ACME issuer for %s: not bound to a certificate manager (StartManager binds it)", a.cfg.Directory)
	}
	return a.inner, nil
}

// PreCheck implements certmagic.PreChecker.
func (a *ACMEIssuer) PreCheck(ctx context.Context, names []string, interactive bool) error {
	inner, err := a.bound()
	if err != nil {
		return err
	}
	return inner.PreCheck(ctx, names, interactive)
}

// Issue implements certmagic.Issuer: it obtains a certificate for csr
// from the directory, solving one of the configured challenges.
func (a *ACMEIssuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	inner, err := a.bound()
	if err != nil {
		return nil, err
	}
	return inner.Issue(ctx, csr)
}

// IssuerKey implements certmagic.Issuer: the directory's host and path,
// under which certmagic stores what it obtains.
func (a *ACMEIssuer) IssuerKey() string {
	// certmagic's key depends on the directory URL alone; an unbound
	// issuer computes it the same way.
	return (&certmagic.ACMEIssuer{CA: a.cfg.Directory}).IssuerKey()
}

// Revoke implements certmagic.Revoker.
func (a *ACMEIssuer) Revoke(ctx context.Context, cert certmagic.CertificateResource, reason int) error {
	inner, err := a.bound()
	if err != nil {
		return err
	}
	return inner.Revoke(ctx, cert, reason)
}

var (
	_ certmagic.Issuer     = (*ACMEIssuer)(nil)
	_ certmagic.PreChecker = (*ACMEIssuer)(nil)
	_ certmagic.Revoker    = (*ACMEIssuer)(nil)
)
