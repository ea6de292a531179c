package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/drill"
	"github.com/straitmesh/strait/drill/report"
)

func newDrillCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Run failover drills: faults, traffic, verdicts and reports",
		Long: `Failover drills: the traffic to drive, a timeline of faults and restores,
and the expectations a run is judged by (docs/drills.md). run carries a
drill out on a federation whose gateways have faults.enabled set, validate
checks drill files, report renders a run's result.`,
	}
	cmd.AddCommand(newDrillValidateCmd(), newDrillRunCmd(), newDrillReportCmd())
	return cmd
}

func newDrillValidateCmd() *cobra.Command {
	var fedFile string
	cmd := &cobra.Command{
		Use:   "validate [FILE...] [--federation FILE]",
		Short: "Validate drill files (and that they fit a federation); problems name file:line:column and the field",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && fedFile == "" {
				return &usageError{errors.New("drill validate: name drill files, a --federation file, or both")}
			}
			var fed *drill.Federation
			var errs []error
			if fedFile != "" {
				data, err := os.ReadFile(fedFile)
				if err != nil {
					return &usageError{fmt.Errorf("read federation file: %w", err)}
				}
				if fed, err = drill.ParseFederation(fedFile, data); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid federation: %d clusters\n", fedFile, len(fed.Clusters))
			}
			for _, f := range args {
				d, err := drill.LoadFile(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if fed != nil {
					if err := fed.Check(d); err != nil {
						errs = append(errs, &usageError{fmt.Errorf("%s: %w", f, err)})
						continue
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid %s\n", f, d.Summary())
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&fedFile, "federation", "", "federation file: check it, and that each drill names only its clusters, gateways, regions and clouds")
	return cmd
}

func newDrillRunCmd() *cobra.Command {
	var (
		fedFile, jsonOut, junitOut, htmlOut string
		dryRun, quiet                       bool
		opts                                drill.Options
	)
	cmd := &cobra.Command{
		Use:   "run FILE --federation FILE [--dry-run] [--json OUT] [--junit OUT] [--html OUT]",
		Short: "Run a drill: drive its traffic, inject and undo its faults, judge it and report",
		Long: `Run a drill on a federation (a file of kind Federation naming each cluster's
gateways, docs/drills.md). The gateways must have faults.enabled: true;
each fault holds for a lease the drill renews, so that faults undo
themselves when the drill dies. Ctrl-C undoes every fault at once.

With --dry-run, nothing is done: each step is listed with what it touches,
the faults it asks for and where the policy in force predicts the traffic
goes while they hold.

The exit code is 0 when every expectation held, 1 when one failed or a
stop condition ended the drill, 2 for invalid input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := drill.LoadFile(args[0])
			if err != nil {
				return err
			}
			if fedFile == "" {
				return &usageError{errors.New("drill run: --federation FILE is required: the clusters and gateways to drill (docs/drills.md)")}
			}
			fed, err := drill.LoadFederation(fedFile)
			if err != nil {
				return &usageError{err}
			}
			if err := fed.Check(d); err != nil {
				return &usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := cmd.OutOrStdout()
			if dryRun {
				return drill.DryRun(ctx, out, d, fed)
			}
			opts.File = args[0]
			if !quiet {
				opts.Progress = cmd.ErrOrStderr()
			}
			opts.Logger = slog.New(slog.DiscardHandler)
			res, runErr := drill.Run(ctx, d, fed, opts)
			if res == nil {
				return runErr
			}
			if err := writeResults(res, jsonOut, junitOut, htmlOut); err != nil {
				return errors.Join(runErr, err)
			}
			if err := report.Summary(out, res); err != nil {
				return errors.Join(runErr, err)
			}
			if runErr != nil {
				return runErr
			}
			return drillOutcome(res)
		},
	}
	cmd.Flags().StringVar(&fedFile, "federation", os.Getenv("STRAIT_FEDERATION"), "federation file: clusters, gateways' admin and connect addresses (env STRAIT_FEDERATION)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list each step, what it touches and what policy simulate predicts; do nothing")
	cmd.Flags().StringVar(&jsonOut, "json", "", "write the result as JSON to this file (- for standard output)")
	cmd.Flags().StringVar(&junitOut, "junit", "", "write the verdicts as JUnit XML to this file")
	cmd.Flags().StringVar(&htmlOut, "html", "", "write a self-contained HTML report to this file")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress lines on standard error")
	cmd.Flags().DurationVar(&opts.Lease, "lease", 15*time.Second, "how long a gateway keeps a fault without renewal: the longest a fault outlives a dead drill")
	cmd.Flags().DurationVar(&opts.RequestTimeout, "timeout", 2*time.Second, "timeout of each request of the drill's traffic")
	return cmd
}

// writeResults writes the result files asked for ("-": standard output).
func writeResults(res *drill.Result, jsonOut, junitOut, htmlOut string) error {
	write := func(path string, render func(io.Writer) error) error {
		switch path {
		case "":
			return nil
		case "-":
			return render(os.Stdout)
		}
		return writeReport(path, render)
	}
	return errors.Join(
		write(jsonOut, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		}),
		write(junitOut, func(w io.Writer) error { return report.JUnit(w, res) }),
		write(htmlOut, func(w io.Writer) error { return report.HTML(w, res) }),
	)
}
