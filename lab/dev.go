package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/identity"
)

// DevCluster is one cluster of the `strait dev` federation.
type DevCluster struct {
	Name, Region, Zone, Cloud string
	// Voter makes the gateway a routing-state voter.
	Voter bool
	// Services lists the demo services ("demo/echo") the cluster runs.
	Services []string
}

// DevTopology is the federation `strait dev` runs: four clusters in three
// regions, with demo/echo everywhere, demo/ledger (data-class pii-eu) in
// the eu-west clusters and demo/profile in eu-central and us-east. The
// routing state has a voter in each region; eu-west-2 is a non-voter.
func DevTopology() []DevCluster {
	return []DevCluster{
		{Name: "eu-west-1", Region: "eu-west", Zone: "eu-west-1a", Cloud: "aws", Voter: true, Services: []string{"demo/echo", "demo/ledger"}},
		{Name: "eu-west-2", Region: "eu-west", Zone: "eu-west-2a", Cloud: "gcp", Services: []string{"demo/echo", "demo/ledger"}},
		{Name: "eu-central-1", Region: "eu-central", Zone: "eu-central-1a", Cloud: "azure", Voter: true, Services: []string{"demo/echo", "demo/profile"}},
		{Name: "us-east-1", Region: "us-east", Zone: "us-east-1a", Cloud: "aws", Voter: true, Services: []string{"demo/echo", "demo/profile"}},
	}
}

// DemoPort is the port every demo service listens on.
const DemoPort = 8080

// DevDNSPort is where each `strait dev` gateway answers DNS for its
// imports' names (not with Ephemeral).
const DevDNSPort = 15053

// demoServices are imported by every dev cluster, each on its own local port.
var demoServices = []struct {
	key    string
	port   int // import listen port on the gateway's address
	labels map[string]string
}{
	{"demo/echo", 18080, nil},
	{"demo/ledger", 18081, map[string]string{"data-class": "pii-eu"}},
	{"demo/profile", 18082, nil},
}

// DevOptions tune `strait dev`.
type DevOptions struct {
	// Ephemeral binds everything on 127.0.0.1 with free ports instead of
	// one 127.0.N.0/24 per cluster with the well-known ports.
	Ephemeral bool
	// Spec carries logger, gossip profile, timeouts, the residency policy
	// and the audit directory for the gateways. Spec.Policy nil means the
	// shipped deploy/examples/residency.yaml.
	Spec Spec
}

// Dev is a running `strait dev` federation.
type Dev struct {
	*Lab
	// Mesh is the demo services' own CA: they answer HTTPS with its
	// certificates, for TLS carried end to end by the passthrough ports.
	Mesh  *MeshCA
	demos []*DemoService
}

