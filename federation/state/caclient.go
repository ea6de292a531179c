package state

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/straitmesh/strait/identity"
)

// CAIssuerConfig configures the certmagic issuer of a gateway whose
// certificates come from the federation's CA (tls.source: ca).
type CAIssuerConfig struct {
	// Bundle is the gateway's identity (identity.NewBundleFor before its
	// first certificate). Required.
	Bundle *identity.Bundle
	// Servers are control addresses (host:port) of voters; a follower
	// sends the request on to the leader. Required.
	Servers []string
	// Token is the join token's text for the first certificate; empty
	// once the gateway has one.
	Token string
	// Lifetime to ask for; 0 leaves it to the CA (state.ca.lifetime).
	Lifetime time.Duration
	// Timeout bounds one attempt at one server. Default 10s.
	Timeout time.Duration
	// OnRoots receives the CA's roots after the first certificate
	// (identity.CAIssuerConfig.OnRoots).
	OnRoots func([]*x509.Certificate)
	Logger  *slog.Logger
}

// NewCAIssuer returns the certmagic issuer that obtains cfg.Bundle's
// certificates from the CA servers over the control API: the first with
// no client certificate and the join token, to a server verified against
// the token's root hash; every renewal with the bundle's current
// certificate.
func NewCAIssuer(cfg CAIssuerConfig) (*identity.CAIssuer, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("CA issuer: no CA servers (control addresses of voters)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	c := &caClient{cfg: cfg}
	return identity.NewCAIssuer(identity.CAIssuerConfig{Bundle: cfg.Bundle, Token: cfg.Token, Sign: c.sign, Lifetime: cfg.Lifetime, OnRoots: cfg.OnRoots, Logger: cfg.Logger})
}

// caClient asks the CA servers in turn, beginning with the one that
// answered last.
type caClient struct {
	cfg CAIssuerConfig

	mu   sync.Mutex
	next int
}

func (c *caClient) sign(ctx context.Context, req identity.SignRequest) (*identity.SignedChain, error) {
	var conf *tls.Config
	r := &SignRequest{CSR: req.CSR, Lifetime: req.Lifetime}
	if req.Token != nil {
		conf, r.Token = req.Token.EnrolmentClientConfig(), req.Token.String()
	} else {
		conf = c.cfg.Bundle.ClientConfig("control.strait")
	}
	c.mu.Lock()
	start := c.next
	c.mu.Unlock()
	var errs []error
	for i := range c.cfg.Servers {
		at := (start + i) % len(c.cfg.Servers)
		addr := c.cfg.Servers[at]
		resp, err := c.signAt(ctx, addr, conf, r)
		if err == nil {
			c.mu.Lock()
			c.next = at
			c.mu.Unlock()
			return &identity.SignedChain{Chain: []byte(resp.Chain), Roots: []byte(resp.Roots)}, nil
		}
		// A refusal is the federation's answer, wherever it is asked.
		if errors.Is(err, ErrDenied) || errors.Is(err, ErrInvalid) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func (c *caClient) signAt(ctx context.Context, addr string, conf *tls.Config, r *SignRequest) (*SignResponse, error) {
	cl, err := dialControlTLS(addr, conf)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := cl.SignCertificate(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("CA server %s: %w", addr, err)
	}
	return resp, nil
}
