package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Access says who may use the operator endpoints. Every operator request
// is checked in this order, and the first check that fails answers it:
//
//	host          Host names localhost, a loopback address or one of Hosts       403
//	cross_origin  a browser's cross-site POST (Sec-Fetch-Site, Origin)           403
//	no_credentials, bad_credentials
//	              one of Auth accepts the request (skipped when Auth is empty)    401
//	content_type  a POST carries Content-Type: application/json                  415
//
// The Host check defeats DNS rebinding (a page whose name resolves to
// 127.0.0.1 still sends its own name); the Content-Type and Origin checks
// defeat a browser's cross-site POST, which cannot send application/json
// without a CORS preflight the admin API never answers.
type Access struct {
	// Hosts are the Host names and addresses operator requests may name
	// besides localhost and loopback addresses (the listen address and
	// admin.allowedHosts). Compared without port, case-insensitively.
	Hosts []string
	// Auth authenticates operators: a request must be accepted by one of
	// them. Empty: operator requests need no credentials (the gateway
	// allows that only with the admin listener on loopback).
	Auth []Authenticator
}

// Authenticator authenticates an operator request by one kind of
// credential: a bearer token (BearerToken) today; the client certificate
// of an operator identity, on a TLS admin listener, is meant to be another
// (it reads r.TLS.PeerCertificates).
type Authenticator interface {
	// Authenticate returns who r comes from when it carries a valid
	// credential of this kind, ErrNoCredentials when it carries none, and
	// another error when it carries a wrong one.
	Authenticate(r *http.Request) (operator string, err error)
}

// ErrNoCredentials is what an Authenticator returns for a request that
// carries no credential of its kind.
var ErrNoCredentials = errors.New("no credentials")

// minTokenBytes is the shortest token ReadTokenFile takes: a guessable
// token would make the check ceremony.
const minTokenBytes = 16

// ReadTokenFile reads an admin token: the file's content without
// surrounding white space, at least 16 bytes.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minTokenBytes {
		return "", fmt.Errorf("admin token file %s: want at least %d characters, found %d (head -c 32 /dev/urandom | base64 makes one)", path, minTokenBytes, len(tok))
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token file %s: the token must be one word, found white space inside it", path)
	}
	return tok, nil
}

// BearerToken accepts requests with "Authorization: Bearer <token>".
type BearerToken struct{ sum [sha256.Size]byte }

// NewBearerToken returns an Authenticator for token.
func NewBearerToken(token string) BearerToken {
	return BearerToken{sum: sha256.Sum256([]byte(token))}
}

var errBadToken = errors.New("wrong bearer token")

// Authenticate compares the token in constant time; hashing both sides
// first also hides the token's length.
func (b BearerToken) Authenticate(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", ErrNoCredentials
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoCredentials
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(sum[:], b.sum[:]) != 1 {
		return "", errBadToken
	}
	return "token", nil
}

// Reasons an operator request is refused: the label of
// strait_gateway_admin_refused_total.
const (
	RefusedHost           = "host"
	RefusedCrossOrigin    = "cross_origin"
	RefusedNoCredentials  = "no_credentials"
	RefusedBadCredentials = "bad_credentials"
	RefusedContentType    = "content_type"
)

// guard applies Access to operator endpoints.
type guard struct {
	hosts   []string // normalised
	auth    []Authenticator
	origin  *http.CrossOriginProtection
	refused *prometheus.CounterVec
	log     *slog.Logger
}

func newGuard(a Access, refused *prometheus.CounterVec, log *slog.Logger) *guard {
	g := &guard{auth: a.Auth, origin: http.NewCrossOriginProtection(), refused: refused, log: log}
	for _, h := range a.Hosts {
		if h = normalHost(h); h != "" {
			g.hosts = append(g.hosts, h)
		}
	}
	return g
}

// operatorKey is the context key of the authenticated operator's name.
type operatorKey struct{}

// operator wraps an operator endpoint in the checks of Access.
func (g *guard) operator(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.hostAllowed(r.Host) {
			g.refuse(w, r, RefusedHost, http.StatusForbidden, "admin API: Host "+quoteHost(r.Host)+" is not loopback, the listen address or in admin.allowedHosts")
			return
		}
		if err := g.origin.Check(r); err != nil {
			g.refuse(w, r, RefusedCrossOrigin, http.StatusForbidden, "admin API: cross-origin request refused")
			return
		}
		who := "loopback"
		if len(g.auth) > 0 {
			reason := RefusedNoCredentials
			who = ""
			for _, a := range g.auth {
				name, err := a.Authenticate(r)
				if err == nil {
					who = name
					break
				}
				if !errors.Is(err, ErrNoCredentials) {
					reason = RefusedBadCredentials
				}
			}
			if who == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="strait admin"`)
				msg := "admin API: operator credentials required (Authorization: Bearer, --admin-token-file)"
				if reason == RefusedBadCredentials {
					msg = "admin API: wrong operator credentials"
				}
				g.refuse(w, r, reason, http.StatusUnauthorized, msg)
				return
			}
		}
		// A DELETE needs no content type: no browser sends one cross-site
		// without a preflight (DELETE /v1/faults/{id} has no body).
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				g.refuse(w, r, RefusedContentType, http.StatusUnsupportedMediaType, "admin API: want Content-Type: application/json")
				return
			}
		}
		h(w, r.WithContext(withOperator(r.Context(), who)))
	}
}

func (g *guard) refuse(w http.ResponseWriter, r *http.Request, reason string, code int, msg string) {
	if g.refused != nil {
		g.refused.WithLabelValues(reason).Inc()
	}
	g.log.Warn("admin request refused", "reason", reason, "method", r.Method, "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr)
	http.Error(w, msg, code)
}

// hostAllowed reports whether a request's Host names this gateway:
// localhost, a loopback address or one of the configured hosts.
func (g *guard) hostAllowed(host string) bool {
	h := normalHost(host)
	if h == "" {
		return false
	}
	if h == "localhost" {
		return true
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	return slices.Contains(g.hosts, h)
}

// normalHost strips the port, brackets and a trailing dot, lower-cases a
// name and writes an address in its canonical form.
func normalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return host
}

// quoteHost quotes a Host for an error message, bounded.
func quoteHost(h string) string {
	if len(h) > 100 {
		h = h[:100] + "..."
	}
	return fmt.Sprintf("%q", h)
}