// StartDev starts the dev federation: demo services first, then gateways.
// Without Ephemeral, cluster i (from 1) gets 127.0.i.1 for its gateway on
// the well-known ports and 127.0.i.(10+j) for its j-th demo service on
// port 8080, like separate hosts.
func StartDev(ctx context.Context, opts DevOptions) (d *Dev, err error) {
	d = &Dev{}
	if d.Mesh, err = NewMeshCA("strait dev mesh CA"); err != nil {
		return nil, err
	}
	started := d // the named result is nil once an error is returned
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	spec := opts.Spec
	spec.Clusters = nil
	// Without Ephemeral each gateway also answers DNS for its imports on
	// its own address, with an address per imported service of
	// 127.77.N.0/24 serving the demo port: names need no proxy and no
	// port per import. (Ephemeral keeps to free ports on 127.0.0.1.)
	dns := map[string]gateway.DNSConfig{}
	tune := spec.Tune
	spec.Tune = func(cluster string, cfg *gateway.Config) {
		// A playground takes faults: `strait drill run` drills it
		// (cli/federation.yaml). The admin ports are on loopback.
		cfg.Faults.Enabled = true
		if d, ok := dns[cluster]; ok {
			cfg.DNS.Listen, cfg.DNS.ImportAddresses = d.Listen, d.ImportAddresses
		}
		if tune != nil {
			tune(cluster, cfg)
		}
	}
	if spec.Policy == nil {
		spec.Policy, spec.PolicyName = examples.Residency, "deploy/examples/residency.yaml"
	}
	for i, dc := range DevTopology() {
		cs := ClusterSpec{Name: dc.Name, Region: dc.Region, Zone: dc.Zone, Cloud: dc.Cloud, Voter: dc.Voter}
		gwHost := "127.0.0.1"
		if !opts.Ephemeral {
			gwHost = fmt.Sprintf("127.0.%d.1", i+1)
			cs.DataPort, cs.GossipPort, cs.AdminPort, cs.ConnectPort = 15443, 7946, 15000, 15001
			cs.ControlPort, cs.RaftPort, cs.PassthroughPort = 15012, 8300, 15002
			dns[dc.Name] = gateway.DNSConfig{Listen: net.JoinHostPort(gwHost, strconv.Itoa(DevDNSPort)), ImportAddresses: fmt.Sprintf("127.77.%d.0/24", i+1)}
		}
		cs.Host = gwHost
		for j, key := range dc.Services {
			addr := "127.0.0.1:0"
			if !opts.Ephemeral {
				addr = net.JoinHostPort(fmt.Sprintf("127.0.%d.%d", i+1, 10+j), strconv.Itoa(DemoPort))
			}
			ns, name, _ := strings.Cut(key, "/")
			cert, err := d.Mesh.Issue(key+" in "+dc.Name, name+"."+ns+".svc.cluster.local", name+"."+ns+".svc.clusterset.local")
			if err != nil {
				return nil, err
			}
			demo, err := StartDemoTLS(addr, key, dc.Name, dc.Region, &cert)
			if err != nil {
				return nil, err
			}
			d.demos = append(d.demos, demo)
			host, ps, _ := net.SplitHostPort(demo.Addr())
			target, _ := strconv.Atoi(ps)
			svc := discovery.Service{Namespace: ns, Name: name, Endpoints: []string{host},
				Ports: []discovery.Port{{Name: "http", Port: DemoPort, TargetPort: target, Protocol: "http"}}}
			for _, ds := range demoServices {
				if ds.key == key {
					svc.Labels = ds.labels
				}
			}
			cs.Services = append(cs.Services, svc)
		}
		for _, ds := range demoServices {
			port := 0
			if !opts.Ephemeral {
				port = ds.port
			}
			cs.Imports = append(cs.Imports, gateway.Import{Service: ds.key, Port: DemoPort, Listen: net.JoinHostPort(gwHost, strconv.Itoa(port)), Protocol: "http"})
		}
		spec.Clusters = append(spec.Clusters, cs)
	}
	spec.State = true
	// The federation's own CA: voters hold its intermediate; the others
	// enrol with join tokens and renew over the control API.
	spec.CertAuthority = true
	d.Lab, err = Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := d.writeOperatorFiles(); err != nil {
		return nil, err
	}
	return d, nil
}

// SamplePolicy is the residency policy the `strait dev` tour applies
// through the routing state: the shipped example, named "default", which
// is the record every gateway enforces.
var SamplePolicy = string(examples.Residency)

