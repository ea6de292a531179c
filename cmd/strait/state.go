package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

// controlFlags say how to reach a gateway's control API.
type controlFlags struct {
	config, control, cert, key, ca string
	timeout                        time.Duration
}

func (f *controlFlags) add(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.config, "config", "c", os.Getenv("STRAIT_CONFIG"), "gateway config file to take the control address and TLS files from (env STRAIT_CONFIG)")
	pf.StringVar(&f.control, "control", os.Getenv("STRAIT_CONTROL"), "control API address of a gateway (env STRAIT_CONTROL; default 127.0.0.1:15012)")
	pf.StringVar(&f.cert, "cert", os.Getenv("STRAIT_CERT"), "client certificate (PEM) of the federation (env STRAIT_CERT)")
	pf.StringVar(&f.key, "key", os.Getenv("STRAIT_KEY"), "its private key (env STRAIT_KEY)")
	pf.StringVar(&f.ca, "ca", os.Getenv("STRAIT_CA"), "federation CA bundle (env STRAIT_CA)")
	pf.DurationVar(&f.timeout, "timeout", 15*time.Second, "how long to wait for an answer (a write waits for a leader)")
}

// dial returns a client of the control API the flags name.
func (f *controlFlags) dial() (*state.ControlClient, error) {
	addr, cert, key, ca := f.control, f.cert, f.key, f.ca
	if f.config != "" {
		ct, err := loadControlTarget(f.config)
		if err != nil {
			return nil, &usageError{err}
		}
		addr = first(addr, ct.Listen.Control)
		cert, key, ca = first(cert, ct.TLS.Cert), first(key, ct.TLS.Key), first(ca, ct.TLS.CA)
	}
	if addr == "" {
		addr = "127.0.0.1:15012"
	}
	if cert == "" || key == "" || ca == "" {
		return nil, &usageError{errors.New("the control API needs a federation certificate: pass --config GATEWAY.yaml, or --cert, --key and --ca")}
	}
	id, err := identity.LoadFiles(cert, key, ca)
	if err != nil {
		return nil, &usageError{err}
	}
	return state.DialControl(addr, id)
}

// root returns the root certificate a join token pins: the one of file,
// or else the only self-signed CA of the CA bundle the flags name.
func (f *controlFlags) root(file string) (*x509.Certificate, error) {
	if file == "" {
		file = f.ca
		if file == "" && f.config != "" {
			ct, err := loadControlTarget(f.config)
			if err != nil {
				return nil, &usageError{err}
			}
			file = ct.TLS.CA
		}
	}
	if file == "" {
		return nil, &usageError{errors.New("name the federation's root: --root, --ca or --config GATEWAY.yaml")}
	}
	certs, err := identity.ReadRoots(file)
	if err != nil {
		return nil, &usageError{err}
	}
	var roots []*x509.Certificate
	for _, c := range certs {
		if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		}
	}
	if len(roots) != 1 {
		return nil, &usageError{fmt.Errorf("%s holds %d root certificates; name the one to pin with --root FILE", file, len(roots))}
	}
	return roots[0], nil
}

// call sends req with method to the control API the flags name, within
// --timeout, and closes the connection.
func call[Req, Resp any](cmd *cobra.Command, f *controlFlags, method func(*state.ControlClient, context.Context, *Req) (*Resp, error), req *Req) (*Resp, error) {
	c, err := f.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	return method(c, ctx, req)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// remoteErr turns a rejected payload into a usage error (exit code 2).
func remoteErr(err error) error {
	if errors.Is(err, state.ErrInvalid) || errors.Is(err, state.ErrBadSnapshot) {
		return &usageError{err}
	}
	return err
}

// readPolicyFile reads and validates a policy file and returns it with
// the record key it goes under (--name, else metadata.name).
func readPolicyFile(file, name string) ([]byte, string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", &usageError{fmt.Errorf("read policy: %w", err)}
	}
	if _, err := sovereignty.Compile(file, data); err != nil {
		return nil, "", &usageError{err}
	}
	if err := state.ValidatePayload(state.KindPolicy, data); err != nil {
		return nil, "", &usageError{fmt.Errorf("%s: %w", file, err)}
	}
	key := first(name, state.PolicyName(data))
	if key == "" {
		return nil, "", &usageError{fmt.Errorf("%s: the policy has no metadata.name; pass --name", file)}
	}
	if err := state.ValidateKey(state.KindPolicy, key); err != nil {
		return nil, "", &usageError{err}
	}
	return data, key, nil
}

