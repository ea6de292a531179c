package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/straitmesh/strait/drill"
	"github.com/straitmesh/strait/drill/report"
)

func newDrillReportCmd() *cobra.Command {
	var htmlOut, junitOut string
	cmd := &cobra.Command{
		Use:   "report RESULT.json",
		Short: "Show a drill's result; write it as HTML or JUnit XML",
		Long: `Report reads the result that 'strait drill run --json' wrote. Without
flags it prints a summary: the steps, the traffic's totals, the failovers,
the violations and the verdicts. --html writes one self-contained page with
charts (it fetches nothing), --junit writes JUnit XML for CI.

The exit code is 0 when the drill passed, 1 when it failed or was aborted,
and 2 when the file cannot be read or is not a drill result.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := report.ReadFile(args[0])
			if err != nil {
				return &usageError{fmt.Errorf("read drill result: %w", err)}
			}
			out := cmd.OutOrStdout()
			if htmlOut == "" && junitOut == "" {
				if err := report.Summary(out, r); err != nil {
					return err
				}
			}
			if htmlOut != "" {
				if err := writeReport(htmlOut, func(w io.Writer) error { return report.HTML(w, r) }); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %s\n", htmlOut)
			}
			if junitOut != "" {
				if err := writeReport(junitOut, func(w io.Writer) error { return report.JUnit(w, r) }); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %s\n", junitOut)
			}
			return drillOutcome(r)
		},
	}
	cmd.Flags().StringVar(&htmlOut, "html", "", "write the HTML report to this file")
	cmd.Flags().StringVar(&junitOut, "junit", "", "write JUnit XML to this file")
	return cmd
}

// drillOutcome is nil for a drill that passed, and says why for one that
// did not (exit code 1).
func drillOutcome(r *drill.Result) error {
	if report.Passed(r) {
		return nil
	}
	if a := r.Aborted; a != nil {
		return fmt.Errorf("drill %s failed: aborted at %s by %s: %s", r.Drill, a.At, a.Condition, a.Reason)
	}
	failed := 0
	for _, v := range r.Verdicts {
		if !v.Pass {
			failed++
		}
	}
	return fmt.Errorf("drill %s failed: %d of %d verdicts failed", r.Drill, failed, len(r.Verdicts))
}

// writeReport writes a report file whole or not at all: a failed render
// leaves no half file for CI to pick up.
func writeReport(path string, render func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			err = errors.Join(err, os.Remove(path))
		}
	}()
	if err := render(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
