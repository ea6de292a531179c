package configfile

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// gatewayConfig is a representative config: nested structs, lists of
// structs, maps, durations, mixed-case tags, a TextUnmarshaler and a
// squashed embedded struct.
type gatewayConfig struct {
	Cluster     string            `mapstructure:"cluster"`
	TrustDomain string            `mapstructure:"trustDomain"`
	Listen      listenConfig      `mapstructure:"listen"`
	Timeout     time.Duration     `mapstructure:"timeout"`
	Workers     int               `mapstructure:"workers"`
	Ratio       float64           `mapstructure:"ratio"`
	Debug       bool              `mapstructure:"debug"`
	Regions     []string          `mapstructure:"regions"`
	Labels      map[string]string `mapstructure:"labels"`
	Services    []serviceConfig   `mapstructure:"services"`
	LogLevel    slog.Level        `mapstructure:"logLevel"`
	TLS         *tlsConfig        `mapstructure:"tls"`
	nodeConfig  `mapstructure:",squash"`
}

type nodeConfig struct {
	NodeName string `mapstructure:"nodeName"`
}

type listenConfig struct {
	Admin string `mapstructure:"admin"`
	Data  string `mapstructure:"data"`
	Port  uint16 `mapstructure:"port"`
}

type serviceConfig struct {
	Name      string   `mapstructure:"name"`
	Endpoints []string `mapstructure:"endpoints"`
	Weight    int      `mapstructure:"weight"`
}

type tlsConfig struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

func defaultConfig() gatewayConfig {
	return gatewayConfig{
		TrustDomain: "strait.local",
		Listen:      listenConfig{Admin: "127.0.0.1:9901", Data: "0.0.0.0:8443", Port: 7946},
		Timeout:     2 * time.Second,
		Workers:     4,
		Ratio:       0.5,
		Regions:     []string{"eu-west", "eu-central", "us-east"},
		Labels:      map[string]string{"Tier": "edge"},
		nodeConfig:  nodeConfig{NodeName: "node-a"},
	}
}

func (c *gatewayConfig) Validate() error {
	var errs []error
	if c.Cluster == "" {
		errs = append(errs, Errorf("cluster", "required value missing"))
	}
	if c.Listen.Admin == c.Listen.Data {
		errs = append(errs, Errorf("listen.admin", "must differ from listen.data (both %s)", c.Listen.Admin))
	}
	for i, s := range c.Services {
		if s.Weight < 0 {
			errs = append(errs, Errorf(fmt.Sprintf("services[%d].weight", i), "must not be negative, found %d", s.Weight))
		}
		for j, e := range s.Endpoints {
			if !strings.Contains(e, ":") {
				errs = append(errs, Errorf(fmt.Sprintf("services.%d.endpoints.%d", i, j), "expected host:port, found %q", e))
			}
		}
	}
	if c.Workers > 1000 {
		// Wrapped, to prove Load finds FieldErrors below a wrap.
		errs = append(errs, fmt.Errorf("limits: %w", Errorf("workers", "at most 1000, found %d", c.Workers)))
	}
	if c.Ratio > 1 {
		errs = append(errs, errors.New("ratio above 1 is not supported"))
	}
	return errors.Join(errs...)
}

