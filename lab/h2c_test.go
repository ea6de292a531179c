package lab_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/straitmesh/strait/lab"
)

// TestDemoSpeaksH2CAndGRPCThroughAnImportPort: the demo service answers
// HTTP/2 with prior knowledge and gRPC's health service, and both cross
// gateways through a per-import port (carried as L4) to cluster b.
func TestDemoSpeaksH2CAndGRPCThroughAnImportPort(t *testing.T) {
	l := twoClusters(t)
	imp := l.Gateway("a").ImportAddrs()["demo/ledger:8080"]

	h2 := h2cClient()
	resp, err := h2.Get("http://" + imp + "/")
	if err != nil {
		t.Fatalf("h2c GET through the import port: %v", err)
	}
	defer resp.Body.Close()
	var r lab.Reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || r.Cluster != "b" {
		t.Fatalf("answered over HTTP/%d by %q, want HTTP/2 from b", resp.ProtoMajor, r.Cluster)
	}

	conn, err := grpc.NewClient(imp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "demo/ledger"})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health of demo/ledger through the import port: %v, %v", hc, err)
	}
}

// h2cClient speaks HTTP/2 with prior knowledge to http:// URLs.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}
