package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/federation/catalog"
	"github.com/straitmesh/strait/gateway/admin"
)

func adminFlag(cmd *cobra.Command, admin *string) {
	def := os.Getenv("STRAIT_ADMIN")
	if def == "" {
		def = "127.0.0.1:15000"
	}
	cmd.Flags().StringVar(admin, "admin", def, "gateway admin address (env STRAIT_ADMIN)")
}

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
gossip.keyringFile so that gateways keep their keys across restarts.`,
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
	var adminAddr string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys installed on a gateway",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			ks, err := admin.FetchKeys(ctx, adminAddr)
			if err != nil {
				return err
			}
			for _, k := range ks.Keys {
				mark := ""
				if k == ks.Primary {
					mark = "  (primary)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s%s\n", k, mark)
			}
			return nil
		},
	}
	adminFlag(list, &adminAddr)
	cmd.AddCommand(list)
	for _, op := range []struct{ name, short string }{
		{"install", "Install a key on every gateway (accepted, not yet used)"},
		{"use", "Make an installed key the one every gateway sends with"},
		{"remove", "Remove a key from every gateway"},
	} {
		var adminAddr, output string
		c := &cobra.Command{
			Use:   op.name + " KEY",
			Short: op.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := catalog.DecodeKey(args[0]); err != nil {
					return &usageError{err}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				res, err := admin.KeyOp(ctx, adminAddr, op.name, args[0])
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
					fmt.Fprintf(cmd.OutOrStdout(), "%s: applied on %d gateways: %v\n", op.name, len(res.Applied), res.Applied)
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
		adminFlag(c, &adminAddr)
		c.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
		cmd.AddCommand(c)
	}
	return cmd
}
