package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
)

// Certificate sources.
const (
	// SourceFiles reads the certificate, key and CA bundle from files
	// that another tool writes (cert-manager, SPIRE's helper, strait ca
	// issue) and reloads them when they change.
	SourceFiles = "files"
	// SourceCA obtains certificates from the federation's CA: the voters
	// sign a CSR over the control API, authorized by a join token the
	// first time and by the current certificate after that.
	SourceCA = "ca"
	// SourceACME obtains certificates from an ACME directory.
	SourceACME = "acme"
)

// DefaultRenewalRatio is the part of a certificate's lifetime after which
// it is renewed: two thirds.
const DefaultRenewalRatio = 2.0 / 3.0

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Bundle receives every certificate the manager obtains or loads.
	Bundle *Bundle
	// Source is SourceFiles, SourceCA or SourceACME.
	Source string
	// Issuer obtains certificates for SourceCA and SourceACME (for ACME,
	// NewACMEIssuer). An issuer with a SetConfig(*certmagic.Config)
	// method is bound to the manager's certmagic configuration.
	Issuer certmagic.Issuer
	// Name is what certmagic manages the certificate under. Default: for
	// SourceACME the bundle's DNS name (Bundle.DNSName), otherwise its
	// SPIFFE ID.
	Name string
	// Storage is the directory certmagic keeps certificates, keys and
	// locks in (SourceCA and SourceACME).
	Storage string
	// RenewCheck is how often certificates are checked for renewal.
	// Default 1m; lifetimes of seconds want a fraction of a second.
	RenewCheck time.Duration
	// Files is the SourceFiles paths and how often they are checked.
	Files FilesSource
	// OnRoots, when set, receives the CA bundle file's certificates each
	// time it changes (SourceFiles).
	OnRoots func([]*x509.Certificate)
	Logger  *slog.Logger
	// Registry receives the manager's metrics; nil registers nothing.
	Registry prometheus.Registerer
}

// FilesSource is a certificate kept in files by another tool.
type FilesSource struct {
	Cert, Key, CA string
	// Poll is how often the files are read for changes. Default 5s.
	Poll time.Duration
}

