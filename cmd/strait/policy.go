package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/gateway/admin"
	"github.com/straitmesh/strait/gateway/route"
	"github.com/straitmesh/strait/sovereignty"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Apply, check, explain, diff and simulate residency policies",
		Long: `Residency policy tooling. Every command runs the gateway's own planner and
policy engine. Offline it reads a topology file (--topology: clusters, regions,
zones and the services each exports; a 'strait dev --info' file works too);
live it reads a gateway's /v1/status and its policy in force (--admin ADDR).`,
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyExplainCmd(), newPolicyDiffCmd(), newPolicySimulateCmd(), newPolicyApplyCmd())
	cmd.AddCommand(newPolicyApprovalCmds()...)
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE...",
		Short: "Validate residency policy files; problems name file:line:column and the field",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, f := range args {
				e, err := sovereignty.LoadFile(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid %s\n", f, e.Summary())
			}
			return errors.Join(errs...)
		},
	}
}

// unreadableUsage is the help of --unreadable on explain and simulate.
const unreadableUsage = "the gateway cannot read the flow: TLS inside CONNECT, the passthrough port, a tcp port"

// whatIfFlags are the inputs every what-if command shares.
type whatIfFlags struct {
	policy, topology, admin, output string
	fail                            []string
	adminTokenFile                  string
}

func (f *whatIfFlags) register(cmd *cobra.Command, withPolicy bool) {
	if withPolicy {
		cmd.Flags().StringVar(&f.policy, "policy", "", "policy file (default with --admin: the gateway's policy in force)")
	}
	cmd.Flags().StringVar(&f.topology, "topology", "", "topology file: clusters and their services (or a 'strait dev --info' file)")
	cmd.Flags().StringVar(&f.admin, "admin", "", "a live gateway's admin address: its /v1/status is the topology")
	tokenFileFlag(cmd, &f.adminTokenFile)
	cmd.Flags().StringArrayVar(&f.fail, "fail", nil, "take a region or cluster down first (repeatable)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
}

// load reads the topology and, when needPolicy, the policy.
func (f *whatIfFlags) load(ctx context.Context, needPolicy bool) (route.WhatIf, *admin.Status, error) {
	var w route.WhatIf
	if f.output != "text" && f.output != "json" {
		return w, nil, &usageError{fmt.Errorf("-o: want text or json, found %q", f.output)}
	}
	if (f.topology == "") == (f.admin == "") {
		return w, nil, &usageError{errors.New("give either --topology FILE or --admin ADDR")}
	}
	var st *admin.Status
	if f.topology != "" {
		top, err := sovereignty.LoadTopology(f.topology)
		if err != nil {
			return w, nil, err
		}
		w.Top = top
	} else {
		c, err := f.client()
		if err != nil {
			return w, nil, err
		}
		s, err := c.Status(ctx)
		if err != nil {
			return w, nil, err
		}
		st = &s
		w.Top = s.Topology()
	}
	if needPolicy {
		switch {
		case f.policy != "":
			e, err := sovereignty.LoadFile(f.policy)
			if err != nil {
				return w, nil, err
			}
			w.Policy = e
		case f.admin != "":
			c, err := f.client()
			if err != nil {
				return w, nil, err
			}
			e, v, err := c.Policy(ctx)
			if err != nil {
				return w, nil, err
			}
			w.Policy, w.Version = e, v
		default:
			return w, nil, &usageError{errors.New("give --policy FILE (or --admin ADDR for the policy in force)")}
		}
	}
	w.Fail = f.fail
	return w, st, nil
}

// client returns a client of the admin API of --admin.
func (f *whatIfFlags) client() (admin.Client, error) {
	af := adminFlags{addr: f.admin, tokenFile: f.adminTokenFile}
	return af.client()
}

// textOrJSON prints v as JSON or with its WriteText.
func textOrJSON(w io.Writer, format string, v interface{ WriteText(io.Writer) error }) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return v.WriteText(w)
}

