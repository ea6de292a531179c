package main

import (
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/gateway"
	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/internal/configfile"
)

// adminFlags say how to reach a gateway's admin API: its address and the
// file holding the operator token, from flags, STRAIT_* variables or,
// with --config, the gateway's own config file.
type adminFlags struct {
	addr, tokenFile, config string
}

// register adds --admin, --admin-token-file and --config.
func (f *adminFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "admin", os.Getenv("STRAIT_ADMIN"), "gateway admin address (env STRAIT_ADMIN; default 127.0.0.1:15000)")
	tokenFileFlag(cmd, &f.tokenFile)
	cmd.Flags().StringVarP(&f.config, "config", "c", os.Getenv("STRAIT_CONFIG"), "gateway config file to take listen.admin and admin.tokenFile from (env STRAIT_CONFIG)")
}

// tokenFileFlag adds --admin-token-file.
func tokenFileFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "admin-token-file", os.Getenv("STRAIT_ADMIN_TOKEN_FILE"), "file holding the gateway's admin token, its admin.tokenFile (env STRAIT_ADMIN_TOKEN_FILE)")
}

// client returns a client of the admin API the flags name.
func (f *adminFlags) client() (admin.Client, error) {
	addr, tokenFile := f.addr, f.tokenFile
	if f.config != "" {
		t, err := loadAdminTarget(f.config)
		if err != nil {
			return admin.Client{}, &usageError{err}
		}
		addr, tokenFile = first(addr, t.Listen.Admin), first(tokenFile, t.Admin.TokenFile)
	}
	c := admin.Client{Addr: first(addr, gateway.DefaultConfig().Listen.Admin)}
	if tokenFile != "" {
		tok, err := admin.ReadTokenFile(tokenFile)
		if err != nil {
			return admin.Client{}, &usageError{err}
		}
		c.Token = tok
	}
	return c, nil
}

// adminTarget is what a client of the admin API reads from a gateway's
// config file, through the same layers as the gateway (STRAIT_LISTEN_ADMIN
// too); other keys are skipped.
type adminTarget struct {
	Listen struct {
		Admin string `mapstructure:"admin"`
	} `mapstructure:"listen"`
	Admin struct {
		TokenFile string `mapstructure:"tokenFile"`
	} `mapstructure:"admin"`
}

// loadAdminTarget reads the admin target from a gateway config file; an
// admin address on all interfaces is dialled on loopback.
func loadAdminTarget(file string) (adminTarget, error) {
	var t adminTarget
	t.Listen.Admin = gateway.DefaultConfig().Listen.Admin
	if err := configfile.Load(configfile.Options{File: file, EnvPrefix: "STRAIT", Subset: true}, &t); err != nil {
		return adminTarget{}, err
	}
	if h, p, err := net.SplitHostPort(t.Listen.Admin); err == nil && configfile.Unspecified(h) {
		t.Listen.Admin = net.JoinHostPort("127.0.0.1", p)
	}
	return t, nil
}
