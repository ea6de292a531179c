package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/federation/catalog"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the gossip encryption keys of the federation",
		Long: `Gossip is encrypted with a shared key. To rotate it without downtime:

  strait keys generate                 # prints a new key
  strait keys install NEWKEY           # every gateway accepts both keys
  strait keys use NEWKEY               # every gateway sends with the new key
  strait keys remove OLDKEY            # the old key stops working

Each operation goes through one gateway's admin API to every live gateway
and reports which applied it; run the next step only when all did. Set
gossip.keyringFile so that gateways keep their keys across restarts.

The admin API never shows a key, only its fingerprint (sha256:…):
'strait keys list' lists the installed ones, 'strait keys fingerprint KEY'
prints the fingerprint of a key you hold. With admin.tokenFile set on the
gateway, pass --admin-token-file (or --config GATEWAY.yaml).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Print a new random gossip key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := catalog.GenerateKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "fingerprint KEY",
		Short: "Print the fingerprint by which the admin API names a key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := catalog.DecodeKey(args[0]); err != nil {
				return &usageError{err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), catalog.KeyFingerprint(args[0]))
			return nil
		},
	})
	var listFlags adminFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the fingerprints of the keys installed on a gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := listFlags.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			kl, err := c.Keys(ctx)
			if err != nil {
				return err
			}
			for _, k := range kl.Keys {
				mark := ""
				if k == kl.Primary {
					mark = "  (primary)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", k, mark)
			}
			return nil
		},
	}
	listFlags.register(list)
	cmd.AddCommand(list)
	for _, op := range []struct{ name, short string }{
		{"install", "Install a key on every gateway (accepted, not yet used)"},
		{"use", "Make an installed key the one every gateway sends with"},
		{"remove", "Remove a key from every gateway"},
	} {
		var (
			af     adminFlags
			output string
		)
		c := &cobra.Command{
			Use:   op.name + " KEY",
			Short: op.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := catalog.DecodeKey(args[0]); err != nil {
					return &usageError{err}
				}
				ac, err := af.client()
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				res, err := ac.KeyOp(ctx, op.name, args[0])
				if err != nil {
					return err
				}
				if output == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					if err := enc.Encode(res); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s: applied on %d gateways: %v\n", op.name, res.Fingerprint, len(res.Applied), res.Applied)
					failed := make([]string, 0, len(res.Failed))
					for n := range res.Failed {
						failed = append(failed, n)
					}
					sort.Strings(failed)
					for _, n := range failed {
						fmt.Fprintf(cmd.OutOrStdout(), "  FAILED on %s: %s\n", n, res.Failed[n])
					}
				}
				if !res.Complete {
					return errors.New("not every gateway applied the operation; fix them and repeat it before the next step")
				}
				return nil
			},
		}
		af.register(c)
		c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
		cmd.AddCommand(c)
	}
	return cmd
}