// newPolicyApplyCmd is `strait policy apply`: the policy is validated by
// the residency compiler first, then written to the routing state.
func newPolicyApplyCmd() *cobra.Command {
	var cf controlFlags
	var name string
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Validate a policy file and write it to the routing state; prints the committed index",
		Long: `Validate a policy file and write it to the routing state; prints the committed
index. When the routing state requires approvals (a governance record), use
propose instead.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, key, err := readPolicyFile(args[0], name)
			if err != nil {
				return err
			}
			resp, err := call(cmd, &cf, (*state.ControlClient).Write, &state.WriteRequest{Op: state.OpPut, Kind: state.KindPolicy, Key: key, Value: string(data)})
			if err != nil {
				return remoteErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy %s applied at index %d\n", key, resp.Index)
			return nil
		},
	}
	apply.Flags().StringVar(&name, "name", "", "policy name (default: metadata.name)")
	cf.add(apply)
	return apply
}

// newPolicyApprovalCmds are `strait policy propose | approve | pending`:
// four-eyes changes of the residency policy.
func newPolicyApprovalCmds() []*cobra.Command {
	var cf controlFlags
	var name string
	propose := &cobra.Command{
		Use:   "propose FILE",
		Short: "Propose a policy change; it is applied once enough other operators approve it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, key, err := readPolicyFile(args[0], name)
			if err != nil {
				return err
			}
			resp, err := call(cmd, &cf, (*state.ControlClient).Write, &state.WriteRequest{Op: state.OpPropose, Kind: state.KindPolicy, Key: key, Value: string(data)})
			if err != nil {
				return remoteErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy %s proposed at index %d, digest %s\napprove with: strait policy approve %s %s\n",
				key, resp.Index, state.Digest(string(data)), key, state.Digest(string(data)))
			return nil
		},
	}
	propose.Flags().StringVar(&name, "name", "", "policy name (default: metadata.name)")
	cf.add(propose)

	var acf controlFlags
	approve := &cobra.Command{
		Use:   "approve NAME DIGEST",
		Short: "Approve the pending change of policy NAME whose digest is DIGEST (see pending)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := call(cmd, &acf, (*state.ControlClient).Write, &state.WriteRequest{Op: state.OpApprove, Kind: state.KindPolicy, Key: args[0], Value: args[1]})
			if err != nil {
				return remoteErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy %s %s approved at index %d\n", args[0], args[1], resp.Index)
			return nil
		},
	}
	acf.add(approve)

	var pcf controlFlags
	pending := &cobra.Command{
		Use:   "pending",
		Short: "List proposed changes waiting for approvals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := call(cmd, &pcf, (*state.ControlClient).Read, &state.ReadRequest{Kind: state.KindProposal, Consistent: true})
			if err != nil {
				return remoteErr(err)
			}
			w := cmd.OutOrStdout()
			if len(resp.Records) == 0 {
				fmt.Fprintln(w, "no pending proposals")
				return nil
			}
			for _, r := range resp.Records {
				var p state.Proposal
				if err := json.Unmarshal([]byte(r.Value), &p); err != nil {
					return fmt.Errorf("proposal %s: %w", r.Key, err)
				}
				fmt.Fprintf(w, "%s %s  digest %s\n  proposed by %s at %s; %d of %d approvals", p.Kind, p.Key, p.Digest, p.Proposer,
					p.Time.UTC().Format(time.RFC3339), len(p.Approvals), p.Needed)
				if len(p.Approvals) > 0 {
					fmt.Fprintf(w, " (%s)", strings.Join(p.Approvals, ", "))
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	}
	pcf.add(pending)
	return []*cobra.Command{propose, approve, pending}
}

func newStateCmd() *cobra.Command {
	var cf controlFlags
	var output string
	var consistent bool
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Read and operate the Raft-backed routing state",
		Long: `Read and operate the routing state through a gateway's control API (gRPC, mTLS).
Kinds: policy, failover, export, import, cluster, trust, revocation, governance
(and member, read-only).
Reads are answered by the gateway asked, from its replica; --consistent asks
the leader, which confirms its leadership first.`,
	}
	cf.add(cmd)
	checkOutput := func() error {
		if output != "table" && output != "json" {
			return &usageError{fmt.Errorf("-o: want table or json, found %q", output)}
		}
		return nil
	}
	printJSON := func(cmd *cobra.Command, v any) error {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	read := func(cmd *cobra.Command, req *state.ReadRequest, one bool) error {
		if err := checkOutput(); err != nil {
			return err
		}
		req.Consistent = consistent
		resp, err := call(cmd, &cf, (*state.ControlClient).Read, req)
		if err != nil {
			return remoteErr(err)
		}
		if one && len(resp.Records) == 0 {
			return fmt.Errorf("%s %s: not found (state at index %d from %s)", req.Kind, req.Key, resp.Index, resp.Node)
		}
		switch {
		case output == "json":
			return printJSON(cmd, resp)
		case one:
			return state.WriteRecord(cmd.OutOrStdout(), resp)
		}
		return state.WriteRecords(cmd.OutOrStdout(), resp)
	}
	get := &cobra.Command{
		Use: "get KIND KEY", Short: "Print one record and the index it is at", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			return read(cmd, &state.ReadRequest{Kind: a[0], Key: a[1]}, true)
		},
	}
	list := &cobra.Command{
		Use: "list [KIND]", Short: "List records (of one kind)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			req := &state.ReadRequest{}
			if len(a) == 1 {
				req.Kind = a[0]
			}
			return read(cmd, req, false)
		},
	}
	for _, c := range []*cobra.Command{get, list} {
		c.Flags().BoolVar(&consistent, "consistent", false, "read through the leader after it confirms its leadership")
		c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	}
	history := &cobra.Command{
		Use: "history KIND KEY", Short: "List the kept versions of a record with their indexes", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := checkOutput(); err != nil {
				return err
			}
			resp, err := call(cmd, &cf, (*state.ControlClient).History, &state.HistoryRequest{Kind: a[0], Key: a[1]})
			if err != nil {
				return remoteErr(err)
			}
			if output == "json" {
				return printJSON(cmd, resp)
			}
			return state.WriteHistory(cmd.OutOrStdout(), a[0], a[1], resp)
		},
	}
	history.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	write := func(cmd *cobra.Command, req *state.WriteRequest) error {
		resp, err := call(cmd, &cf, (*state.ControlClient).Write, req)
		if err != nil {
			return remoteErr(err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s at index %d\n", req.Kind, req.Key, map[string]string{state.OpPut: "written", state.OpDelete: "deleted"}[req.Op], resp.Index)
		return nil
	}
	put := &cobra.Command{
		Use: "put KIND KEY FILE", Short: "Write a record from a file ('-' for standard input)", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, a []string) error {
			var data []byte
			var err error
			if a[2] == "-" {
				data, err = readAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(a[2])
			}
			if err != nil {
				return &usageError{err}
			}
			if err := state.ValidatePayload(a[0], data); err != nil {
				return &usageError{err}
			}
			return write(cmd, &state.WriteRequest{Op: state.OpPut, Kind: a[0], Key: a[1], Value: string(data)})
		},
	}
	del := &cobra.Command{
		Use: "delete KIND KEY", Short: "Delete a record", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, a []string) error {
			return write(cmd, &state.WriteRequest{Op: state.OpDelete, Kind: a[0], Key: a[1]})
		},
	}
	peers := &cobra.Command{
		Use: "peers", Short: "List the Raft voters and non-voters", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(); err != nil {
				return err
			}
			resp, err := call(cmd, &cf, (*state.ControlClient).Peers, &state.PeersRequest{})
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd, resp)
			}
			return state.WritePeers(cmd.OutOrStdout(), resp)
		},
	}
	peers.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	removePeer := &cobra.Command{
		Use: "remove-peer ID", Short: "Remove a dead server (by ID, see 'state peers') from the Raft configuration", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			resp, err := call(cmd, &cf, (*state.ControlClient).RemovePeer, &state.RemovePeerRequest{ID: a[0]})
			if err != nil {
				return remoteErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s at index %d\n", a[0], resp.Index)
			return nil
		},
	}
	snapshot := &cobra.Command{Use: "snapshot", Short: "Save or restore the routing state"}
	save := &cobra.Command{
		Use: "save FILE", Short: "Save the gateway's routing state to FILE", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			resp, err := call(cmd, &cf, (*state.ControlClient).Snapshot, &state.SnapshotRequest{})
			if err != nil {
				return err
			}
			if err := os.WriteFile(a[0], resp.Data, 0o600); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved the state at index %d to %s (%d bytes)\n", resp.Index, a[0], len(resp.Data))
			return nil
		},
	}
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace every policy, failover, export, import, cluster and trust record with FILE's",
		Long: `Replace every client-written record with those of a snapshot saved by
'strait state snapshot save', in one committed change. Servers (member
records) are kept. A corrupted snapshot or one of another trust domain is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			data, err := os.ReadFile(a[0])
			if err != nil {
				return &usageError{err}
			}
			resp, err := call(cmd, &cf, (*state.ControlClient).Restore, &state.RestoreRequest{Data: data})
			if err != nil {
				return remoteErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %d records at index %d\n", resp.Records, resp.Index)
			return nil
		},
	}
	snapshot.AddCommand(save, restore)
	cmd.AddCommand(get, list, history, put, del, peers, removePeer, snapshot)
	return cmd
}

func readAll(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, state.MaxValueBytes+1))
}
