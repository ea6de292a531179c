package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/sovereignty"
)

// Gateway is what the admin API serves; the gateway process implements it.
type Gateway interface {
	// Status is the document of GET /v1/status.
	Status() Status
	// NotReady lists why the gateway should not receive traffic yet;
	// empty when ready.
	NotReady() []string
	// Warnings are conditions that do not fail readiness (a stale state).
	Warnings() []string
	// Keys lists the installed gossip keys.
	Keys() (catalog.KeyStatus, error)
	// KeyOp applies a gossip key operation federation-wide.
	KeyOp(ctx context.Context, op, key string) (catalog.KeyResult, error)
	// ResidencyStatus describes the residency policy in force.
	ResidencyStatus() ResidencyStatus
	// PolicyInForce is the compiled policy in force and its version, or an error
	// saying why none is.
	PolicyInForce() (*sovereignty.Engine, uint64, error)
}

// Options configure the admin handlers.
type Options struct {
	// Registry's metrics are served on /metrics. Required.
	Registry *prometheus.Registry
	// Access guards the operator endpoints.
	Access Access
	// Refused counts refused operator requests by "reason" (the Refused*
	// constants). Optional.
	Refused *prometheus.CounterVec
	// Logger gets a line per refused request and per key operation.
	// Default slog.Default().
	Logger *slog.Logger
}

// Handler serves the admin API of g. Routes are of two classes:
//
// Probe routes answer anyone, with no Host or credential check: kubelets,
// load balancers and Prometheus address a gateway by whatever IP they
// know, and these routes neither reveal keys nor change anything.
//
//	GET  /healthz                 "ok" while the process runs
//	GET  /readyz                  200 "ready" (and warnings) or 503 with the reasons
//	GET  /metrics                 Prometheus metrics
//
// Operator routes go through Access (Host, cross-origin, credentials when
// configured, Content-Type of a POST). The read-only views are operator
// routes too: they lay out the federation's topology, addresses and
// policy, which is reconnaissance for whoever can reach the port.
//
//	GET  /v1/status               Status as JSON
//	GET  /v1/keys                 fingerprints of the installed gossip keys (KeyList), never the keys
//	POST /v1/keys/{op}            install, use or remove a gossip key: {"key": "<base64>"}; the
//	                              answer (KeyOpResult) names the key by its fingerprint only
//	GET  /v1/residency            the policy in force, as JSON
//	GET  /v1/residency/policy     the policy document itself (X-Strait-Policy-Version)
//	GET  /ui/, /ui/events         the topology page and its event stream, when g is Live (ui.go)
//	POST, GET /v1/faults; DELETE /v1/faults/{id}   fault mode, when g implements Faults (faults.go)
func Handler(g Gateway, opts Options) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	probeRoutes(mux, g, opts.Registry)
	op := newGuard(opts.Access, opts.Refused, log).operator
	if live, ok := g.(Live); ok {
		uiRoutes(mux, g, live, op) // the topology page (ui.go)
	}
	mux.HandleFunc("GET /v1/keys", op(func(w http.ResponseWriter, r *http.Request) {
		ks, err := g.Keys()
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		kl := KeyList{Primary: catalog.KeyFingerprint(ks.Primary), Keys: make([]string, len(ks.Keys))}
		for i, k := range ks.Keys {
			kl.Keys[i] = catalog.KeyFingerprint(k)
		}
		writeJSON(w, kl)
	}))
	mux.HandleFunc("POST /v1/keys/{op}", op(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key string `json:"key"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "body: want {\"key\": \"<base64>\"}: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		fp := catalog.KeyFingerprint(req.Key)
		res, err := g.KeyOp(ctx, r.PathValue("op"), req.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Info("gossip key operation", "op", res.Op, "key", fp, "operator", operatorOf(r.Context()), "remote", r.RemoteAddr,
			"applied", len(res.Applied), "failed", len(res.Failed))
		writeJSON(w, KeyOpResult{Fingerprint: fp, KeyResult: res})
	}))
	faultRoutes(mux, g, op, log)
	mux.HandleFunc("GET /v1/status", op(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, g.Status())
	}))
	mux.HandleFunc("GET /v1/residency", op(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, g.ResidencyStatus())
	}))
	mux.HandleFunc("GET /v1/residency/policy", op(func(w http.ResponseWriter, r *http.Request) {
		eng, version, err := g.PolicyInForce()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("X-Strait-Policy-Version", strconv.FormatUint(version, 10))
		w.Header().Set("X-Strait-Policy-Digest", eng.Digest())
		w.Header().Set("X-Strait-Policy-File", eng.File())
		_, _ = w.Write(eng.Source())
	}))
	return mux
}

// ProbeHandler serves the probe routes only (/healthz, /readyz,
// /metrics), for a listener that may bind wider than the admin one
// (listen.probes). Every other path is 404 there.
func ProbeHandler(g Gateway, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	probeRoutes(mux, g, reg)
	return mux
}

func probeRoutes(mux *http.ServeMux, g Gateway, reg *prometheus.Registry) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reasons := g.NotReady(); len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, r := range reasons {
				fmt.Fprintln(w, r)
			}
			return
		}
		fmt.Fprintln(w, "ready")
		for _, warn := range g.Warnings() {
			fmt.Fprintln(w, "warning:", warn)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// KeyList is the document of GET /v1/keys: the installed gossip keys by
// fingerprint (catalog.KeyFingerprint), the one gateways send with first.
type KeyList struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
}

// KeyOpResult is the answer of POST /v1/keys/{op}: which gateways applied
// the operation, and the fingerprint of the key it was about.
type KeyOpResult struct {
	Fingerprint string `json:"fingerprint"`
	catalog.KeyResult
}

func withOperator(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, operatorKey{}, who)
}

func operatorOf(ctx context.Context) string {
	s, _ := ctx.Value(operatorKey{}).(string)
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
