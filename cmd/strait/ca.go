package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
)

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "A small file-based CA for gateway certificates (labs and first deployments)",
	}
	var dir, trustDomain string
	var validity time.Duration
	initCmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a federation CA: DIR/ca.pem and DIR/ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			if _, err := os.Stat(keyFile); err == nil {
				return fmt.Errorf("%s exists: refusing to replace a CA", keyFile)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", dir, err)
			}
			ca, err := identity.NewCA(trustDomain, validity)
			if err != nil {
				return err
			}
			if err := ca.SaveCA(certFile, keyFile); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA for trust domain %s: %s (key %s)\n", trustDomain, certFile, keyFile)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory for ca.pem and ca-key.pem (required)")
	initCmd.Flags().StringVar(&trustDomain, "trust-domain", "strait.local", "SPIFFE trust domain")
	initCmd.Flags().DurationVar(&validity, "validity", 10*365*24*time.Hour, "how long the CA is valid")
	_ = initCmd.MarkFlagRequired("dir")

	var out, cluster, region, operator, scope string
	var voter bool
	var certValidity time.Duration
	issueCmd := &cobra.Command{
		Use:   "issue --dir DIR (--cluster C --region R [--voter] | --operator NAME [--scope KINDS]) --out OUT",
		Short: "Issue a gateway, voter or operator certificate: OUT/cert.pem, OUT/key.pem and OUT/ca.pem",
		Long: `Issue a certificate of the federation's CA.

  --cluster C --region R            a gateway of cluster C in region R: it carries
                                    traffic and follows the routing state
  --cluster C --region R --voter    the same, and it may vote in the routing state
                                    (state.voter: true needs it)
  --operator NAME [--scope KINDS]   an operator: writes routing-state records
                                    (policy, failover, export, import, cluster,
                                    trust; --scope limits it to some, comma-
                                    separated), removes servers, restores
                                    snapshots; carries no traffic`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id := identity.ID{Role: identity.RoleGateway, Region: region, Cluster: cluster}
			switch {
			case operator != "" && (cluster != "" || region != "" || voter):
				return &usageError{errors.New("--operator issues an operator certificate: it takes no --cluster, --region or --voter")}
			case operator != "":
				id = identity.ID{Role: identity.RoleOperator, Name: operator, Scope: scope}
				for _, k := range strings.Split(scope, ",") {
					if scope != "" && !slices.Contains(append(state.UserKinds(), state.KindMember), k) {
						return &usageError{fmt.Errorf("--scope: %q is not a record kind (%s)", k, strings.Join(append(state.UserKinds(), state.KindMember), ", "))}
					}
				}
			case scope != "":
				return &usageError{errors.New("--scope applies to --operator only")}
			case cluster == "" || region == "":
				return &usageError{errors.New("--cluster and --region are required (or --operator NAME)")}
			case voter:
				id.Role = identity.RoleVoter
			}
			ca, err := identity.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
			if err != nil {
				return err
			}
			if err := ca.WriteIDFiles(out, id, certValidity); err != nil {
				return err
			}
			id.TrustDomain = ca.TrustDomain
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", id, out)
			return nil
		},
	}
	issueCmd.Flags().StringVar(&dir, "dir", "", "CA directory from 'strait ca init' (required)")
	issueCmd.Flags().StringVar(&out, "out", "", "directory to write cert.pem, key.pem and ca.pem (required)")
	issueCmd.Flags().StringVar(&cluster, "cluster", "", "cluster of the gateway")
	issueCmd.Flags().StringVar(&region, "region", "", "region of the gateway")
	issueCmd.Flags().BoolVar(&voter, "voter", false, "the gateway may vote in the routing state")
	issueCmd.Flags().StringVar(&operator, "operator", "", "issue an operator certificate for NAME")
	issueCmd.Flags().StringVar(&scope, "scope", "", "record kinds the operator may write, comma-separated (default: all)")
	issueCmd.Flags().DurationVar(&certValidity, "validity", 365*24*time.Hour, "how long the certificate is valid")
	_ = issueCmd.MarkFlagRequired("dir")
	_ = issueCmd.MarkFlagRequired("out")

	cmd.AddCommand(initCmd, issueCmd, newCATrustCmd())
	cmd.AddCommand(newCARevokeCmds()...)
	return cmd
}
