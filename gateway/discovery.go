package gateway

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/discovery/kube"
	"github.com/straitmesh/strait/federation/catalog"
)

// startDiscovery makes the source discovery.source names, unless
// Options.Discovery gave one, and starts it: a kubernetes source has
// listed everything once (or failed) when this returns, so the gateway
// joins the federation with its whole catalog entry.
func (g *Gateway) startDiscovery() error {
	if g.disc != nil {
		return nil
	}
	cfg := g.cfg
	switch cfg.Discovery.Source {
	case DiscoveryFile:
		f, err := discovery.NewFile(cfg.Discovery.File.Path, discovery.FileOptions{Logger: g.log, Registry: g.reg})
		if err != nil {
			return fmt.Errorf("discovery.file.path: %w", err)
		}
		g.disc, g.discStop = f, f.Close
	case DiscoveryKubernetes:
		k, err := kube.New(cfg.Discovery.Kubernetes, kube.Options{Logger: g.log, Registry: g.reg})
		if err != nil {
			return err
		}
		k.SetImports(kubeImports(cfg.Imports))
		if err := k.Start(context.Background()); err != nil {
			k.Close()
			return err
		}
		g.disc, g.discStop = k, k.Close
	default:
		g.disc = discovery.Static(cfg.Services)
	}
	return nil
}

// CheckServicesFile reads the services file of discovery.source file as
// the gateway would at start, for --check: it returns the file and how
// many services it lists, or "" for the other sources.
func (c Config) CheckServicesFile() (path string, services int, err error) {
	if c.Discovery.Source != DiscoveryFile {
		return "", 0, nil
	}
	data, err := os.ReadFile(c.Discovery.File.Path)
	if err != nil {
		return "", 0, fmt.Errorf("discovery.file.path: %w", err)
	}
	svcs, err := discovery.ParseFile(c.Discovery.File.Path, data)
	if err != nil {
		return "", 0, err
	}
	return c.Discovery.File.Path, len(svcs), nil
}

func (g *Gateway) stopDiscovery() {
	if g.discStop != nil {
		g.discStop()
		g.discStop = nil
	}
}

// kubeImports groups the imports by service, one port once, for the
// ServiceImports the kubernetes source keeps.
func kubeImports(ims []Import) []kube.Import {
	by := map[string]*kube.Import{}
	var keys []string
	for _, im := range ims {
		ns, name, _ := strings.Cut(im.Service, "/")
		k := by[im.Service]
		if k == nil {
			k = &kube.Import{Namespace: ns, Name: name}
			by[im.Service] = k
			keys = append(keys, im.Service)
		}
		dup := false
		for _, p := range k.Ports {
			dup = dup || p.Port == im.Port
		}
		if !dup {
			k.Ports = append(k.Ports, kube.ImportPort{Port: im.Port, Protocol: im.Protocol})
		}
	}
	sort.Strings(keys)
	out := make([]kube.Import, 0, len(keys))
	for _, k := range keys {
		out = append(out, *by[k])
	}
	return out
}

// watchPeerPorts tells a source that reports port conflicts how the
// other clusters declare the ports of the services this cluster exports,
// after every catalog change.
func (g *Gateway) watchPeerPorts(obs discovery.PortsObserver) {
	defer g.wg.Done()
	ch, stop := g.catalog.Watch()
	defer stop()
	for {
		obs.ObservePorts(peerPorts(g.catalog.Snapshot(), g.cfg.Cluster, g.local.Load()))
		select {
		case <-g.ctx.Done():
			return
		case <-ch:
		}
	}
}

// peerPorts is, for each locally exported service, every other cluster
// that exports it too and its ports (one entry per cluster: the gateways
// of a cluster export the same).
func peerPorts(snap *catalog.Snapshot, cluster string, local *localTable) map[string][]discovery.ClusterPorts {
	out := map[string][]discovery.ClusterPorts{}
	if snap == nil || local == nil {
		return out
	}
	seen := map[string]bool{}
	for _, cv := range snap.Clusters {
		if cv.Cluster == cluster {
			continue
		}
		for key, s := range local.byKey {
			if seen[cv.Cluster+" "+key] {
				continue
			}
			rs, ok := cv.Service(s.Namespace, s.Name)
			if !ok {
				continue
			}
			seen[cv.Cluster+" "+key] = true
			cp := discovery.ClusterPorts{Cluster: cv.Cluster}
			for _, p := range rs.Ports {
				cp.Ports = append(cp.Ports, discovery.Port{Name: p.Name, Port: p.Port, Protocol: p.Protocol})
			}
			out[key] = append(out[key], cp)
		}
	}
	return out
}
