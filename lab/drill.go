package lab

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/straitmesh/strait/drill"
)

// Federation describes the lab for `strait drill run --federation`: each
// cluster's region and cloud, and its gateway's admin, connect and import
// addresses. A stopped gateway is left out.
func (l *Lab) Federation() drill.Federation {
	f := drill.Federation{APIVersion: drill.APIVersion, Kind: drill.FederationKind}
	for _, name := range l.Clusters() {
		g, cs := l.Gateway(name), l.Spec(name)
		if g == nil {
			continue
		}
		f.Clusters = append(f.Clusters, drill.FederationCluster{Name: name, Region: cs.Region, Cloud: cs.Cloud,
			Gateways: []drill.FederationGateway{{Name: "gw-0", Admin: g.AdminAddr(), Connect: g.ConnectAddr(), Imports: g.ImportAddrs()}}})
	}
	return f
}

// WriteFederation writes Federation to path as JSON (which federation
// files may be, being YAML).
func (l *Lab) WriteFederation(path string) error {
	b, err := json.MarshalIndent(l.Federation(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode federation: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write federation file: %w", err)
	}
	return nil
}
