package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

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

	var out, cluster, region string
	var certValidity time.Duration
	issueCmd := &cobra.Command{
		Use:   "issue --dir DIR --cluster C --region R --out OUT",
		Short: "Issue a gateway certificate: OUT/cert.pem, OUT/key.pem and OUT/ca.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cluster == "" || region == "" {
				return &usageError{errors.New("--cluster and --region are required")}
			}
			ca, err := identity.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
			if err != nil {
				return err
			}
			if err := ca.WriteFiles(out, region, cluster, certValidity); err != nil {
				return err
			}
			id := identity.ID{TrustDomain: ca.TrustDomain, Region: region, Cluster: cluster}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", id, out)
			return nil
		},
	}
	issueCmd.Flags().StringVar(&dir, "dir", "", "CA directory from 'strait ca init' (required)")
	issueCmd.Flags().StringVar(&out, "out", "", "directory to write cert.pem, key.pem and ca.pem (required)")
	issueCmd.Flags().StringVar(&cluster, "cluster", "", "cluster of the gateway")
	issueCmd.Flags().StringVar(&region, "region", "", "region of the gateway")
	issueCmd.Flags().DurationVar(&certValidity, "validity", 365*24*time.Hour, "how long the certificate is valid")
	_ = issueCmd.MarkFlagRequired("dir")
	_ = issueCmd.MarkFlagRequired("out")

	cmd.AddCommand(initCmd, issueCmd)
	return cmd
}
