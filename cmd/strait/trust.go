package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
)

// addTLSCA is controlFlags.add for commands whose own --ca names another
// file: the federation CA bundle the client verifies the gateway by is
// --tls-ca there.
func (f *controlFlags) addTLSCA(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", os.Getenv("STRAIT_CONFIG"), "gateway config file to take the control address and TLS files from (env STRAIT_CONFIG)")
	pf.StringVar(&f.control, "control", os.Getenv("STRAIT_CONTROL"), "control API address of a gateway (env STRAIT_CONTROL; default 127.0.0.1:15012)")
	pf.StringVar(&f.cert, "cert", os.Getenv("STRAIT_CERT"), "operator certificate (PEM) of the federation (env STRAIT_CERT)")
	pf.StringVar(&f.key, "key", os.Getenv("STRAIT_KEY"), "its private key (env STRAIT_KEY)")
	pf.StringVar(&f.ca, "tls-ca", os.Getenv("STRAIT_CA"), "federation CA bundle the gateway is verified by (env STRAIT_CA)")
	pf.DurationVar(&f.timeout, "timeout", 15*time.Second, "how long to wait for an answer (a write waits for a leader)")
}

// newCATrustCmd is `strait ca trust add | remove | list`: the trust
// records of the routing state.
func newCATrustCmd() *cobra.Command {
	var cf controlFlags
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Trust bundles in the routing state: the roots of the federation's own trust domain (rotation) and of other domains, limited to some clusters",
		Long: `Trust bundles in the routing state. Each gateway verifies peers by its tls.ca
file for its own trust domain until the own domain has a record, then by the
record; other trust domains only by their records. Rotate the federation's CA
with: add --domain OWN --ca NEW (both trusted), re-issue every gateway's
certificate from NEW, remove --domain OWN --ca OLD. See docs/identity.md.`,
	}
	cf.addTLSCA(cmd)
	var domain, caFile string
	var clusters []string
	read := func(cmd *cobra.Command) (state.TrustBundle, bool, error) {
		resp, err := call(cmd, &cf, (*state.ControlClient).Read, &state.ReadRequest{Kind: state.KindTrust, Key: domain, Consistent: true})
		if err != nil {
			return state.TrustBundle{}, false, remoteErr(err)
		}
		if len(resp.Records) == 0 {
			return state.TrustBundle{}, false, nil
		}
		b, err := state.ParseTrust([]byte(resp.Records[0].Value))
		return b, true, err
	}
	readCAs := func() ([]*x509.Certificate, error) {
		roots, err := identity.ReadRoots(caFile)
		if err != nil {
			return nil, &usageError{err}
		}
		for _, r := range roots {
			if !r.IsCA {
				return nil, &usageError{fmt.Errorf("--ca %s: %s is not a CA certificate", caFile, r.Subject.CommonName)}
			}
		}
		return roots, nil
	}
	write := func(cmd *cobra.Command, req *state.WriteRequest, what string) error {
		resp, err := call(cmd, &cf, (*state.ControlClient).Write, req)
		if err != nil {
			return remoteErr(err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "trust %s: %s at index %d\n", domain, what, resp.Index)
		return nil
	}
	add := &cobra.Command{
		Use:   "add --domain TD --ca FILE [--clusters a,b]",
		Short: "Trust the CA certificates of FILE for trust domain TD (added to its record); --clusters limits another domain to those clusters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			roots, err := readCAs()
			if err != nil {
				return err
			}
			b, _, err := read(cmd)
			if err != nil {
				return err
			}
			for _, r := range roots {
				if !slices.ContainsFunc(b.Roots, r.Equal) {
					b.Roots = append(b.Roots, r)
				}
			}
			if cmd.Flags().Changed("clusters") {
				b.Clusters = clusters
			}
			return write(cmd, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: domain, Value: b.Encode()}, describeBundle(b))
		},
	}
	add.Flags().StringSliceVar(&clusters, "clusters", nil, "the only clusters this (other) trust domain may speak for, comma-separated (default: keep the record's)")
	remove := &cobra.Command{
		Use:   "remove --domain TD [--ca FILE]",
		Short: "Stop trusting the CA certificates of FILE for TD, or (without --ca) the whole domain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caFile == "" {
				return write(cmd, &state.WriteRequest{Op: state.OpDelete, Kind: state.KindTrust, Key: domain}, "record deleted")
			}
			roots, err := readCAs()
			if err != nil {
				return err
			}
			b, found, err := read(cmd)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("trust %s: no record", domain)
			}
			kept := slices.DeleteFunc(slices.Clone(b.Roots), func(c *x509.Certificate) bool { return slices.ContainsFunc(roots, c.Equal) })
			if len(kept) == len(b.Roots) {
				return &usageError{fmt.Errorf("trust %s: none of the certificates of %s is in the record", domain, caFile)}
			}
			if len(kept) == 0 {
				return write(cmd, &state.WriteRequest{Op: state.OpDelete, Kind: state.KindTrust, Key: domain}, "last root removed, record deleted")
			}
			b.Roots = kept
			return write(cmd, &state.WriteRequest{Op: state.OpPut, Kind: state.KindTrust, Key: domain, Value: b.Encode()}, describeBundle(b))
		},
	}
	for _, c := range []*cobra.Command{add, remove} {
		c.Flags().StringVar(&domain, "domain", "", "trust domain (required)")
		c.Flags().StringVar(&caFile, "ca", "", "PEM file of CA certificates")
		_ = c.MarkFlagRequired("domain")
	}
	_ = add.MarkFlagRequired("ca")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the trust records: each domain's roots and the clusters it may speak for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := call(cmd, &cf, (*state.ControlClient).Read, &state.ReadRequest{Kind: state.KindTrust})
			if err != nil {
				return remoteErr(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DOMAIN\tCLUSTERS\tROOT\tSHA256\tEXPIRES\tINDEX")
			for _, r := range resp.Records {
				b, err := state.ParseTrust([]byte(r.Value))
				if err != nil {
					fmt.Fprintf(tw, "%s\t-\tunreadable: %v\t\t\t%d\n", r.Key, err, r.Index)
					continue
				}
				cl := "all"
				if len(b.Clusters) > 0 {
					cl = strings.Join(b.Clusters, ",")
				}
				for _, c := range b.Roots {
					sum := sha256.Sum256(c.Raw)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", r.Key, cl, c.Subject.CommonName, hex.EncodeToString(sum[:8]), c.NotAfter.UTC().Format(time.RFC3339), r.Index)
				}
			}
			fmt.Fprintf(tw, "(routing state at index %d from %s; a domain without a record is trusted by each gateway's tls.ca only if it is the gateway's own)\n", resp.Index, resp.Node)
			return tw.Flush()
		},
	}
	cmd.AddCommand(add, remove, list)
	return cmd
}

