package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/fault"
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

func (a *faultAPI) client(g *FederationGateway) admin.Client {
	return admin.Client{Addr: g.Admin, Token: g.token, HTTP: a.http}
}

func adminURL(g *FederationGateway, path string) string {
	if strings.Contains(g.Admin, "://") {
		return strings.TrimSuffix(g.Admin, "/") + path
	}
	return "http://" + g.Admin + path
}

// inject puts (or renews) a fault on one gateway.
func (a *faultAPI) inject(ctx context.Context, g *FederationGateway, s fault.Spec) error {
	if _, err := a.client(g).InjectFault(ctx, s); err != nil {
		return fmt.Errorf("inject %s on %s: %w", s.Kind, g.Name, err)
	}
	return nil
}

// undo removes a fault from one gateway; a fault the gateway no longer
// has (its lease ran out, it restarted) is undone already.
func (a *faultAPI) undo(ctx context.Context, g *FederationGateway, id string) error {
	_, err := a.client(g).UndoFault(ctx, id)
	var se *admin.StatusError
	if err != nil && !(errors.As(err, &se) && se.Code == http.StatusNotFound) {
		return fmt.Errorf("undo %s on %s: %w", id, g.Name, err)
	}
	return nil
}

// faults lists the faults a gateway holds; it fails when fault mode is
// off or the gateway cannot be reached.
func (a *faultAPI) faults(ctx context.Context, g *FederationGateway) ([]fault.Fault, error) {
	return a.client(g).Faults(ctx)
}

// ready reports whether a gateway answers /readyz with 200, and why not.
func (a *faultAPI) ready(ctx context.Context, g *FederationGateway) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL(g, "/readyz"), nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK, strings.TrimSpace(string(b))
}
