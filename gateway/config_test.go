package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/internal/configfile"
)

func validConfig() Config {
	c := DefaultConfig()
	c.Cluster, c.Region = "eu-west-1", "eu-west"
	c.Listen.Data = "127.0.0.1:15443"
	c.TLS = TLSConfig{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}
	c.Gossip.Key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	return c
}

func fieldErrors(err error) map[string]string {
	out := map[string]string{}
	var walk func(error)
	walk = func(e error) {
		var fe *configfile.FieldError
		if errors.As(e, &fe) && fe == e {
			out[fe.Key] = fe.Msg
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		key    string
		msg    string
	}{
		{"missing cluster", func(c *Config) { c.Cluster = "" }, "cluster", "required value missing"},
		{"bad region", func(c *Config) { c.Region = "EU West" }, "region", "not a DNS label"},
		{"admin clashes with data", func(c *Config) { c.Listen.Admin = "127.0.0.1:15443" }, "listen.admin", "clashes with listen.data"},
		{"wildcard clash", func(c *Config) { c.Listen.Connect = "0.0.0.0:15443" }, "listen.connect", "clashes with listen.data"},
		{"import clash", func(c *Config) {
			c.Imports = []Import{{Service: "demo/a", Port: 80, Listen: "127.0.0.1:15001"}}
		}, "imports.0.listen", "clashes with listen.connect"},
		{"passthrough clashes with connect", func(c *Config) { c.Listen.Passthrough = "127.0.0.1:15001" }, "listen.passthrough", "clashes with listen.connect"},
		{"no tunnel keepalive", func(c *Config) { c.Tunnels.Keepalive = 0 }, "tunnels.keepalive", "must be positive"},
		{"negative keepalive timeout", func(c *Config) { c.Tunnels.KeepaliveTimeout = -time.Second }, "tunnels.keepaliveTimeout", "must be positive"},
		{"no tunnels per peer", func(c *Config) { c.Tunnels.PerPeer = 0 }, "tunnels.perPeer", "must be at least 1"},
		{"no streams per peer", func(c *Config) { c.Tunnels.MaxStreamsPerPeer = 0 }, "tunnels.maxStreamsPerPeer", "must be at least 1"},
		{"small stream window", func(c *Config) { c.Tunnels.StreamWindowKiB = 64 }, "tunnels.streamWindowKiB", "must be at least 256"},
		{"huge stream window", func(c *Config) { c.Tunnels.StreamWindowKiB = 4 << 20 }, "tunnels.streamWindowKiB", "must be at most 1048576"},
		{"grown window under the start", func(c *Config) { c.Tunnels.MaxStreamWindowKiB = 1024 }, "tunnels.maxStreamWindowKiB", "must be at least tunnels.streamWindowKiB"},
		{"huge grown window", func(c *Config) { c.Tunnels.MaxStreamWindowKiB = 4 << 20 }, "tunnels.maxStreamWindowKiB", "must be at most 1048576"},
		{"negative peer window budget", func(c *Config) { c.Tunnels.PeerWindowMiB = -1 }, "tunnels.peerWindowMiB", "must be at least 0"},
		{"no connections", func(c *Config) { c.Limits.MaxConnections = 0 }, "limits.maxConnections", "must be at least 1"},
		{"no handshake time", func(c *Config) { c.Limits.HandshakeTimeout = 0 }, "limits.handshakeTimeout", "must be positive"},
		{"no handshakes per source", func(c *Config) { c.Limits.HandshakesPerSource = 0 }, "limits.handshakesPerSource", "must be at least 1"},
		{"no data port budget", func(c *Config) { c.Limits.Listeners.Data = 0 }, "limits.listeners.data", "must be at least 1"},
		{"negative raft budget", func(c *Config) { c.Limits.Listeners.Raft = -1 }, "limits.listeners.raft", "must be at least 1"},
		{"no import budget", func(c *Config) { c.Limits.Listeners.Import = 0 }, "limits.listeners.import", "must be at least 1"},
		{"no idle timeout", func(c *Config) { c.Timeouts.Idle = 0 }, "timeouts.idle", "must be positive"},
		{"import clashes with passthrough", func(c *Config) {
			c.Imports = []Import{{Service: "demo/a", Port: 80, Listen: "0.0.0.0:15002"}}
		}, "imports.0.listen", "clashes with listen.passthrough"},
		{"bad passthrough address", func(c *Config) { c.Listen.Passthrough = "15002" }, "listen.passthrough", "want host:port"},
		{"import service", func(c *Config) { c.Imports = []Import{{Service: "ledger", Port: 80, Listen: "127.0.0.1:0"}} }, "imports.0.service", "want namespace/name"},
		{"advertise needed", func(c *Config) { c.Listen.Data = "0.0.0.0:15443" }, "advertise", "required when listen.data binds all interfaces"},
		{"bad address", func(c *Config) { c.Listen.Admin = "localhost" }, "listen.admin", "want host:port"},
		{"admin on all interfaces without a token", func(c *Config) { c.Listen.Admin = "0.0.0.0:15000" }, "listen.admin",
			"0.0.0.0:15000 is not a loopback address and admin.tokenFile is not set"},
		{"admin on an interface without a token", func(c *Config) { c.Listen.Admin = "10.0.1.5:15000" }, "listen.admin", "not a loopback address"},
		{"admin on a name without a token", func(c *Config) { c.Listen.Admin = "gw.internal:15000" }, "listen.admin", "not a loopback address"},
		{"probes clash with admin", func(c *Config) { c.Listen.Probes = "0.0.0.0:15000" }, "listen.probes", "clashes with listen.admin"},
		{"bad probes address", func(c *Config) { c.Listen.Probes = "15020" }, "listen.probes", "want host:port"},
		{"allowed host with a port", func(c *Config) { c.Admin.AllowedHosts = []string{"gw.internal:15000"} }, "admin.allowedHosts.0", "without port"},
		{"allowed host a URL", func(c *Config) { c.Admin.AllowedHosts = []string{"ok.example", "http://gw"} }, "admin.allowedHosts.1", "want a host name or an IP address"},
		{"zero timeout", func(c *Config) { c.Timeouts.Connect = 0 }, "timeouts.connect", "must be positive"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level", "want debug, info, warn or error"},
		{"gossip key", func(c *Config) { c.Gossip.Key = "c2hvcnQ=" }, "gossip.key", "want 16, 24 or 32"},
		{"gossip profile", func(c *Config) { c.Gossip.Profile = "fast" }, "gossip.profile", "want one of lan, wan, local"},
		{"service port", func(c *Config) {
			c.Services = []discovery.Service{{Namespace: "demo", Name: "x", Ports: []discovery.Port{{Port: 0}}}}
		}, "services.0.ports.0.port", "out of range"},
		{"discovery source", func(c *Config) { c.Discovery.Source = "consul" }, "discovery.source", `want static, file or kubernetes, found "consul"`},
		{"discovery file path", func(c *Config) { c.Discovery.Source = "file" }, "discovery.file.path", "required value missing"},
		{"static services with another source", func(c *Config) {
			c.Discovery.Source = "kubernetes"
			c.Services = []discovery.Service{{Namespace: "demo", Name: "x", Ports: []discovery.Port{{Port: 80}}}}
		}, "services", "used only with discovery.source static"},
		{"kubernetes namespace", func(c *Config) {
			c.Discovery.Source = "kubernetes"
			c.Discovery.Kubernetes.Namespaces = []string{"demo", "Demo"}
		}, "discovery.kubernetes.namespaces.1", "not a namespace name"},
		{"kubernetes sync timeout", func(c *Config) {
			c.Discovery.Source = "kubernetes"
			c.Discovery.Kubernetes.SyncTimeout = 0
		}, "discovery.kubernetes.syncTimeout", "must be positive"},
		{"duplicate service", func(c *Config) {
			s := discovery.Service{Namespace: "demo", Name: "x", Ports: []discovery.Port{{Port: 80}}}
			c.Services = []discovery.Service{s, s}
		}, "services.1.name", "already listed at services.0"},
		{"state control clash", func(c *Config) {
			withState(c)
			c.Listen.Control = "127.0.0.1:15443"
		}, "listen.control", "clashes with listen.data"},
		{"state raft clash", func(c *Config) {
			withState(c)
			c.State.Bind = "0.0.0.0:7946"
			c.State.Advertise = "10.0.0.1:8300"
		}, "state.bind", "clashes with gossip.bind"},
		{"state raft advertise", func(c *Config) {
			withState(c)
			c.State.Bind = "0.0.0.0:8300"
		}, "state.advertise", "required when state.bind listens on all interfaces"},
		{"state join or bootstrap", func(c *Config) {
			withState(c)
			c.State.BootstrapExpect, c.State.Voter = 0, false
		}, "state.join", "required unless state.bootstrapExpect"},
		{"state bootstrap needs voter", func(c *Config) {
			withState(c)
			c.State.Voter = false
		}, "state.bootstrapExpect", "only voters bootstrap"},
		{"state join address", func(c *Config) {
			withState(c)
			c.State.Join = []string{"gw-1"}
		}, "state.join.0", "want host:port"},
		{"state without dataDir", func(c *Config) {
			c.State.Voter = true
		}, "state.dataDir", "required when state.voter"},
		{"outlier failures", func(c *Config) { c.Outlier.ConsecutiveFailures = 0 }, "outlier.consecutiveFailures", "must be at least 1"},
		{"health failures", func(c *Config) { c.Health.UnhealthyThreshold = 0 }, "health.unhealthyThreshold", "must be at least 1"},
		{"health passes", func(c *Config) { c.Health.HealthyThreshold = -1 }, "health.healthyThreshold", "must be at least 1"},
		{"outlier base", func(c *Config) { c.Outlier.BaseEjection = 0 }, "outlier.baseEjection", "must be positive"},
		{"outlier max", func(c *Config) { c.Outlier.MaxEjection = -time.Second }, "outlier.maxEjection", "must be positive"},
		{"outlier max below base", func(c *Config) { c.Outlier.MaxEjection = time.Second }, "outlier.maxEjection", "must be at least outlier.baseEjection (5s)"},
		{"dns ttl", func(c *Config) { c.DNS.TTL = 0 }, "dns.ttl", "must be at least 1s"},
		{"no dns budget", func(c *Config) {
			c.DNS.Listen = "127.0.0.1:15053"
			c.Limits.Listeners.DNS = 0
		}, "limits.listeners.dns", "must be at least 1"},
		{"dns ttl too long", func(c *Config) { c.DNS.TTL = 48 * time.Hour }, "dns.ttl", "at most 24h, found 48h0m0s"},
		{"dns domain", func(c *Config) { c.DNS.Domain = "cluster set" }, "dns.domain", `want DNS labels (lower-case letters, digits, '-') such as clusterset.local, found "cluster set"`},
		{"dns listen", func(c *Config) { c.DNS.Listen = "15053" }, "dns.listen", "want host:port"},
		{"dns listen clashes with connect", func(c *Config) { c.DNS.Listen = "127.0.0.1:15001" }, "dns.listen", "clashes with listen.connect"},
		{"import addresses without a prefix", func(c *Config) { c.DNS.ImportAddresses = "127.77.0.0" }, "dns.importAddresses", "want an address block such as 127.77.0.0/16"},
		{"import addresses with host bits", func(c *Config) { c.DNS.ImportAddresses = "127.77.1.0/16" }, "dns.importAddresses", "has host bits set: want 127.77.0.0/16"},
		{"import addresses too few", func(c *Config) {
			c.DNS.ImportAddresses = "127.77.0.1/32"
			c.Imports = []Import{{Service: "demo/a", Port: 80}, {Service: "demo/b", Port: 80}}
		}, "dns.importAddresses", "2 services need an address and 127.77.0.1/32 has 1"},
		{"import without listen or addresses", func(c *Config) { c.Imports = []Import{{Service: "demo/a", Port: 80}} }, "imports.0.listen", "required value missing"},
		{"service port imported twice", func(c *Config) {
			c.DNS.ImportAddresses = "127.77.0.0/16"
			c.Imports = []Import{{Service: "demo/a", Port: 80}, {Service: "demo/a", Port: 81}, {Service: "demo/a", Port: 80, Listen: "127.0.0.1:18080"}}
		}, "imports.2.port", "demo/a port 80 is imported twice (imports.0)"},
		{"service address clashes", func(c *Config) {
			c.DNS.ImportAddresses = "127.77.0.0/16"
			c.Imports = []Import{{Service: "demo/a", Port: 7946}}
		}, "imports.0.port", "clashes with gossip.bind (0.0.0.0:7946)"},
		{"state heartbeat", func(c *Config) {
			withState(c)
			c.State.HeartbeatTimeout = 0
		}, "state.heartbeatTimeout", "at least 50ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			errs := fieldErrors(c.Validate())
			msg, ok := errs[tc.key]
			if !ok || !strings.Contains(msg, tc.msg) {
				t.Fatalf("problems %v; want %s: ...%s...", errs, tc.key, tc.msg)
			}
		})
	}
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c := validConfig()
	withState(&c)
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config with routing state: %v", err)
	}
	if got := DefaultConfig().Listen.Passthrough; got != "127.0.0.1:15002" {
		t.Errorf("default listen.passthrough %q", got)
	}
	c = validConfig()
	c.Listen.Passthrough = ""
	if err := c.Validate(); err != nil {
		t.Fatalf("passthrough disabled: %v", err)
	}
	for _, admin := range []string{"127.0.0.1:15000", "127.0.3.1:15000", "localhost:15000", "[::1]:15000"} {
		c = validConfig()
		c.Listen.Admin = admin
		if err := c.Validate(); err != nil {
			t.Errorf("admin on loopback %s without a token: %v", admin, err)
		}
	}
	c = validConfig()
	c.DNS = DNSConfig{Listen: "127.0.0.1:15053", TTL: 2 * time.Second, Domain: "ClusterSet.Local.", ImportAddresses: "127.77.0.0/16"}
	c.Imports = []Import{{Service: "demo/a", Port: 8080}, {Service: "demo/a", Port: 9090, Listen: "127.0.0.1:19090"}, {Service: "demo/b", Port: 8080}}
	if err := c.Validate(); err != nil {
		t.Fatalf("dns with import addresses: %v", err)
	}
	c = validConfig()
	c.Listen.Admin, c.Listen.Probes, c.Admin.TokenFile = "0.0.0.0:15000", "0.0.0.0:15020", "/etc/strait/admin-token"
	c.Admin.AllowedHosts = []string{"gw-1.eu-west.internal", "10.0.1.5", "fd00::5"}
	if err := c.Validate(); err != nil {
		t.Fatalf("admin on all interfaces with a token: %v", err)
	}
}

func withState(c *Config) {
	c.State.DataDir = "/var/lib/strait"
	c.State.Bind = "127.0.0.1:8300"
	c.State.Voter = true
	c.State.BootstrapExpect = 3
	c.Listen.Control = "127.0.0.1:15012"
}

func TestConfigValidateReportsAllProblems(t *testing.T) {
	c := validConfig()
	c.Cluster, c.Region, c.Log.Format = "", "", "xml"
	if got := fieldErrors(c.Validate()); len(got) != 3 {
		t.Fatalf("got %d problems %v, want 3", len(got), got)
	}
}