// load writes yaml to gw.yaml in a fresh working directory and loads it
// over the defaults. It returns the config and the problem lines.
func load(t *testing.T, yaml string, opts Options) (gatewayConfig, []string) {
	t.Helper()
	t.Chdir(t.TempDir())
	if err := os.WriteFile("gw.yaml", []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if opts.File == "" {
		opts.File = "gw.yaml"
	}
	cfg := defaultConfig()
	err := Load(opts, &cfg)
	if err == nil {
		return cfg, nil
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load returned %T, want *Error: %v", err, err)
	}
	var lines []string
	for _, p := range ce.Problems {
		lines = append(lines, p.String())
	}
	return cfg, lines
}

func checkProblems(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

const validYAML = `# gateway
cluster: prod
trustDomain: mesh.example
listen:
  admin: 127.0.0.1:9000
  data: 0.0.0.0:443
  port: 0x1F90
timeout: 250ms
workers: 8
ratio: 1
debug: true
regions: [eu-west]
labels:
  App.Kubernetes.io/Name: gw
  Version: 1.0
services:
  - name: api
    endpoints: [10.0.0.1:80, "10.0.0.2:80"]
    weight: "3"
logLevel: debug
tls: {cert: c.pem}
nodeName: node-b
`

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  []string                         // problem lines; nil means Load succeeds
		check func(*testing.T, *gatewayConfig) // run when Load succeeds
	}{
		{
			name: "every kind of value",
			yaml: validYAML,
			check: func(t *testing.T, c *gatewayConfig) {
				want := gatewayConfig{
					Cluster:     "prod",
					TrustDomain: "mesh.example",
					Listen:      listenConfig{Admin: "127.0.0.1:9000", Data: "0.0.0.0:443", Port: 8080},
					Timeout:     250 * time.Millisecond,
					Workers:     8,
					Ratio:       1,
					Debug:       true,
					Regions:     []string{"eu-west"},
					Labels:      map[string]string{"App.Kubernetes.io/Name": "gw", "Version": "1.0"},
					Services:    []serviceConfig{{Name: "api", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"}, Weight: 3}},
					LogLevel:    slog.LevelDebug,
					TLS:         &tlsConfig{Cert: "c.pem"},
					nodeConfig:  nodeConfig{NodeName: "node-b"},
				}
				if !reflect.DeepEqual(*c, want) {
					t.Errorf("got  %+v\nwant %+v", *c, want)
				}
			},
		},
		{
			name: "empty file keeps defaults",
			yaml: "",
			want: []string{"gw.yaml: key cluster: required value missing"},
		},
		{
			name: "comments only keeps defaults",
			yaml: "# nothing here\n\n   # still nothing\n",
			want: []string{"gw.yaml: key cluster: required value missing"},
		},
		{
			name: "absent keys keep defaults, null keeps default",
			yaml: "cluster: prod\nlisten:\n  admin: 127.0.0.1:1\nworkers:\n",
			check: func(t *testing.T, c *gatewayConfig) {
				d := defaultConfig()
				d.Cluster, d.Listen.Admin = "prod", "127.0.0.1:1"
				if !reflect.DeepEqual(*c, d) {
					t.Errorf("got  %+v\nwant %+v", *c, d)
				}
			},
		},
		{
			name: "a list replaces the default list, a map the default map",
			yaml: "cluster: prod\nregions: [ap-south]\nlabels: {zone: a}\n",
			check: func(t *testing.T, c *gatewayConfig) {
				if !reflect.DeepEqual(c.Regions, []string{"ap-south"}) {
					t.Errorf("regions = %q", c.Regions)
				}
				if !reflect.DeepEqual(c.Labels, map[string]string{"zone": "a"}) {
					t.Errorf("labels = %q", c.Labels)
				}
			},
		},
		{
			name: "keys match tags ignoring case",
			yaml: "Cluster: prod\ntrustdomain: x.example\nLISTEN: {Admin: a:1}\n",
			check: func(t *testing.T, c *gatewayConfig) {
				if c.Cluster != "prod" || c.TrustDomain != "x.example" || c.Listen.Admin != "a:1" {
					t.Errorf("got %+v", *c)
				}
			},
		},
		{
			name: "anchors and merge keys",
			yaml: "cluster: prod\nbase: &b {name: x, weight: 2}\nservices:\n  - <<: *b\n    name: y\n",
			want: []string{`gw.yaml:2:1: key base: unknown key`},
		},
		{
			name: "merge keys fill list items",
			yaml: "cluster: prod\nservices:\n  - &b {name: x, weight: 2}\n  - <<: *b\n    name: y\n",
			check: func(t *testing.T, c *gatewayConfig) {
				want := []serviceConfig{{Name: "x", Weight: 2}, {Name: "y", Weight: 2}}
				if !reflect.DeepEqual(c.Services, want) {
					t.Errorf("services = %+v", c.Services)
				}
			},
		},
		{
			name: "syntax error",
			yaml: "cluster: prod\nlisten:\n  admin: [a\n",
			want: []string{"gw.yaml:3: YAML syntax error: did not find expected ',' or ']'"},
		},
		{
			name: "syntax error in a nested mapping",
			yaml: "cluster: prod\nlisten:\n  admin: a\n  - b\n",
			want: []string{"gw.yaml:3: YAML syntax error: did not find expected key"},
		},
		{
			name: "bad indentation",
			yaml: "cluster: prod\nlisten:\n  admin: a\n data: b\n",
			want: []string{"gw.yaml:4: YAML syntax error: did not find expected key"},
		},
		{
			name: "tab indentation",
			yaml: "cluster: prod\nlisten:\n\tadmin: a\n",
			want: []string{"gw.yaml:3: YAML syntax error: found character that cannot start any token (tabs are not allowed for indentation)"},
		},
		{
			name: "two documents",
			yaml: "cluster: prod\n---\ncluster: dev\n",
			want: []string{"gw.yaml:2:1: a second YAML document starts here; the file must hold exactly one"},
		},
		{
			name: "top level is not a mapping",
			yaml: "- cluster\n",
			want: []string{"gw.yaml:1:1: expected a mapping, found a list", "gw.yaml: key cluster: required value missing"},
		},
		{
			name: "unknown key with a suggestion",
			yaml: "cluster: prod\nlisten:\n  admin: a:1\n  dta: b:2\n",
			want: []string{`gw.yaml:4:3: key listen.dta: unknown key (did you mean "data"?)`},
		},
		{
			name: "unknown key without a close match lists the known keys",
			yaml: "cluster: prod\nlisten:\n  admin: a:1\n  frobnicate: 1\n",
			want: []string{`gw.yaml:4:3: key listen.frobnicate: unknown key (known keys: admin, data, port)`},
		},
		{
			name: "unknown key inside a list item",
			yaml: "cluster: prod\nservices:\n  - name: a\n  - nmae: b\n",
			want: []string{`gw.yaml:4:5: key services.1.nmae: unknown key (did you mean "name"?)`},
		},
		{
			name: "unknown key at top level, mixed-case suggestion",
			yaml: "cluster: prod\ntrustDomian: x\n",
			want: []string{`gw.yaml:2:1: key trustDomian: unknown key (did you mean "trustDomain"?)`},
		},
		{
			name: "mapping where a string is expected",
			yaml: "cluster:\n  name: prod\n",
			want: []string{`gw.yaml:2:3: key cluster: expected a string, found a mapping`},
		},
		{
			name: "string where an integer is expected",
			yaml: "cluster: prod\nworkers: abc\n",
			want: []string{`gw.yaml:2:10: key workers: expected an integer, found "abc"`},
		},
		{
			name: "float where an integer is expected",
			yaml: "cluster: prod\nworkers: 1.5\n",
			want: []string{`gw.yaml:2:10: key workers: expected an integer, found "1.5"`},
		},
		{
			name: "integer out of range",
			yaml: "cluster: prod\nlisten:\n  port: 70000\n",
			want: []string{`gw.yaml:3:9: key listen.port: expected an integer from 0 to 65535, found "70000"`},
		},
		{
			name: "list where a scalar is expected",
			yaml: "cluster: prod\nlisten:\n  admin:\n    - a\n    - b\n",
			want: []string{`gw.yaml:4:5: key listen.admin: expected a string, found a list`},
		},
		{
			name: "scalar where a list is expected",
			yaml: "cluster: prod\nregions: eu-west\n",
			want: []string{`gw.yaml:2:10: key regions: expected a list of strings, found "eu-west"`},
		},
		{
			name: "not a boolean",
			yaml: "cluster: prod\ndebug: yes please\n",
			want: []string{`gw.yaml:2:8: key debug: expected a boolean (true or false), found "yes please"`},
		},
		{
			name: "bad duration",
			yaml: "cluster: prod\ntimeout: abc\n",
			want: []string{`gw.yaml:2:10: key timeout: expected a duration like "2s", found "abc"`},
		},
		{
			name: "duration without a unit",
			yaml: "cluster: prod\ntimeout: 5\n",
			want: []string{`gw.yaml:2:10: key timeout: expected a duration like "2s", found "5"`},
		},
		{
			name: "bad TextUnmarshaler value",
			yaml: "cluster: prod\nlogLevel: chatty\n",
			want: []string{`gw.yaml:2:11: key logLevel: expected a valid slog.Level, found "chatty": slog: level string "chatty": unknown name`},
		},
		{
			name: "wrong type inside a list item",
			yaml: "cluster: prod\nservices:\n  - name: a\n    weight: heavy\n",
			want: []string{`gw.yaml:4:13: key services.0.weight: expected an integer, found "heavy"`},
		},
		{
			name: "null list item",
			yaml: "cluster: prod\nregions:\n  - a\n  -\n",
			want: []string{`gw.yaml:4:4: key regions.1: expected a string, found null`},
		},
		{
			name: "duplicate key",
			yaml: "cluster: prod\nlisten:\n  admin: a:1\n  data: b:1\n  admin: c:1\n",
			want: []string{`gw.yaml:5:3: key listen.admin: duplicate key (already set at line 3)`},
		},
		{
			name: "duplicate key differing in case",
			yaml: "cluster: prod\nCluster: dev\n",
			want: []string{`gw.yaml:2:1: key Cluster: duplicate key (already set at line 1 as "cluster"; keys are not case-sensitive)`},
		},
		{
			name: "duplicate map key",
			yaml: "cluster: prod\nlabels:\n  a: 1\n  a: 2\n",
			want: []string{`gw.yaml:4:3: key labels.a: duplicate key (already set at line 3)`},
		},
		{
			name: "non-scalar key",
			yaml: "cluster: prod\n? [a, b]\n: c\n",
			want: []string{`gw.yaml:2:3: expected a key, found a list`},
		},
		{
			name: "aliases that expand too far",
			yaml: laughs(),
			want: []string{`gw.yaml: document too large: more than 200000 nodes with aliases expanded`},
		},
		{
			name: "self-referencing alias",
			yaml: "cluster: prod\nservices: &s\n  - name: a\n    endpoints: *s\n",
			want: []string{`gw.yaml:3:5: key services.0.endpoints.0: expected a string, found a mapping`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, got := load(t, tt.yaml, Options{})
			checkProblems(t, got, tt.want)
			if tt.check != nil && got == nil {
				tt.check(t, &cfg)
			}
		})
	}
}

// laughs is a "billion laughs" document: each level merges ten copies of
// the level below, so a naive walk would visit 10^9 keys.
func laughs() string {
	var b strings.Builder
	b.WriteString("cluster: prod\nservices:\n  - &a0 {name: x}\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "  - &a%d {<<: [", i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]}\n")
	}
	return b.String()
}

func TestMissingFile(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := defaultConfig()
	err := Load(Options{File: "nope.yaml"}, &cfg)
	want := "invalid config nope.yaml (1 problem):\n  nope.yaml: config file does not exist"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

func TestNotAStructPointer(t *testing.T) {
	var cfg gatewayConfig
	if err := Load(Options{}, cfg); err == nil {
		t.Error("Load accepted a struct value")
	}
}

func TestSeveralProblemsTogether(t *testing.T) {
	yaml := `cluster:
listen:
  admin: a:1
  data: a:1
  prot: 1
workers: many
timeout: 3 seconds
services:
  - name: api
    endpoints: [nohost]
    weight: -1
`
	t.Chdir(t.TempDir())
	if err := os.WriteFile("gw.yaml", []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	err := Load(Options{File: "gw.yaml"}, &cfg)
	want := `invalid config gw.yaml (7 problems):
  gw.yaml:5:3: key listen.prot: unknown key (did you mean "port"?)
  gw.yaml:6:10: key workers: expected an integer, found "many"
  gw.yaml:7:10: key timeout: expected a duration like "2s", found "3 seconds"
  gw.yaml:1:1: key cluster: required value missing
  gw.yaml:3:3: key listen.admin: must differ from listen.data (both a:1)
  gw.yaml:11:5: key services.0.weight: must not be negative, found -1
  gw.yaml:10:17: key services.0.endpoints.0: expected host:port, found "nohost"`
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
}

func TestEnvAndFlags(t *testing.T) {
	const file = "cluster: prod\nlisten:\n  admin: a:1\nworkers: 8\n"
	newFlags := func(args ...string) *pflag.FlagSet {
		fs := pflag.NewFlagSet("gateway", pflag.ContinueOnError)
		fs.String("cluster", "default-cluster", "")
		fs.Int("workers", 1, "")
		fs.String("admin", "", "")
		fs.String("port", "", "")
		fs.StringSlice("region", nil, "")
		fs.Duration("timeout", 0, "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	keys := map[string]string{"cluster": "cluster", "workers": "workers", "admin": "listen.admin",
		"port": "listen.port", "region": "regions", "timeout": "timeout"}
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		keys  map[string]string // FlagKeys when not the default set
		want  []string
		check func(*testing.T, *gatewayConfig)
	}{
		{
			name: "env overrides the file and reaches keys absent from it",
			env: map[string]string{"STRAIT_WORKERS": "16", "STRAIT_LISTEN_DATA": "d:2", "STRAIT_TRUSTDOMAIN": "env.example",
				"STRAIT_REGIONS": "ap-south,ap-east", "STRAIT_TIMEOUT": "1m", "STRAIT_TLS_CERT": "e.pem", "STRAIT_NODENAME": "node-e",
				"STRAIT_DEBUG": "true", "STRAIT_LOGLEVEL": "warn", "STRAIT_LISTEN_PORT": "0x10", "STRAIT_RATIO": ""},
			check: func(t *testing.T, c *gatewayConfig) {
				want := defaultConfig()
				want.Cluster, want.Listen.Admin, want.Listen.Data, want.Listen.Port = "prod", "a:1", "d:2", 16
				want.Workers, want.TrustDomain, want.Timeout, want.Debug = 16, "env.example", time.Minute, true
				want.Regions, want.TLS, want.NodeName, want.LogLevel = []string{"ap-south", "ap-east"}, &tlsConfig{Cert: "e.pem"}, "node-e", slog.LevelWarn
				if !reflect.DeepEqual(*c, want) {
					t.Errorf("got  %+v\nwant %+v", *c, want)
				}
			},
		},
		{
			name: "env of the wrong type names the variable",
			env:  map[string]string{"STRAIT_WORKERS": "lots", "STRAIT_TIMEOUT": "soon", "STRAIT_LISTEN_PORT": "-1"},
			want: []string{
				`env STRAIT_LISTEN_PORT: key listen.port: expected a non-negative integer, found "-1"`,
				`env STRAIT_TIMEOUT: key timeout: expected a duration like "2s", found "soon"`,
				`env STRAIT_WORKERS: key workers: expected an integer, found "lots"`,
			},
		},
		{
			name: "changed flags override env and file, unchanged ones do not",
			env:  map[string]string{"STRAIT_WORKERS": "16", "STRAIT_CLUSTER": "from-env"},
			args: []string{"--workers=32", "--admin=f:3", "--region=x", "--region=y", "--timeout=3s"},
			check: func(t *testing.T, c *gatewayConfig) {
				if c.Cluster != "from-env" || c.Workers != 32 || c.Listen.Admin != "f:3" ||
					!reflect.DeepEqual(c.Regions, []string{"x", "y"}) || c.Timeout != 3*time.Second {
					t.Errorf("got %+v", *c)
				}
			},
		},
		{
			name: "flag of the wrong type names the flag",
			args: []string{"--port=http"},
			want: []string{`flag --port: key listen.port: expected a non-negative integer, found "http"`},
		},
		{
			name: "FlagKeys wiring mistakes are reported",
			keys: map[string]string{"cluster": "clustr", "nope": "cluster", "region": "services"},
			want: []string{
				`flag --cluster: key clustr: FlagKeys maps the flag to a key that is not a settable config key`,
				`flag --nope: key cluster: FlagKeys names a flag that is not defined`,
				`flag --region: key services: FlagKeys maps the flag to a key that is not a settable config key`,
			},
		},
		{
			name: "Validate problem on a file key caused by env is positioned in the file",
			env:  map[string]string{"STRAIT_LISTEN_DATA": "a:1"},
			want: []string{`gw.yaml:3:3: key listen.admin: must differ from listen.data (both a:1)`},
		},
		{
			name: "Validate problem on a key a flag set",
			args: []string{"--admin=0.0.0.0:8443"},
			want: []string{`flag --admin: key listen.admin: must differ from listen.data (both 0.0.0.0:8443)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fk := keys
			if tt.keys != nil {
				fk = tt.keys
			}
			cfg, got := load(t, file, Options{EnvPrefix: "STRAIT", Flags: newFlags(tt.args...), FlagKeys: fk})
			checkProblems(t, got, tt.want)
			if tt.check != nil && got == nil {
				tt.check(t, &cfg)
			}
		})
	}
}

func TestNoFile(t *testing.T) {
	t.Setenv("STRAIT_CLUSTER", "env-only")
	cfg := defaultConfig()
	if err := Load(Options{EnvPrefix: "STRAIT"}, &cfg); err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	want.Cluster = "env-only"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	t.Setenv("STRAIT_CLUSTER", "")
	cfg = defaultConfig()
	err := Load(Options{EnvPrefix: "STRAIT"}, &cfg)
	if err == nil || err.Error() != "invalid config (1 problem):\n  key cluster: required value missing" {
		t.Errorf("err = %v", err)
	}
}

func TestValidateProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "positioned at the key, list items by index",
			yaml: "cluster: prod\nservices:\n  - name: a\n  - name: b\n    weight: -2\n    endpoints:\n      - ok:1\n      - bad\n",
			want: []string{
				`gw.yaml:5:5: key services.1.weight: must not be negative, found -2`,
				`gw.yaml:8:9: key services.1.endpoints.1: expected host:port, found "bad"`,
			},
		},
		{
			name: "key absent from the file has no position",
			yaml: "listen: {admin: a:1}\n",
			want: []string{`gw.yaml: key cluster: required value missing`},
		},
		{
			name: "FieldError found below a wrap, plain errors kept",
			yaml: "cluster: prod\nworkers: 5000\nratio: 2\n",
			want: []string{
				`gw.yaml:2:1: key workers: at most 1000, found 5000`,
				`gw.yaml: ratio above 1 is not supported`,
			},
		},
		{
			name: "FieldError on a key with a type problem is dropped",
			yaml: "cluster: prod\nservices:\n  - weight: x\n    endpoints: [bad]\n",
			want: []string{
				`gw.yaml:3:13: key services.0.weight: expected an integer, found "x"`,
				`gw.yaml:4:17: key services.0.endpoints.0: expected host:port, found "bad"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := load(t, tt.yaml, Options{})
			checkProblems(t, got, tt.want)
		})
	}
}

func TestFieldError(t *testing.T) {
	if got := Errorf("listen.admin", "bad %s", "addr").Error(); got != "listen.admin: bad addr" {
		t.Errorf("Error() = %q", got)
	}
	p := Problem{File: "gw.yaml", Line: 12, Column: 3, Key: "listen.dta", Msg: `unknown key (did you mean "data"?)`}
	if got := p.String(); got != `gw.yaml:12:3: key listen.dta: unknown key (did you mean "data"?)` {
		t.Errorf("String() = %q", got)
	}
}

func TestDefaultsNotMutated(t *testing.T) {
	// A list in the file must not be written into the default's backing array.
	t.Chdir(t.TempDir())
	if err := os.WriteFile("gw.yaml", []byte("cluster: p\nregions: [zz]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := []string{"eu-west", "eu-central"}
	cfg := defaultConfig()
	cfg.Regions = shared
	if err := Load(Options{File: "gw.yaml"}, &cfg); err != nil {
		t.Fatal(err)
	}
	if shared[0] != "eu-west" || !reflect.DeepEqual(cfg.Regions, []string{"zz"}) {
		t.Errorf("shared = %q, regions = %q", shared, cfg.Regions)
	}
}

func TestErrorRendersAtMostMaxRendered(t *testing.T) {
	e := &Error{}
	for i := range maxRendered + 2 {
		e.Problems = append(e.Problems, Problem{File: "gw.yaml", Line: i + 1, Msg: "bad"})
	}
	lines := strings.Split(e.Error(), "\n")
	if len(lines) != maxRendered+2 || lines[0] != "invalid config gw.yaml (102 problems):" ||
		lines[len(lines)-1] != "  ... and 2 more" {
		t.Errorf("rendered %d lines, first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

func TestStopsAfterMaxFileProblems(t *testing.T) {
	var b strings.Builder
	for i := range maxFileProblems + 50 {
		fmt.Fprintf(&b, "unknown%d: 1\n", i)
	}
	_, got := load(t, b.String(), Options{})
	if len(got) != maxFileProblems+1 || got[len(got)-1] != "gw.yaml: stopped after 1000 problems" {
		t.Errorf("%d problems, last %q", len(got), got[len(got)-1])
	}
}
