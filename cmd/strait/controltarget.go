package main

import (
	"errors"
	"net"

	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/internal/configfile"
)

// controlTarget is what a client of a gateway's control API reads from
// that gateway's config file: the control address and the TLS files. The
// file is read through the same layers as the gateway's own config (the
// file, then STRAIT_* variables such as STRAIT_LISTEN_CONTROL); its other
// keys are skipped, so the file need not be valid as a whole, and problems
// name file:line:column or the variable.
type controlTarget struct {
	Listen struct {
		Control string `mapstructure:"control"`
	} `mapstructure:"listen"`
	TLS struct {
		Cert string `mapstructure:"cert"`
		Key  string `mapstructure:"key"`
		CA   string `mapstructure:"ca"`
	} `mapstructure:"tls"`
}

// Validate requires the three TLS files and a host:port control address.
func (c *controlTarget) Validate() error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"tls.cert", c.TLS.Cert}, {"tls.key", c.TLS.Key}, {"tls.ca", c.TLS.CA}} {
		if f.v == "" {
			errs = append(errs, configfile.Errorf(f.key, "required to reach the control API"))
		}
	}
	if _, _, err := configfile.HostPort(c.Listen.Control); err != nil {
		errs = append(errs, configfile.Errorf("listen.control", "%v", err))
	}
	return errors.Join(errs...)
}

// loadControlTarget reads the control target from a gateway config file;
// a control address on all interfaces is dialled on loopback.
func loadControlTarget(file string) (controlTarget, error) {
	var t controlTarget
	t.Listen.Control = gateway.DefaultConfig().Listen.Control
	if err := configfile.Load(configfile.Options{File: file, EnvPrefix: "STRAIT", Subset: true}, &t); err != nil {
		return controlTarget{}, err
	}
	if h, p, err := net.SplitHostPort(t.Listen.Control); err == nil && configfile.Unspecified(h) {
		t.Listen.Control = net.JoinHostPort("127.0.0.1", p)
	}
	return t, nil
}
