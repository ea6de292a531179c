package drill

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/straitmesh/strait/sovereignty"
)

// followAudit follows every gateway's refusals (the audit trail's
// records, on the admin API's event stream /ui/events) for the drill's
// duration. A flow that a gateway refused on its inbound side for
// residency reached a gateway its class may not reach: a peer sent it
// there. Each is a violation, whatever the responders say.
func (r *run) followAudit(ctx context.Context, wg *sync.WaitGroup) {
	for ci := range r.f.Clusters {
		for gi := range r.f.Clusters[ci].Gateways {
			g := &r.f.Clusters[ci].Gateways[gi]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if err := r.followOne(ctx, g); err != nil && ctx.Err() == nil {
						r.opts.Logger.Debug("drill: audit stream", "gateway", g.Name, "admin", g.Admin, "err", err)
					}
					select { // the gateway may be down: try again shortly
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
			}()
		}
	}
}

func (r *run) followOne(ctx context.Context, g *FederationGateway) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL(g, "/ui/events"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	resp, err := (&http.Client{Transport: r.api.http.Transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /ui/events: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // snapshots grow with the federation
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "refusal":
			var rec sovereignty.Record
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &rec) == nil {
				r.audited(rec)
			}
		case line == "":
			event = ""
		}
	}
	return sc.Err()
}

// audited takes one refusal record of a gateway.
func (r *run) audited(rec sovereignty.Record) {
	if rec.Kind != sovereignty.KindDecision || rec.Decision != sovereignty.DecisionDeny || rec.Direction != "inbound" ||
		rec.Time.Before(r.begin) {
		return
	}
	v := Violation{At: rec.Time.Sub(r.begin), Class: rec.Class, Region: rec.Region, Cluster: rec.Gateway, Source: "audit"}
	if rec.Flow != nil {
		v.Traffic = rec.Flow.Service + " from " + rec.Flow.SourceCluster
	}
	r.mu.Lock()
	r.vios = append(r.vios, v)
	r.mu.Unlock()
	if r.d.Stop.AnyResidencyViolation {
		r.stop("anyResidencyViolation", fmt.Sprintf("gateway %s refused a flow of class %s on arrival: %s", rec.Gateway, rec.Class, rec.Reason))
	}
}
