package configfile

import (
	"errors"
	"os"
	"testing"
)

// controlTarget is what a client of a gateway's control API reads from
// that gateway's config file: a few of its keys.
type controlTarget struct {
	Listen struct {
		Control string `mapstructure:"control"`
	} `mapstructure:"listen"`
	State struct {
		ControlAdvertise string `mapstructure:"controlAdvertise"`
	} `mapstructure:"state"`
	TLS struct {
		Cert string `mapstructure:"cert"`
		Key  string `mapstructure:"key"`
		CA   string `mapstructure:"ca"`
	} `mapstructure:"tls"`
}

func (c *controlTarget) Validate() error {
	var errs []error
	for key, v := range map[string]string{"tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key, "tls.ca": c.TLS.CA} {
		if v == "" {
			errs = append(errs, Errorf(key, "required to reach the control API"))
		}
	}
	return errors.Join(errs...)
}

const gatewayFile = `cluster: a
region: eu-west
listen:
  data: 0.0.0.0:15443
  control: 0.0.0.0:15012
  controll: typo
state: {bind: 0.0.0.0:8300, controlAdvertise: 10.0.0.1:15012}
tls:
  cert: a.pem
  key: a-key.pem
  ca: ca.pem
services: [{name: x}]
`

func loadSubset(t *testing.T, doc string) (controlTarget, error) {
	t.Helper()
	t.Chdir(t.TempDir())
	if err := os.WriteFile("gw.yaml", []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var c controlTarget
	c.Listen.Control = "127.0.0.1:15012"
	return c, Load(Options{File: "gw.yaml", EnvPrefix: "STRAIT", Subset: true}, &c)
}

// TestSubset: a struct holding some of a file's keys reads them through
// the file and the environment, skips the file's other keys, and reports
// problems with the keys it holds at their position.
func TestSubset(t *testing.T) {
	t.Setenv("STRAIT_TLS_CA", "env-ca.pem")
	t.Setenv("STRAIT_CLUSTER", "not read")
	c, err := loadSubset(t, gatewayFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Control != "0.0.0.0:15012" || c.State.ControlAdvertise != "10.0.0.1:15012" ||
		c.TLS.Cert != "a.pem" || c.TLS.Key != "a-key.pem" || c.TLS.CA != "env-ca.pem" {
		t.Errorf("got %+v", c)
	}

	_, err = loadSubset(t, "listen: {control: [a]}\ntls: {cert: a.pem, key: k.pem, cert: b.pem}\nother: 1\n")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	var got []string
	for _, p := range ce.Problems {
		got = append(got, p.String())
	}
	checkProblems(t, got, []string{
		"gw.yaml:1:19: key listen.control: expected a string, found a list",
		"gw.yaml:2:32: key tls.cert: duplicate key (already set at line 2)",
	})
}
