package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/straitmesh/strait/gateway/route"
)

// Status is the document served on /v1/status and printed by `strait status`.
type Status struct {
	Node      string          `json:"node"`
	Cluster   string          `json:"cluster"`
	Region    string          `json:"region"`
	Zone      string          `json:"zone,omitempty"`
	Cloud     string          `json:"cloud,omitempty"`
	Version   string          `json:"version,omitempty"`
	Ready     bool            `json:"ready"`
	StartedAt time.Time       `json:"startedAt"`
	Addresses Addresses       `json:"addresses"`
	Imports   []ImportStatus  `json:"imports"`
	Members   []MemberStatus  `json:"members"`
	Clusters  []ClusterStatus `json:"clusters"`
	// State is the routing state; absent when it is not enabled.
	State *StateStatus `json:"state,omitempty"`
	// Tunnels are the pooled tunnels to other gateways.
	Tunnels []TunnelStatus `json:"tunnels"`
	// Warnings are conditions that do not stop routing (a stale state).
	Warnings []string `json:"warnings,omitempty"`
	// Ejected lists the local endpoints and remote gateways that passive
	// outlier detection ejected: tried only after every other candidate.
	Ejected []route.EjectedStatus `json:"ejected,omitempty"`
}

// TunnelStatus is one outbound tunnel, or one peer that only takes a
// connection per stream.
type TunnelStatus struct {
	Peer    string  `json:"peer"`
	Addr    string  `json:"addr"`
	Streams int64   `json:"streams"`
	RTTMs   float64 `json:"rttMs"`
	// State is open, draining (the peer is shutting down: no new streams),
	// per-stream (the peer does not offer tunnels) or down (the peer did
	// not answer: tried last, probed until it does).
	State string `json:"state"`
}

// Addresses are where the gateway listens.
type Addresses struct {
	Data      string `json:"data"`
	Advertise string `json:"advertise"`
	Gossip    string `json:"gossip"`
	Admin     string `json:"admin"`
	Connect   string `json:"connect,omitempty"`
	Control   string `json:"control,omitempty"`
	// Passthrough is the TLS passthrough port for local workloads.
	Passthrough string `json:"passthrough,omitempty"`
}

// ImportStatus is one per-import local port.
type ImportStatus struct {
	Service string `json:"service"`
	Port    int    `json:"port"`
	Listen  string `json:"listen"`
}

// MemberStatus is one gateway in the gossip pool.
type MemberStatus struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
	Region  string `json:"region"`
	Zone    string `json:"zone,omitempty"`
	Gateway string `json:"gateway"`
	Control string `json:"control,omitempty"`
	State   string `json:"state"`
}

// ClusterStatus is one cluster and what it exports.
type ClusterStatus struct {
	Cluster   string          `json:"cluster"`
	Region    string          `json:"region"`
	Zone      string          `json:"zone,omitempty"`
	Cloud     string          `json:"cloud,omitempty"`
	Reachable bool            `json:"reachable"`
	Services  []ServiceStatus `json:"services"`
}

// ServiceStatus is one exported service of a cluster.
type ServiceStatus struct {
	Service string            `json:"service"`
	Ports   []int             `json:"ports"`
	Labels  map[string]string `json:"labels,omitempty"`
	Healthy int               `json:"healthy"`
	Total   int               `json:"total"`
}

// Status returns the gateway's current status.
func (g *Gateway) Status() Status {
	snap := g.catalog.Snapshot()
	st := Status{
		Node: snap.Local, Cluster: g.cfg.Cluster, Region: g.cfg.Region, Zone: g.cfg.Zone, Cloud: g.cfg.Cloud,
		Version: g.version, Ready: len(g.notReady()) == 0, StartedAt: g.started,
		Addresses: Addresses{Data: g.DataAddr(), Advertise: g.cfg.AdvertiseAddr(), Gossip: g.GossipAddr(), Admin: g.AdminAddr(), Connect: g.ConnectAddr(), Control: g.ControlAddr(), Passthrough: g.PassthroughAddr()},
		State:     g.stateStatus(),
		Warnings:  g.stateWarnings(),
		Ejected:   g.sel.Out.Status(),
		Imports:   []ImportStatus{},
		Members:   []MemberStatus{},
		Clusters:  []ClusterStatus{},
		Tunnels:   []TunnelStatus{},
	}
	if g.tunnels != nil {
		st.Tunnels = g.tunnels.status()
	}
	if g.cfg.Advertise == "" {
		st.Addresses.Advertise = g.DataAddr()
	}
	for _, im := range g.imports {
		st.Imports = append(st.Imports, ImportStatus{Service: im.Service, Port: im.Port, Listen: im.ln.Addr().String()})
	}
	byCluster := map[string]*ClusterStatus{}
	for _, c := range snap.Clusters {
		st.Members = append(st.Members, MemberStatus{Node: c.Node, Cluster: c.Cluster, Region: c.Region, Zone: c.Zone, Gateway: c.Gateway, Control: c.Control, State: c.State})
		cs, ok := byCluster[c.Cluster]
		if !ok {
			cs = &ClusterStatus{Cluster: c.Cluster, Region: c.Region, Zone: c.Zone, Cloud: c.Cloud, Services: []ServiceStatus{}}
			byCluster[c.Cluster] = cs
		}
		cs.Reachable = cs.Reachable || c.Reachable
		for _, s := range c.Services {
			ss := ServiceStatus{Service: s.Key(), Labels: s.Labels, Healthy: s.Healthy, Total: s.Total}
			for _, p := range s.Ports {
				ss.Ports = append(ss.Ports, p.Port)
			}
			cs.Services = append(cs.Services, ss)
		}
	}
	for _, cs := range byCluster {
		sort.Slice(cs.Services, func(i, j int) bool { return cs.Services[i].Service < cs.Services[j].Service })
		st.Clusters = append(st.Clusters, *cs)
	}
	sort.Slice(st.Clusters, func(i, j int) bool { return st.Clusters[i].Cluster < st.Clusters[j].Cluster })
	return st
}

// notReady lists why the gateway should not receive traffic yet.
func (g *Gateway) notReady() []string {
	var out []string
	if g.closing.Load() {
		out = append(out, "shutting down")
	}
	if len(g.cfg.Gossip.Join) > 0 && g.catalog.Members() < 2 {
		out = append(out, "not joined to any other gateway yet")
	}
	if g.state != nil {
		if h := g.state.Health(); h.Index == 0 && h.Role != "Leader" {
			out = append(out, "routing state not loaded yet: never in contact with a leader and nothing on disk")
		}
	}
	return out
}

func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reasons := g.notReady(); len(reasons) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, r := range reasons {
				fmt.Fprintln(w, r)
			}
			return
		}
		fmt.Fprintln(w, "ready")
		for _, warn := range g.stateWarnings() {
			fmt.Fprintln(w, "warning:", warn)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{Registry: g.reg}))
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		ks, err := g.catalog.Keys()
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
		res, err := g.catalog.KeyOp(ctx, r.PathValue("op"), req.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, g.Status())
	})
	g.residencyRoutes(mux)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
