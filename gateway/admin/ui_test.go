package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/sovereignty"
)

// liveGateway is a Gateway with a topology page: one cluster that goes
// down when told, and a refusal channel the test feeds.
type liveGateway struct {
	down     chan struct{}
	refusals chan sovereignty.Record
}

func (g *liveGateway) Status() Status {
	reachable := true
	select {
	case <-g.down:
		reachable = false
	default:
	}
	return Status{Cluster: "a", Region: "eu-west", Clusters: []ClusterStatus{{Cluster: "a", Region: "eu-west", Reachable: true},
		{Cluster: "b", Region: "us-east", Reachable: reachable}}}
}
func (g *liveGateway) NotReady() []string               { return nil }
func (g *liveGateway) Warnings() []string               { return nil }
func (g *liveGateway) Keys() (catalog.KeyStatus, error) { return catalog.KeyStatus{}, nil }
func (g *liveGateway) ResidencyStatus() ResidencyStatus { return ResidencyStatus{InForce: true} }
func (g *liveGateway) PolicyInForce() (*sovereignty.Engine, uint64, error) {
	return nil, 0, nil
}
func (g *liveGateway) KeyOp(context.Context, string, string) (catalog.KeyResult, error) {
	return catalog.KeyResult{}, nil
}
func (g *liveGateway) Traffic() Traffic { return Traffic{Seconds: 300, Series: []TrafficSeries{}} }
func (g *liveGateway) FollowRefusals() ([]sovereignty.Record, <-chan sovereignty.Record, func()) {
	return []sovereignty.Record{{Decision: sovereignty.DecisionDeny, Status: 403}}, g.refusals, func() {}
}

func TestUIIsAnOperatorRoute(t *testing.T) {
	g := &liveGateway{down: make(chan struct{}), refusals: make(chan sovereignty.Record)}
	h := Handler(g, Options{Registry: prometheus.NewRegistry()})
	for _, tc := range []struct {
		path, host string
		want       int
		body       string
	}{
		{"/ui/", "127.0.0.1:15000", http.StatusOK, `<script src="app.js"`},
		{"/ui/app.js", "localhost:15000", http.StatusOK, "new EventSource"},
		{"/ui/", "evil.example:15000", http.StatusForbidden, ""},
		{"/ui/events", "evil.example:15000", http.StatusForbidden, ""},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("GET %s (Host %s): %d, want %d with %q", tc.path, tc.host, rec.Code, tc.want, tc.body)
		}
		if tc.want == http.StatusOK && !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: no Content-Security-Policy", tc.path)
		}
	}
	// With a token, the page needs it like any operator route.
	h = Handler(g, Options{Registry: prometheus.NewRegistry(), Access: Access{Auth: []Authenticator{NewBearerToken("0123456789abcdef-token")}}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1:15000/ui/", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /ui/ without the token: %d, want 401", rec.Code)
	}
}

func TestUIEventsFollowChangesAndRefusals(t *testing.T) {
	g := &liveGateway{down: make(chan struct{}), refusals: make(chan sovereignty.Record, 1)}
	srv := httptest.NewServer(Handler(g, Options{Registry: prometheus.NewRegistry()}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan [2]string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			if e, ok := strings.CutPrefix(line, "event: "); ok {
				ev = e
			} else if d, ok := strings.CutPrefix(line, "data: "); ok {
				select {
				case events <- [2]string{ev, d}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	next := func(want string) string {
		t.Helper()
		for {
			select {
			case e := <-events:
				if e[0] == want {
					return e[1]
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", want)
			}
		}
	}
	var s LiveSnapshot
	if err := json.Unmarshal([]byte(next("snapshot")), &s); err != nil || len(s.Status.Clusters) != 2 || !s.Status.Clusters[1].Reachable {
		t.Fatalf("first snapshot: %v %+v", err, s.Status.Clusters)
	}
	if r := next("refusal"); !strings.Contains(r, `"status":403`) {
		t.Errorf("recent refusal: %s", r)
	}
	g.refusals <- sovereignty.Record{Decision: sovereignty.DecisionDeny, Status: 503}
	if r := next("refusal"); !strings.Contains(r, `"status":503`) {
		t.Errorf("new refusal: %s", r)
	}
	close(g.down)
	start := time.Now()
	for {
		if err := json.Unmarshal([]byte(next("snapshot")), &s); err != nil {
			t.Fatal(err)
		}
		if !s.Status.Clusters[1].Reachable {
			break
		}
	}
	if took := time.Since(start); took > 3*liveTick {
		t.Errorf("the change reached the stream after %s, want within %s", took, 3*liveTick)
	}
}
