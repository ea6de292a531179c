package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/straitmesh/strait/sovereignty"
)

// ResidencyStatus is the document served on /v1/residency.
type ResidencyStatus struct {
	Policy   sovereignty.PolicyInfo `json:"policy"`
	InForce  bool                   `json:"inForce"` // false: no policy accepted yet, every flow is refused
	Default  string                 `json:"default,omitempty"`
	Regions  []string               `json:"regions"`
	Groups   map[string][]string    `json:"groups"`
	Classes  []ResidencyClass       `json:"classes"`
	Headers  []string               `json:"headers"` // the headers the policy classifies by
	Rejected string                 `json:"lastRejected,omitempty"`
}

// ResidencyClass is one class of the policy in force.
type ResidencyClass struct {
	Name      string   `json:"name"`
	Allowed   []string `json:"allowed"`
	AllowedAs []string `json:"allowedAs"`
	Catalog   string   `json:"catalog"`
	Rule      string   `json:"rule"`
	Matchers  []string `json:"matchers"`
}

// ResidencyStatus describes the residency policy in force.
func (g *Gateway) ResidencyStatus() ResidencyStatus {
	eng, version := g.res.current()
	st := ResidencyStatus{Regions: []string{}, Groups: map[string][]string{}, Classes: []ResidencyClass{}, Headers: []string{}}
	if rj, ok := g.res.src.(PolicyRejections); ok {
		if _, _, err := rj.LastRejection(); err != nil {
			st.Rejected = err.Error()
		}
	}
	if eng == nil {
		return st
	}
	st.InForce = true
	st.Policy = g.res.info(eng, version)
	st.Policy.Source = g.res.origin
	st.Default, st.Regions, st.Groups = eng.Default(), eng.Regions(), eng.Groups()
	st.Headers = append(st.Headers, eng.HeaderNames()...)
	for _, c := range eng.ClassList() {
		rc := ResidencyClass{Name: c.Name, Allowed: c.Allowed, AllowedAs: c.AllowedAs, Catalog: c.Catalog, Rule: c.Rule.Path + " at " + c.Rule.At, Matchers: []string{}}
		for _, m := range c.Matchers {
			rc.Matchers = append(rc.Matchers, m.Kind+" "+m.Text)
		}
		st.Classes = append(st.Classes, rc)
	}
	return st
}

// residencyRoutes serves the residency admin API:
//
//	GET /v1/residency         the policy in force, as JSON
//	GET /v1/residency/policy  the policy document itself (X-Strait-Policy-Version)
func (g *Gateway) residencyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/residency", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.ResidencyStatus())
	})
	mux.HandleFunc("GET /v1/residency/policy", func(w http.ResponseWriter, r *http.Request) {
		eng, version := g.res.current()
		if eng == nil {
			http.Error(w, errNoPolicy.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("X-Strait-Policy-Version", strconv.FormatUint(version, 10))
		w.Header().Set("X-Strait-Policy-Digest", eng.Digest())
		w.Header().Set("X-Strait-Policy-File", eng.File())
		_, _ = w.Write(eng.Source())
	})
}

// FetchPolicy reads the policy in force from a gateway's admin address
// and compiles it under the file name the gateway has for it, so rule
// positions read as they do in the gateway's own audit trail.
func FetchPolicy(ctx context.Context, admin string) (*sovereignty.Engine, uint64, error) {
	url := admin
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + "/v1/residency/policy"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", admin, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, sovereignty.MaxFileBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", admin, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("policy from %s: %s: %s", admin, resp.Status, strings.TrimSpace(string(body)))
	}
	version, _ := strconv.ParseUint(resp.Header.Get("X-Strait-Policy-Version"), 10, 64)
	name := resp.Header.Get("X-Strait-Policy-File")
	if name == "" {
		name = url
	}
	eng, err := sovereignty.Compile(name, body)
	if err != nil {
		return nil, 0, fmt.Errorf("policy from %s: %w", admin, err)
	}
	return eng, version, nil
}