// Status is what a Manager reports of its certificate.
type Status struct {
	Source      string    `json:"source"`
	Identity    string    `json:"identity"`
	Serial      string    `json:"serial"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	NextRenewal time.Time `json:"nextRenewal,omitzero"`
	Renewals    int       `json:"renewals"`
	Failures    int       `json:"failures"`
	LastError   string    `json:"lastError,omitempty"`
	LastChange  time.Time `json:"lastChange"`
}

// Manager keeps a Bundle's certificate current through a certmagic cache:
// it obtains the first certificate, renews it at two thirds of its
// lifetime (SourceCA, SourceACME) or reloads it when its files change
// (SourceFiles), and puts each new one in the Bundle, so that new
// handshakes present it while open connections keep theirs.
type Manager struct {
	cfg    ManagerConfig
	log    *slog.Logger
	cache  *certmagic.Cache
	magic  *certmagic.Config
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}

	renewals   *prometheus.CounterVec
	registered []prometheus.Collector
	mu         sync.Mutex
	status     Status
	files      []byte // the cert, key and CA files last loaded
}

// StartManager starts a manager and returns once the bundle holds a
// certificate (obtained, or loaded from storage or files).
func StartManager(ctx context.Context, cfg ManagerConfig) (*Manager, error) {
	if cfg.Bundle == nil {
		return nil, errors.New("certificate manager: no bundle")
	}
	if cfg.Name == "" && cfg.Source == SourceACME {
		name, err := cfg.Bundle.DNSName()
		if err != nil {
			return nil, fmt.Errorf("certificate manager: an ACME certificate names the gateway by DNS name: %w", err)
		}
		cfg.Name = name
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Bundle.ID.String()
	}
	if cfg.RenewCheck <= 0 {
		cfg.RenewCheck = time.Minute
	}
	if cfg.Files.Poll <= 0 {
		cfg.Files.Poll = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{cfg: cfg, log: log.With("component", "certificates", "source", cfg.Source), done: make(chan struct{}), kick: make(chan struct{}, 1),
		status: Status{Source: cfg.Source, Identity: cfg.Bundle.ID.String()}}
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_identity_renewals_total",
		Help: "Certificates the certificate manager put in use after the first (renewed, or files changed), and failed attempts, by source and result (ok, failed)."}, []string{"source", "result"})
	for _, r := range []string{"ok", "failed"} {
		m.renewals.WithLabelValues(cfg.Source, r)
	}
	if cfg.Registry != nil {
		expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_identity_certificate_expiry_days",
			Help: "Days until the gateway's own certificate expires (negative once expired)."}, func() float64 {
			if c := cfg.Bundle.Certificate(); c != nil && c.Leaf != nil {
				return time.Until(c.Leaf.NotAfter).Hours() / 24
			}
			return 0
		})
		next := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strait_identity_certificate_renewal_timestamp_seconds",
			Help: "When the gateway's own certificate is next renewed (Unix seconds; 0 for files)."}, func() float64 {
			if t := m.Status().NextRenewal; !t.IsZero() {
				return float64(t.Unix())
			}
			return 0
		})
		for _, c := range []prometheus.Collector{m.renewals, expiry, next} {
			if err := cfg.Registry.Register(c); err != nil {
				m.unregister()
				return nil, fmt.Errorf("certificate manager metrics: %w", err)
			}
			m.registered = append(m.registered, c)
		}
	}

	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: cfg.RenewCheck,
		OCSPCheckInterval:  24 * time.Hour,
		Logger:             zapLogger(m.log),
	})
	mc := certmagic.Config{
		RenewalWindowRatio: 1 - DefaultRenewalRatio,
		OnEvent:            m.onEvent,
		OCSP:               certmagic.OCSPConfig{DisableStapling: true},
		DisableARI:         true,
		Logger:             zapLogger(m.log),
	}
	if cfg.Source != SourceFiles {
		if cfg.Issuer == nil {
			return nil, fmt.Errorf("certificate manager: source %s has no issuer", cfg.Source)
		}
		if cfg.Storage == "" {
			return nil, fmt.Errorf("certificate manager: source %s needs a storage directory", cfg.Source)
		}
		mc.Issuers = []certmagic.Issuer{cfg.Issuer}
		mc.Storage = &certmagic.FileStorage{Path: cfg.Storage}
	}
	m.magic = certmagic.New(m.cache, mc)
	if cs, ok := cfg.Issuer.(configSetter); ok {
		cs.SetConfig(m.magic)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	fail := func(err error) (*Manager, error) {
		cancel()
		m.cache.Stop()
		m.unregister()
		return nil, err
	}
	switch cfg.Source {
	case SourceFiles:
		if err := m.loadFiles(ctx); err != nil {
			return fail(err)
		}
		go m.watchFiles(runCtx)
	case SourceCA, SourceACME:
		if err := m.magic.ManageSync(ctx, []string{cfg.Name}); err != nil {
			return fail(fmt.Errorf("obtain certificate for %s from %s: %w", cfg.Name, cfg.Source, err))
		}
		if err := m.refresh(); err != nil {
			return fail(err)
		}
		go m.follow(runCtx)
	default:
		return fail(fmt.Errorf("certificate manager: unknown source %q (want files, ca or acme)", cfg.Source))
	}
	return m, nil
}

// configSetter is an issuer that needs the manager's certmagic
// configuration (ACMEIssuer: account storage, challenge listeners).
type configSetter interface {
	SetConfig(*certmagic.Config)
}

// Close stops renewing and watching and unregisters the metrics. The
// bundle keeps its certificate.
func (m *Manager) Close() {
	m.cancel()
	m.cache.Stop()
	<-m.done
	m.unregister()
}

func (m *Manager) unregister() {
	for _, c := range m.registered {
		m.cfg.Registry.Unregister(c)
	}
	m.registered = nil
}

// Status returns the manager's view of its certificate.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		m.log.Info("certificate obtained", "identity", data["identifier"], "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		m.renewals.WithLabelValues(m.cfg.Source, "failed").Inc()
		msg := fmt.Sprint(data["error"])
		m.mu.Lock()
		m.status.Failures++
		m.status.LastError = msg
		m.mu.Unlock()
		m.log.Warn("certificate renewal failed", "identity", data["identifier"], "renewal", data["renewal"], "remaining", data["remaining"], "err", msg)
	default:
		return nil
	}
	select {
	case m.kick <- struct{}{}:
	default:
	}
	return nil
}

// follow moves each certificate certmagic renews into the bundle.
func (m *Manager) follow(ctx context.Context) {
	defer close(m.done)
	poll := min(m.cfg.RenewCheck, 250*time.Millisecond)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		}
		if err := m.refresh(); err != nil {
			m.log.Warn("certificate not taken", "err", err)
		}
	}
}

// refresh puts certmagic's newest valid certificate for the name in the
// bundle if it is not there yet.
func (m *Manager) refresh() error {
	var best *certmagic.Certificate
	for _, c := range m.cache.AllMatchingCertificates(m.cfg.Name) {
		if c.Leaf == nil {
			continue
		}
		if best == nil || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = &c
		}
	}
	if best == nil {
		return fmt.Errorf("no certificate for %s in the cache", m.cfg.Name)
	}
	if cur := m.cfg.Bundle.Certificate(); cur != nil && cur.Leaf != nil && cur.Leaf.Equal(best.Leaf) {
		return nil
	}
	if err := m.take(best.Certificate); err != nil {
		m.renewals.WithLabelValues(m.cfg.Source, "failed").Inc()
		return err
	}
	return nil
}

// take puts cert in the bundle and records it.
func (m *Manager) take(cert tls.Certificate) error {
	first := m.cfg.Bundle.Certificate() == nil
	if err := m.cfg.Bundle.SetCertificate(cert); err != nil {
		return err
	}
	leaf := cert.Leaf
	m.mu.Lock()
	m.status.Serial, m.status.Issuer = SerialHex(leaf), leaf.Issuer.String()
	m.status.NotBefore, m.status.NotAfter = leaf.NotBefore, leaf.NotAfter
	if m.cfg.Source != SourceFiles {
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		m.status.NextRenewal = leaf.NotBefore.Add(time.Duration(float64(life) * DefaultRenewalRatio))
	}
	m.status.LastChange = time.Now()
	if !first {
		m.status.Renewals++
	}
	m.status.LastError = ""
	m.mu.Unlock()
	if !first {
		m.renewals.WithLabelValues(m.cfg.Source, "ok").Inc()
	}
	m.log.Info("certificate in use", "identity", m.cfg.Bundle.ID.String(), "serial", SerialHex(leaf),
		"notAfter", leaf.NotAfter.UTC().Format(time.RFC3339), "first", first)
	return nil
}

// loadFiles reads the files and, if they changed, takes the certificate
// and hands the CA bundle to OnRoots.
func (m *Manager) loadFiles(ctx context.Context) error {
	f := m.cfg.Files
	var all []byte
	var certPEM, keyPEM, caPEM []byte
	for _, p := range []struct {
		file string
		to   *[]byte
	}{{f.Cert, &certPEM}, {f.Key, &keyPEM}, {f.CA, &caPEM}} {
		if p.file == "" {
			continue
		}
		data, err := os.ReadFile(p.file)
		if err != nil {
			return fmt.Errorf("read %s: %w", p.file, err)
		}
		*p.to = data
		all = append(all, data...)
		all = append(all, 0)
	}
	m.mu.Lock()
	same := bytes.Equal(all, m.files)
	m.mu.Unlock()
	if same {
		return nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("key pair %s, %s: %w", f.Cert, f.Key, err)
	}
	if _, err := leafOf(&cert); err != nil {
		return fmt.Errorf("certificate %s: %w", f.Cert, err)
	}
	var roots []*x509.Certificate
	if f.CA != "" {
		if roots, err = ParsePEMCertificates(caPEM); err != nil {
			return fmt.Errorf("CA bundle %s: %w", f.CA, err)
		}
	}
	if _, err := m.magic.CacheUnmanagedTLSCertificate(ctx, cert, []string{"strait-files"}); err != nil {
		return fmt.Errorf("certificate %s: %w", f.Cert, err)
	}
	if cur := m.cfg.Bundle.Certificate(); cur == nil || cur.Leaf == nil || !cur.Leaf.Equal(cert.Leaf) {
		if err := m.take(cert); err != nil {
			return fmt.Errorf("certificate %s: %w", f.Cert, err)
		}
	}
	if roots != nil && m.cfg.OnRoots != nil {
		m.cfg.OnRoots(roots)
	}
	m.mu.Lock()
	m.files = all
	m.mu.Unlock()
	return nil
}

// watchFiles reloads the files every Poll. Reading them whole catches
// every way tools replace them (rewrites, renames, Kubernetes' symlink
// swaps of secret volumes). A tool replaces the certificate and the key
// one after the other, so a pair that does not match is a failure only
// when the next poll still finds it.
func (m *Manager) watchFiles(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.cfg.Files.Poll)
	defer t.Stop()
	var lastErr string
	torn := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := m.loadFiles(ctx)
		if err == nil {
			lastErr, torn = "", false
			continue
		}
		if !torn && lastErr == "" {
			torn = true
			continue
		}
		if err.Error() != lastErr {
			m.log.Warn("certificate files not reloaded; the current certificate stays in use", "err", err)
			m.renewals.WithLabelValues(m.cfg.Source, "failed").Inc()
			m.mu.Lock()
			m.status.Failures++
			m.status.LastError = err.Error()
			m.mu.Unlock()
		}
		lastErr = err.Error()
	}
}
