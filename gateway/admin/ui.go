package admin

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/straitmesh/strait/sovereignty"
)

// The topology page: static assets embedded in the binary (nothing is
// fetched from the network) and one server-sent event stream.
//
//	GET  /ui/                     the page (index.html, app.js, style.css)
//	GET  /ui/events               text/event-stream: "snapshot" events (LiveSnapshot) at once,
//	                              on every change of the topology and at least every second;
//	                              "refusal" events (sovereignty.Record) as the audit trail
//	                              writes them, the latest ones first on connect
//
// Both are operator routes. EventSource cannot send an Authorization
// header, so with admin.tokenFile set the page is refused like any other
// request without the token: the page is for an admin listener on
// loopback without a token, reached from elsewhere through an SSH tunnel
// (docs/ui.md). A token in the URL would end up in browser history and
// proxy logs, so none is taken.

//go:embed ui
var uiFiles embed.FS

// Live is what the topology page needs from a gateway beyond Status. A
// Gateway that implements it gets the /ui/ routes.
type Live interface {
	// Traffic is the flows the gateway sent in the last minutes.
	Traffic() Traffic
	// FollowRefusals returns the latest refusals (oldest first) and a
	// channel of those that come after them, until stop is called. A
	// subscriber that does not keep up loses events (counted), never
	// slows the data plane; the channel closes when the gateway stops.
	FollowRefusals() (recent []sovereignty.Record, next <-chan sovereignty.Record, stop func())
}

// Traffic is per-second counts of the flows a gateway sent, by service,
// destination cluster and residency class, oldest second first.
type Traffic struct {
	// End is the start of the second after the last one counted.
	End time.Time `json:"end"`
	// Seconds is the length of every series' Counts.
	Seconds int             `json:"seconds"`
	Series  []TrafficSeries `json:"series"`
	// Overflow counts flows not kept per series because the series cap
	// was reached (they are in the gateway's metrics all the same).
	Overflow uint64 `json:"overflow"`
}

// TrafficSeries is the flows to one service in one destination cluster
// with one residency class ("none": the flow carried none).
type TrafficSeries struct {
	Service     string   `json:"service"`
	Destination string   `json:"destination"`
	Class       string   `json:"class"`
	Counts      []uint32 `json:"counts"`
	Total       uint64   `json:"total"`
}

// LiveSnapshot is the document of a "snapshot" event.
type LiveSnapshot struct {
	Time    time.Time              `json:"time"`
	Status  Status                 `json:"status"`
	Policy  sovereignty.PolicyInfo `json:"policy"`
	InForce bool                   `json:"inForce"`
	Traffic Traffic                `json:"traffic"`
}

// liveTick is how often the event stream looks for a change: a failover
// reaches the page within this of the gateway's status showing it.
const liveTick = 200 * time.Millisecond

// liveEvery is the longest gap between two snapshots.
const liveEvery = time.Second

func uiRoutes(mux *http.ServeMux, g Gateway, live Live, op func(http.HandlerFunc) http.HandlerFunc) {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	mux.HandleFunc("GET /ui/", op(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /ui/events", op(func(w http.ResponseWriter, r *http.Request) {
		serveEvents(w, r, g, live)
	}))
}

// serveEvents streams snapshots and refusals until the client goes away.
func serveEvents(w http.ResponseWriter, r *http.Request, g Gateway, live Live) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	recent, next, stop := live.FollowRefusals()
	defer stop()
	send := func(event string, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	snapshot := func() (LiveSnapshot, string) {
		rs := g.ResidencyStatus()
		s := LiveSnapshot{Time: time.Now().UTC(), Status: g.Status(), Policy: rs.Policy, InForce: rs.InForce, Traffic: live.Traffic()}
		return s, changeKey(s)
	}
	s, last := snapshot()
	if !send("snapshot", s) {
		return
	}
	for _, rec := range recent {
		if !send("refusal", rec) {
			return
		}
	}
	tick := time.NewTicker(liveTick)
	defer tick.Stop()
	sent := time.Now()
	for {
		select {
		case <-r.Context().Done():
			return
		case rec, ok := <-next:
			if !ok {
				return
			}
			if !send("refusal", rec) {
				return
			}
		case now := <-tick.C:
			s, key := snapshot()
			if key == last && now.Sub(sent) < liveEvery {
				continue
			}
			if !send("snapshot", s) {
				return
			}
			last, sent = key, now
		}
	}
}

// changeKey is what of a snapshot makes the page worth redrawing at once:
// clusters and gateways up or down, tunnel states, the routing state's
// leader and index, the policy version and what is ejected.
func changeKey(s LiveSnapshot) string {
	var b strings.Builder
	for _, c := range s.Status.Clusters {
		fmt.Fprintf(&b, "c %s %t %d;", c.Cluster, c.Reachable, len(c.Services))
	}
	for _, m := range s.Status.Members {
		fmt.Fprintf(&b, "m %s %s;", m.Node, m.State)
	}
	for _, t := range s.Status.Tunnels {
		fmt.Fprintf(&b, "t %s %s;", t.Peer, t.State)
	}
	if st := s.Status.State; st != nil {
		fmt.Fprintf(&b, "s %s %s %d %t;", st.Role, st.Leader, st.Index, st.Stale)
	}
	for _, e := range s.Status.Ejected {
		fmt.Fprintf(&b, "e %s %s %s%s;", e.Service, e.Cluster, e.Endpoint, e.Gateway)
	}
	fmt.Fprintf(&b, "p %d %t", s.Policy.Version, s.InForce)
	return b.String()
}
