package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/drill"
)

func newDrillCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Validate failover drill files",
		Long: `Failover drills: the traffic to drive, a timeline of faults and restores,
and the expectations a run is judged by (docs/drills.md). Running drills is
not built yet; validate checks drill files.`,
	}
	cmd.AddCommand(newDrillValidateCmd())
	cmd.AddCommand(newDrillReportCmd())
	return cmd
}

func newDrillValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Validate drill files; problems name file:line:column and the field",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var errs []error
			for _, f := range args {
				d, err := drill.LoadFile(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid %s\n", f, d.Summary())
			}
			return errors.Join(errs...)
		},
	}
}
