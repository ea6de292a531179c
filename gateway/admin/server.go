package admin

import (
	"context"
	"encoding/json"
	"fmt"
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

// Handler serves the admin API of g, with reg's metrics on /metrics:
//
//	GET  /healthz                 "ok" while the process runs
//	GET  /readyz                  200 "ready" (and warnings) or 503 with the reasons
//	GET  /metrics                 Prometheus metrics
//	GET  /v1/status               Status as JSON
//	GET  /v1/keys                 installed gossip keys
//	POST /v1/keys/{op}            install, use or remove a gossip key: {"key": "<base64>"}
//	GET  /v1/residency            the policy in force, as JSON
//	GET  /v1/residency/policy     the policy document itself (X-Strait-Policy-Version)
func Handler(g Gateway, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
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
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		ks, err := g.Keys()
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, ks)
	})
	mux.HandleFunc("POST /v1/keys/{op}", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Key string `json:"key"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "body: want {\"key\": \"<base64>\"}: "+err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		res, err := g.KeyOp(ctx, r.PathValue("op"), req.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, g.Status())
	})
	mux.HandleFunc("GET /v1/residency", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, g.ResidencyStatus())
	})
	mux.HandleFunc("GET /v1/residency/policy", func(w http.ResponseWriter, r *http.Request) {
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
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
