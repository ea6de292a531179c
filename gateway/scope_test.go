package gateway_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/sovereignty"
)

// TestCatalogScopeFollowsThePolicy: the scope handed to the catalog reads
// the policy in force at each call, and fails closed without one.
func TestCatalogScopeFollowsThePolicy(t *testing.T) {
	e, err := sovereignty.Compile("p.yaml", []byte(strings.Replace(goodPolicy, "      match:", "      catalog: region-only\n      match:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	src := gateway.NewMemoryPolicySource(nil)
	cfg := gateway.DefaultConfig()
	g, err := startGatewayWith(t, cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	var scope catalog.Scope = g.CatalogScope()
	ledger := map[string]string{"data-class": "pii-eu"}
	if regions, restricted := scope.CatalogRegions("demo", "ledger", ledger); !restricted || len(regions) != 0 {
		t.Errorf("no policy yet: %v %v, want restricted to no region", regions, restricted)
	}
	// Without a policy the data plane refuses every flow too.
	c, err := net.Dial("tcp", g.ConnectAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT echo.demo.svc.clusterset.local:80 HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get("X-Strait-Reason"), "no policy in force yet") {
		t.Errorf("no policy: %s %q", resp.Status, resp.Header.Get("X-Strait-Reason"))
	}
	src.Set(e)
	if regions, restricted := scope.CatalogRegions("demo", "ledger", ledger); !restricted || strings.Join(regions, ",") != "eu-central,eu-west" {
		t.Errorf("region-only class: %v %v", regions, restricted)
	}
	if _, restricted := scope.CatalogRegions("demo", "echo", nil); restricted {
		t.Error("an unclassified service is restricted")
	}
	src.Set(sovereignty.AllowAll())
	if _, restricted := scope.CatalogRegions("demo", "ledger", ledger); restricted {
		t.Error("scope did not follow the policy change")
	}
}
