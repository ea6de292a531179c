package main

import (
	"encoding/json"
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

	cmd.AddCommand(initCmd, issueCmd, newCAIntermediateCmd(), newCATokenCmd(), newCATrustCmd())
	cmd.AddCommand(newCARevokeCmds()...)
	return cmd
}

// newCAIntermediateCmd is `strait ca intermediate`: the offline root signs
// the intermediate that voters sign certificate requests with.
func newCAIntermediateCmd() *cobra.Command {
	var dir, out string
	var validity time.Duration
	c := &cobra.Command{
		Use:   "intermediate --dir ROOTDIR --out DIR [--validity 8760h]",
		Short: "Sign an intermediate CA for the voters: DIR/intermediate.pem (with its root) and DIR/intermediate-key.pem",
		Long: `Sign an intermediate CA with the root of 'strait ca init' (which stays offline).
Voters that hold it (state.ca.intermediate, state.ca.intermediateKey) sign
gateways' certificate requests: first certificates with a join token
('strait ca token'), renewals with the gateway's own certificate. The
intermediate signs gateway and voter certificates only, never another CA.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := identity.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
			if err != nil {
				return err
			}
			chain, key, err := ca.WriteIntermediateFiles(out, validity)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "intermediate CA for trust domain %s: %s (key %s), valid for %s\n", ca.TrustDomain, chain, key, validity)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "root CA directory from 'strait ca init' (required)")
	c.Flags().StringVar(&out, "out", "", "directory to write intermediate.pem and intermediate-key.pem (required)")
	c.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "how long the intermediate is valid (not past the root)")
	_ = c.MarkFlagRequired("dir")
	_ = c.MarkFlagRequired("out")
	return c
}

// newCATokenCmd is `strait ca token`: an operator writes a join token's
// record (the hash of its secret) to the routing state and prints the
// token, which pins the federation's root.
func newCATokenCmd() *cobra.Command {
	var cf controlFlags
	var cluster, region, rootFile string
	var voter bool
	var ttl time.Duration
	c := &cobra.Command{
		Use:   "token --cluster C --region R [--voter] [--ttl 1h] (--config GATEWAY.yaml | --cert --key --ca)",
		Short: "Create a single-use join token for a new gateway's first certificate; prints the token",
		Long: `Create a join token with which a new gateway of cluster C in region R (a voter
with --voter) obtains its first certificate from the federation's CA
(tls.source: ca). The token is used once, within --ttl of its creation by the
leader's clock; the routing state keeps only the hash of its secret, in a
jointoken record keyed by the token's ID ('strait state list jointoken'
lists them; 'strait state delete jointoken ID' revokes one). The token also
carries the SHA-256 of the federation's root certificate, by which the new
gateway checks the CA server before it trusts anything.

The token goes to stdout alone; what it is for goes to stderr. Needs an
operator certificate (the jointoken kind in its scope, or no scope).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ flag, v string }{{"--cluster", cluster}, {"--region", region}} {
				if err := state.ValidateKey(state.KindCluster, f.v); err != nil {
					return &usageError{fmt.Errorf("%s: %q is not a cluster or region name (a DNS label)", f.flag, f.v)}
				}
			}
			if ttl < time.Second || ttl > state.MaxTokenTTL {
				return &usageError{fmt.Errorf("--ttl: want 1s to %s, found %s", state.MaxTokenTTL, ttl)}
			}
			root, err := cf.root(rootFile)
			if err != nil {
				return err
			}
			tok, err := identity.NewToken(root)
			if err != nil {
				return err
			}
			role := identity.RoleGateway
			if voter {
				role = identity.RoleVoter
			}
			value, err := json.Marshal(state.JoinToken{Cluster: cluster, Region: region, Role: string(role), SecretHash: tok.SecretHash(), TTLSeconds: int64(ttl / time.Second)})
			if err != nil {
				return err
			}
			resp, err := call(cmd, &cf, (*state.ControlClient).Write, &state.WriteRequest{Op: state.OpPut, Kind: state.KindJoinToken, Key: tok.ID, Value: string(value)})
			if err != nil {
				return remoteErr(err)
			}
			id := identity.ID{Role: role, Region: region, Cluster: cluster}
			for _, u := range root.URIs {
				id.TrustDomain = u.Host
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok.String())
			fmt.Fprintf(cmd.ErrOrStderr(), "join token %s for %s, written at index %d: single use, valid for %s from then; pins root %s\n",
				tok.ID, id, resp.Index, ttl, identity.RootHash(root))
			return nil
		},
	}
	c.Flags().StringVar(&cluster, "cluster", "", "cluster of the new gateway (required)")
	c.Flags().StringVar(&region, "region", "", "region of the new gateway (required)")
	c.Flags().BoolVar(&voter, "voter", false, "the new gateway is a voter")
	c.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token may be used after it is written")
	c.Flags().StringVar(&rootFile, "root", "", "root certificate the token pins (default: the only root of the CA bundle, --ca or the config's tls.ca)")
	_ = c.MarkFlagRequired("cluster")
	_ = c.MarkFlagRequired("region")
	cf.add(c)
	return c
}