// writeOperatorFiles gives the strait CLI what it needs to reach each
// gateway's control API: a certificate of the federation, a small config
// file per gateway (listen.control and tls), and the sample policy. They
// live in the state directory and go with it.
func (d *Dev) writeOperatorFiles() error {
	dir := filepath.Join(d.StateDir, "cli")
	tlsDir := filepath.Join(dir, "tls")
	if err := d.CA.WriteIDFiles(tlsDir, identity.ID{Role: identity.RoleOperator, Name: "dev"}, 24*time.Hour); err != nil {
		return err
	}
	for _, name := range d.Clusters() {
		cs, g := d.Spec(name), d.Gateway(name)
		body := fmt.Sprintf(`# For the strait CLI: reach gateway %s's control API.
cluster: %s
region: %s
listen:
  control: %s
tls:
  cert: %s
  key: %s
  ca: %s
`, name, name, cs.Region, g.ControlAddr(), filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem"), filepath.Join(tlsDir, "ca.pem"))
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o600); err != nil {
			return fmt.Errorf("write CLI config: %w", err)
		}
	}
	if err := d.WriteFederation(filepath.Join(dir, FederationFile)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(SamplePolicy), 0o644); err != nil {
		return fmt.Errorf("write sample policy: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, failoverFile), []byte(SampleFailover+"\n"), 0o644); err != nil {
		return fmt.Errorf("write sample failover: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mesh-ca.pem"), d.Mesh.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("write mesh CA: %w", err)
	}
	return nil
}

// FederationFile, in the CLI directory, describes the dev federation for
// `strait drill run --federation`.
const FederationFile = "federation.yaml"

// failoverFile holds SampleFailover in the CLI directory.
const failoverFile = "failover-profile.json"

// SampleFailover is the failover priority of demo/profile the tour writes:
// from the eu-west clusters (where neither exporter is local), us-east-1
// first, eu-central-1 when us-east-1 cannot take the flow.
const SampleFailover = `{"priority": ["us-east-1", "eu-central-1"]}`

// Close stops the gateways, links and demo services.
func (d *Dev) Close() {
	if d.Lab != nil {
		d.Lab.Close()
	}
	for _, s := range d.demos {
		s.Close()
	}
}

// Info is what `strait dev --info FILE` writes: how to reach everything.
type Info struct {
	TrustDomain string        `json:"trustDomain"`
	Clusters    []ClusterInfo `json:"clusters"`
	// StateDir holds the routing state and the CLI files; removed on exit.
	StateDir string `json:"stateDir"`
	// Policy is the sample residency policy file.
	Policy string `json:"policy"`
	// MeshCA is the PEM file of the CA that signed the demo services'
	// own TLS certificates (not the federation's).
	MeshCA string `json:"meshCA"`
}

// ClusterInfo is one cluster of Info.
type ClusterInfo struct {
	Name    string `json:"name"`
	Region  string `json:"region"`
	Zone    string `json:"zone"`
	Cloud   string `json:"cloud"`
	Admin   string `json:"admin"`
	Connect string `json:"connect"`
	// Passthrough takes TLS routed by its SNI, not terminated.
	Passthrough string `json:"passthrough"`
	Data        string `json:"data"`
	Gossip      string `json:"gossip"`
	Control     string `json:"control"`
	Voter       bool   `json:"voter"`
	// CLIConfig is a config file for the strait CLI (--config) naming this
	// gateway's control address and a certificate of the federation.
	CLIConfig string            `json:"cliConfig"`
	Services  []ServiceInfo     `json:"services"`
	Imports   map[string]string `json:"imports"` // "demo/ledger:8080" -> local address
	// DNS answers <service>.<namespace>.svc.clusterset.local for the
	// imports (UDP and TCP); empty when the gateway has no DNS server.
	DNS string `json:"dns,omitempty"`
}

// ServiceInfo is one local demo service.
type ServiceInfo struct {
	Service  string            `json:"service"`
	Endpoint string            `json:"endpoint"`
	Ports    []int             `json:"ports"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Info describes the running federation.
func (d *Dev) Info() Info {
	info := Info{TrustDomain: d.CA.TrustDomain, StateDir: d.StateDir, Policy: filepath.Join(d.StateDir, "cli", "policy.yaml"),
		MeshCA: filepath.Join(d.StateDir, "cli", "mesh-ca.pem")}
	for _, name := range d.Clusters() {
		g, cs := d.Gateway(name), d.Spec(name)
		ci := ClusterInfo{Name: name, Region: cs.Region, Zone: cs.Zone, Cloud: cs.Cloud,
			Admin: g.AdminAddr(), Connect: g.ConnectAddr(), Passthrough: g.PassthroughAddr(), Data: g.DataAddr(), Gossip: g.GossipAddr(), Imports: g.ImportAddrs(),
			Control: g.ControlAddr(), Voter: cs.Voter, CLIConfig: filepath.Join(d.StateDir, "cli", name+".yaml"), DNS: g.DNSAddr()}
		for _, s := range d.demos {
			if s.Cluster == name {
				ci.Services = append(ci.Services, ServiceInfo{Service: s.Service, Endpoint: s.Addr(), Ports: []int{DemoPort}, Labels: labelsOf(cs, s.Service)})
			}
		}
		info.Clusters = append(info.Clusters, ci)
	}
	return info
}

func labelsOf(cs ClusterSpec, key string) map[string]string {
	for _, s := range cs.Services {
		if s.Key() == key {
			return s.Labels
		}
	}
	return nil
}

// WriteInfo writes info as indented JSON to path.
func WriteInfo(path string, info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dev info: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write dev info %s: %w", path, err)
	}
	return nil
}

// PrintTour writes the table of what runs where and commands to try;
// self is how the user invokes strait ("bin/strait").
func PrintTour(w io.Writer, info Info, self string) {
	fmt.Fprintf(w, "Strait dev federation: %d clusters, trust domain %s\n\n", len(info.Clusters), info.TrustDomain)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tREGION\tCLOUD\tADMIN\tCONNECT\tPASSTHROUGH\tSERVICES")
	for _, c := range info.Clusters {
		var svcs []string
		for _, s := range c.Services {
			svcs = append(svcs, s.Service)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Region, c.Cloud, c.Admin, c.Connect, orDash(c.Passthrough), strings.Join(svcs, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nTopology pages (open in a browser: clusters, tunnels, traffic and refusals, live):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range info.Clusters {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Name, UIAddress(c.Admin))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nPer-import ports (a local port on each gateway for each remote service):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tSERVICE\tLOCAL ADDRESS")
	for _, c := range info.Clusters {
		keys := make([]string, 0, len(c.Imports))
		for k := range c.Imports {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, k, c.Imports[k])
		}
	}
	tw.Flush()
	if len(info.Clusters) < 4 {
		return
	}
	euc, use, euw := info.Clusters[2], info.Clusters[3], info.Clusters[0]
	var voters []string
	for _, c := range info.Clusters {
		if c.Voter {
			voters = append(voters, c.Name)
		}
	}
	fmt.Fprintf(w, `
Try it (each answer names the cluster and region that served it):

  # from %[1]s, reach demo/ledger, which only the eu-west clusters run (crosses a region)
  curl -s -p -x %[2]s http://ledger.demo.svc.clusterset.local:%[3]d/

  # from %[4]s, reach demo/profile in another cloud: eu-central-1 and
  # us-east-1 share the load (neither is in eu-west)
  curl -s -p -x %[5]s http://profile.demo.svc.clusterset.local:%[3]d/

  # from %[1]s again, demo/ledger through a per-import port: no proxy settings needed
  curl -s http://%[6]s/

  # demo/echo runs everywhere: the local cluster answers
  curl -s -p -x %[2]s http://echo.demo.svc.clusterset.local:%[3]d/

  # what a gateway knows: members, clusters and exported services; its
  # certificate from the federation's CA, renewed at two thirds of its life
  %[8]s status --admin %[7]s
  curl -s http://%[7]s/metrics | grep -E 'strait_gateway_connections_total|strait_identity_renewals_total' 

Residency (deploy/examples/residency.yaml): class pii-eu keeps demo/ledger, and
any request marked x-data-residency: eu, inside regions eu-west and eu-central.

  # from %[9]s, demo/ledger does not exist: catalog: region-only keeps its
  # entry out of us-east (404)
  curl -si -x %[10]s http://ledger.demo.svc.clusterset.local:%[3]d/

  # from %[9]s, a request marked eu is refused: 403, X-Strait-Reason names class and rule
  curl -si -x %[10]s -H 'x-data-residency: eu' http://profile.demo.svc.clusterset.local:%[3]d/

  # from %[4]s, a request marked eu goes to eu-central-1 and never to us-east-1,
  # also when eu-central-1 is down (then 503)
  curl -s -x %[5]s -H 'x-data-residency: eu' http://profile.demo.svc.clusterset.local:%[3]d/

  # the same through %[4]s's demo/profile import port over HTTP/2 (h2c): each
  # stream is routed on its own, and a marked one stays in the EU (X-Strait-Region)
  curl -si --http2-prior-knowledge -H 'x-data-residency: eu' http://%[12]s/headers

  # and as a gRPC health check with the marker as metadata: served in
  # eu-central, never us-east
  %[8]s probe grpc %[12]s --header x-data-residency=eu

  # why: which classes apply, which clusters are allowed, in what order
  %[8]s policy explain --admin %[7]s --service demo/ledger --from %[9]s
  %[8]s policy simulate --admin %[7]s --fail eu-central
`, euc.Name, euc.Connect, DemoPort, euw.Name, euw.Connect, euc.Imports["demo/ledger:8080"], euc.Admin, self, use.Name, use.Connect, use.Admin,
		euw.Imports["demo/profile:8080"])
	if euc.DNS != "" {
		host, port, _ := net.SplitHostPort(euc.DNS)
		fmt.Fprintf(w, `
Names: each gateway answers DNS for its imports under clusterset.local, with an
address of the service's own that serves its ports: no proxy, no port per import.

  # from %[1]s, demo/ledger's name, then demo/ledger at that name
  dig @%[2]s -p %[3]s ledger.demo.svc.clusterset.local
  curl -s --resolve ledger.demo.svc.clusterset.local:%[4]d:$(dig @%[2]s -p %[3]s +short ledger.demo.svc.clusterset.local) \
    http://ledger.demo.svc.clusterset.local:%[4]d/
`, euc.Name, host, port, DemoPort)
	}
	if euc.Passthrough != "" && info.MeshCA != "" {
		fmt.Fprintf(w, `
TLS passthrough: a mesh workload opens TLS to its gateway's passthrough port
with the SNI outbound_.<port>_._.<service>.<namespace>.svc.cluster.local; the
gateway routes on that name and carries the session without terminating it.
The demo services also answer HTTPS, with certificates from a mesh CA of
their own, not the federation's:

  # from %[1]s, demo/ledger in eu-west over TLS that ends at the service
  # ("tls": true, "sni" as the service saw it)
  printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -quiet -connect %[2]s \
    -servername outbound_.%[3]d_._.ledger.demo.svc.cluster.local \
    -verify_hostname ledger.demo.svc.cluster.local -verify_return_error -CAfile %[4]s
`, euc.Name, euc.Passthrough, DemoPort, info.MeshCA)
	}
	fmt.Fprintf(w, `
Drills: the gateways take faults (faults.enabled). A drill kills eu-west-1 for
15s while it drives the ledger and the profile, judges failover and residency,
and writes a report (docs/drills.md):

  %[1]s drill run deploy/examples/drills/dev/lose-eu-west-1.yaml --federation %[2]s --dry-run
  %[1]s drill run deploy/examples/drills/dev/lose-eu-west-1.yaml --federation %[2]s --html drill.html
`, self, filepath.Join(info.StateDir, "cli", FederationFile))
	if len(voters) == 0 {
		return
	}
	fmt.Fprintf(w, `
  # the routing state (Raft, voters %[12]s): apply a residency policy through
  # %[1]s, then read it from %[10]s; every gateway routes on the same index
  %[8]s policy apply --config %[9]s %[11]s
  %[8]s state list --config %[13]s
  %[8]s state peers --config %[13]s

  # a failover priority for demo/profile: from %[4]s every request now goes
  # to us-east-1, and to eu-central-1 only when us-east-1 cannot take it
  %[8]s state put failover demo/profile %[14]s --config %[13]s
  curl -s -p -x %[5]s http://profile.demo.svc.clusterset.local:%[3]d/
`, euc.Name, euc.Connect, DemoPort, euw.Name, euw.Connect, use.Imports["demo/ledger:8080"], euc.Admin, self,
		euc.CLIConfig, use.Name, info.Policy, strings.Join(voters, ", "), use.CLIConfig, filepath.Join(info.StateDir, "cli", failoverFile))
}

// UIAddress is the topology page of the gateway whose admin API listens
// on admin.
func UIAddress(admin string) string { return "http://" + admin + "/ui/" }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
