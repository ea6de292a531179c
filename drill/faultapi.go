package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// faultAPI calls gateways' admin APIs: the fault routes and /readyz.
type faultAPI struct {
	http *http.Client
}

func newFaultAPI() *faultAPI {
	return &faultAPI{http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second,
	}}}
}

func adminURL(g *FederationGateway, path string) string {
	if strings.Contains(g.Admin, "://") {
		return strings.TrimSuffix(g.Admin, "/") + path
	}
	return "http://" + g.Admin + path
}

func (a *faultAPI) do(ctx context.Context, g *FederationGateway, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, adminURL(g, path), rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, nil
}

// inject puts (or renews) a fault on one gateway.
func (a *faultAPI) inject(ctx context.Context, g *FederationGateway, f Fault) error {
	code, body, err := a.do(ctx, g, http.MethodPost, "/v1/faults", f)
	if err != nil {
		return fmt.Errorf("inject %s on %s (%s): %w", f.Kind, g.Name, g.Admin, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("inject %s on %s (%s): %d %s", f.Kind, g.Name, g.Admin, code, strings.TrimSpace(string(body)))
	}
	return nil
}

// undo removes a fault from one gateway; a fault the gateway no longer
// has (its lease ran out, it restarted) is undone already.
func (a *faultAPI) undo(ctx context.Context, g *FederationGateway, id string) error {
	code, body, err := a.do(ctx, g, http.MethodDelete, "/v1/faults/"+url.PathEscape(id), nil)
	if err != nil {
		return fmt.Errorf("undo %s on %s (%s): %w", id, g.Name, g.Admin, err)
	}
	if code != http.StatusOK && code != http.StatusNotFound {
		return fmt.Errorf("undo %s on %s (%s): %d %s", id, g.Name, g.Admin, code, strings.TrimSpace(string(body)))
	}
	return nil
}

// ready reports whether a gateway answers /readyz with 200, and why not.
func (a *faultAPI) ready(ctx context.Context, g *FederationGateway) (bool, string) {
	code, body, err := a.do(ctx, g, http.MethodGet, "/readyz", nil)
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, strings.TrimSpace(string(body))
}