func describeBundle(b state.TrustBundle) string {
	s := fmt.Sprintf("%d root(s)", len(b.Roots))
	if len(b.Clusters) > 0 {
		s += " for clusters " + strings.Join(b.Clusters, ",")
	}
	return s
}

// newCARevokeCmds are `strait ca revoke` and `strait ca revocations`: the
// deny-list every gateway checks at every handshake.
func newCARevokeCmds() []*cobra.Command {
	var serial, id, reason string
	var rcf, lcf controlFlags
	revoke := &cobra.Command{
		Use:   "revoke (--serial HEX | --id SPIFFE-ID) [--reason TEXT]",
		Short: "Revoke a certificate serial or a SPIFFE ID: every gateway refuses it at its next handshake and closes the tunnels it holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r state.Revocation
			switch {
			case (serial == "") == (id == ""):
				return &usageError{errors.New("pass exactly one of --serial and --id")}
			case serial != "":
				s, err := state.CanonicalSerial(serial)
				if err != nil {
					return &usageError{fmt.Errorf("--serial: %w", err)}
				}
				r.Serial = s
			default:
				p, err := identity.ParseID(id)
				if err != nil {
					return &usageError{fmt.Errorf("--id: %w", err)}
				}
				r.ID = p.String()
			}
			r.Reason = reason
			payload, err := json.Marshal(r)
			if err != nil {
				return err
			}
			resp, err := call(cmd, &rcf, (*state.ControlClient).Write, &state.WriteRequest{Op: state.OpPut, Kind: state.KindRevocation, Key: state.RevocationKey(r), Value: string(payload)})
			if err != nil {
				return remoteErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s at index %d\n", first(r.Serial, r.ID), resp.Index)
			return nil
		},
	}
	revoke.Flags().StringVar(&serial, "serial", "", "certificate serial, hexadecimal (colons allowed)")
	revoke.Flags().StringVar(&id, "id", "", "SPIFFE ID, e.g. spiffe://TD/gateway/region/R/cluster/C")
	revoke.Flags().StringVar(&reason, "reason", "", "why, for people")
	rcf.add(revoke)
	list := &cobra.Command{
		Use:   "revocations",
		Short: "List the revoked certificate serials and SPIFFE IDs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := call(cmd, &lcf, (*state.ControlClient).Read, &state.ReadRequest{Kind: state.KindRevocation})
			if err != nil {
				return remoteErr(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVOKED\tREASON\tBY\tAT\tINDEX")
			for _, rec := range resp.Records {
				r, err := state.ParseRevocation([]byte(rec.Value))
				what := first(r.Serial, r.ID)
				if err != nil {
					what = "unreadable: " + err.Error()
				}
				if r.Serial != "" {
					what = "serial " + what
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", what, first(r.Reason, "-"), first(rec.By, "-"), rec.Time.UTC().Format(time.RFC3339), rec.Index)
			}
			return tw.Flush()
		},
	}
	lcf.add(list)
	return []*cobra.Command{revoke, list}
}
