package admin

import (
	"strings"

	"github.com/straitmesh/strait/sovereignty"
)

// Topology returns the federation as this status document shows it, for
// the residency tooling in live mode.
func (s Status) Topology() *sovereignty.Topology {
	top := &sovereignty.Topology{}
	for _, c := range s.Clusters {
		tc := sovereignty.TopologyCluster{Name: c.Cluster, Region: c.Region, Zone: c.Zone, Down: !c.Reachable}
		for _, svc := range c.Services {
			ns, name, _ := strings.Cut(svc.Service, "/")
			tc.Services = append(tc.Services, sovereignty.TopologyService{Namespace: ns, Name: name, Ports: svc.Ports, Labels: svc.Labels, Healthy: svc.Healthy})
		}
		top.Clusters = append(top.Clusters, tc)
	}
	return top
}
