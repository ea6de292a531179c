package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/straitmesh/strait/drill"
)

// Summary writes the terminal summary of r: what ran, the steps, the
// traffic's totals, failovers, violations and the verdicts, ending with a
// line that is PASS or FAIL alone.
func Summary(w io.Writer, r *drill.Result) error {
	ew := &errWriter{w: w}
	p := func(format string, a ...any) { fmt.Fprintf(ew, format, a...) }

	p("drill %s", r.Drill)
	if r.Description != "" {
		p(": %s", oneLine(r.Description))
	}
	p("\n")
	if r.File != "" {
		p("file:    %s\n", r.File)
	}
	p("target:  %s\n", r.Target)
	if !r.Started.IsZero() {
		p("started: %s\n", r.Started.UTC().Format(time.RFC3339))
	}
	p("ran:     %s of %s\n", dur(r.Ran), dur(r.Planned))
	if a := r.Aborted; a != nil {
		p("ABORTED at %s by %s: %s\n", dur(a.At), a.Condition, oneLine(a.Reason))
	}

	p("\nSteps\n")
	tw := table(ew)
	fmt.Fprintln(tw, "  NAME\tKIND\tAT\tDONE\tUNDONE\tTOUCHES\tERROR")
	for _, s := range r.Steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", oneLine(s.Name), s.Kind, dur(s.At),
			offset(s.Done), offset(s.Undone), oneLine(s.Touches), dash(s.Error))
	}
	tw.Flush()

	p("\nTraffic\n")
	tw = table(ew)
	fmt.Fprintln(tw, "  NAME\tSERVICE\tREQUESTS\tOK\tERRORS\tREFUSED\tERROR RATE")
	for _, t := range r.Traffic {
		c := t.Totals
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s\n", oneLine(t.Name), oneLine(t.Service),
			c.Requests, c.OK, c.Errors, c.Refused, percent(ErrorRate(c)))
	}
	tw.Flush()
	for _, t := range r.Traffic {
		for _, f := range t.Failures {
			p("  %s: %d× %s\n", oneLine(t.Name), f.Count, oneLine(f.Reason))
		}
	}

	p("\nFailovers\n")
	if len(r.Failovers) == 0 {
		p("  none measured\n")
	} else {
		tw = table(ew)
		fmt.Fprintln(tw, "  SERVICE\tTRAFFIC\tSTEP\tAT\tTIME\tTO")
		for _, f := range r.Failovers {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", oneLine(f.Service), oneLine(f.Traffic),
				oneLine(f.Step), dur(f.At), FailoverTime(f), dash(f.Cluster))
		}
		tw.Flush()
	}

	p("\nViolations: %d\n", len(r.Violations))

	p("\nVerdicts\n")
	tw = table(ew)
	fmt.Fprintln(tw, "  RESULT\tEXPECTATION\tLIMIT\tMEASURED\tDETAIL")
	for _, v := range r.Verdicts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", passFail(v.Pass), oneLine(v.Expectation),
			oneLine(v.Limit), oneLine(v.Measured), dash(v.Detail))
	}
	if a := r.Aborted; a != nil {
		fmt.Fprintf(tw, "  FAIL\tstop condition %s\t-\t%s\t%s\n", a.Condition, dur(a.At), oneLine(a.Reason))
	}
	tw.Flush()

	p("\n%s\n", passFail(Passed(r)))
	return ew.err
}

// Passed says whether r passed: its own Pass, and never when aborted or
// when a verdict failed, so that a hand-edited or inconsistent document
// cannot read as a pass.
func Passed(r *drill.Result) bool {
	if !r.Pass || r.Aborted != nil {
		return false
	}
	for _, v := range r.Verdicts {
		if !v.Pass {
			return false
		}
	}
	return true
}

// ErrorRate is the percentage of c's requests that failed, of those not
// refused: refusals are answers of the residency policy, not errors (the
// maxErrorRate verdict counts the same way).
func ErrorRate(c drill.Counts) float64 {
	if c.Requests-c.Refused <= 0 {
		return 0
	}
	return 100 * float64(c.Errors) / float64(c.Requests-c.Refused)
}

// FailoverTime is f's time for people: "never" when no success came
// elsewhere.
func FailoverTime(f drill.Failover) string {
	if f.Time < 0 {
		return "never"
	}
	return dur(f.Time)
}

func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func percent(p float64) string { return fmt.Sprintf("%.2f%%", p) }

// dur rounds to the millisecond: a result's offsets are measured with
// nanoseconds nobody reads.
func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		d = d.Round(time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(100 * time.Microsecond)
	}
	return d.String()
}

// offset is a step's Done or Undone: zero means it never happened.
func offset(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return dur(d)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// oneLine keeps user text from breaking the table's rows and columns.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '\n', '\r', '\t', '\v', '\f':
			return ' '
		}
		return r
	}, s)
}

// errWriter keeps the first write error, so the many writes of a table
// are checked once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}