func newPolicyExplainCmd() *cobra.Command {
	var f whatIfFlags
	var service, from, namespace string
	var headers []string
	var port int
	var unreadable bool
	cmd := &cobra.Command{
		Use:   "explain --service NS/NAME --from CLUSTER [--header K=V | --unreadable] (--topology FILE | --admin ADDR)",
		Short: "Which classes apply to a flow, which clusters are allowed, in what order traffic would go",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, name, ok := strings.Cut(service, "/")
			if !ok || ns == "" || name == "" {
				return &usageError{fmt.Errorf("--service: want namespace/name, found %q", service)}
			}
			if unreadable && len(headers) > 0 {
				return &usageError{errors.New("--unreadable and --header conflict: the gateway reads no headers of a flow it cannot read; give one or the other")}
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			w, st, err := f.load(ctx, true)
			if err != nil {
				return err
			}
			if from == "" {
				if st == nil {
					return &usageError{errors.New("--from CLUSTER is required with --topology")}
				}
				from = st.Cluster
			}
			if _, ok := w.Top.Cluster(from); !ok {
				return &usageError{fmt.Errorf("--from %s: no such cluster in the topology", from)}
			}
			ex, err := w.Explain(route.ExplainQuery{Namespace: ns, Name: name, Port: port, From: from, Headers: h, SourceNamespace: namespace,
				Unreadable: unreadable})
			if err != nil {
				return &usageError{err}
			}
			return textOrJSON(cmd.OutOrStdout(), f.output, ex)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&service, "service", "", "destination service, namespace/name (required)")
	cmd.Flags().IntVar(&port, "port", 0, "service port (default: the lowest exported)")
	cmd.Flags().StringVar(&from, "from", "", "source cluster (default with --admin: that gateway's cluster)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "an HTTP request header K=V (repeatable); none means L4 traffic")
	cmd.Flags().StringVar(&namespace, "namespace", "", "namespace of the calling workload")
	cmd.Flags().BoolVar(&unreadable, "unreadable", false, unreadableUsage)
	_ = cmd.MarkFlagRequired("service")
	return cmd
}

func parseHeaders(in []string) (http.Header, error) {
	if len(in) == 0 {
		return nil, nil
	}
	h := http.Header{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			k, v, ok = strings.Cut(kv, ":")
		}
		if !ok || strings.TrimSpace(k) == "" {
			return nil, &usageError{fmt.Errorf("--header: want K=V, found %q", kv)}
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	return h, nil
}

func newPolicyDiffCmd() *cobra.Command {
	var f whatIfFlags
	cmd := &cobra.Command{
		Use:   "diff [OLD] NEW (--topology FILE | --admin ADDR)",
		Short: "The flows whose decision changes from one policy to another",
		Long: `List every flow (service, source cluster, destination cluster, and each header
value or namespace either policy classifies by) whose residency decision differs
between OLD and NEW, and the flows that would go elsewhere. With --admin and a
single file, OLD is the gateway's policy in force.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			w, _, err := f.load(ctx, false)
			if err != nil {
				return err
			}
			var old *sovereignty.Engine
			var oldVersion uint64
			if len(args) == 1 {
				if f.admin == "" {
					return &usageError{errors.New("give OLD and NEW, or NEW with --admin ADDR to compare with the policy in force")}
				}
				c, err := f.client()
				if err != nil {
					return err
				}
				if old, oldVersion, err = c.Policy(ctx); err != nil {
					return err
				}
			} else if old, err = sovereignty.LoadFile(args[0]); err != nil {
				return err
			}
			nw, err := sovereignty.LoadFile(args[len(args)-1])
			if err != nil {
				return err
			}
			d, err := w.Diff(old, nw, oldVersion)
			if err != nil {
				return &usageError{err}
			}
			return textOrJSON(cmd.OutOrStdout(), f.output, d)
		},
	}
	f.register(cmd, false)
	return cmd
}

func newPolicySimulateCmd() *cobra.Command {
	var f whatIfFlags
	var unreadable bool
	cmd := &cobra.Command{
		Use:   "simulate --fail REGION|CLUSTER ... [--unreadable] (--topology FILE | --admin ADDR)",
		Short: "For each service and source: where traffic goes with regions or clusters down, and what is refused",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			w, _, err := f.load(ctx, true)
			if err != nil {
				return err
			}
			w.Unreadable = unreadable
			sim, err := w.Simulate()
			if err != nil {
				return &usageError{err}
			}
			return textOrJSON(cmd.OutOrStdout(), f.output, sim)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&unreadable, "unreadable", false, unreadableUsage+" (simulates plain L4 and each source namespace as such flows)")
	return cmd
}
