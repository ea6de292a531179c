package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"time"

	"github.com/straitmesh/strait/drill"
)

//go:embed report.html.tmpl
var pageSource string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur":       dur,
	"offset":    offset,
	"passFail":  passFail,
	"rate":      func(c drill.Counts) string { return percent(ErrorRate(c)) },
	"failover":  FailoverTime,
	"timestamp": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(pageSource))

type pageData struct {
	*drill.Result
	Passed  bool
	Failed  int
	Traffic []trafficView
}

type trafficView struct {
	drill.TrafficResult
	Timeline template.HTML
	Latency  template.HTML
}

// HTML writes r as one HTML page that needs nothing else: the verdicts,
// per traffic entry a timeline of requests by serving region with the
// faults marked and its latency percentiles, the steps, failovers and
// violations. Its Content-Security-Policy forbids every fetch and script,
// so the page cannot load anything even if a string got through unescaped.
func HTML(w io.Writer, r *drill.Result) error {
	d := pageData{Result: r, Passed: Passed(r)}
	for _, v := range r.Verdicts {
		if !v.Pass {
			d.Failed++
		}
	}
	for _, t := range r.Traffic {
		tl, err := trafficChart(r, t)
		if err != nil {
			return fmt.Errorf("drill %s: traffic chart: %w", r.Drill, err)
		}
		lat, err := latencyChart(r, t)
		if err != nil {
			return fmt.Errorf("drill %s: latency chart: %w", r.Drill, err)
		}
		d.Traffic = append(d.Traffic, trafficView{TrafficResult: t, Timeline: tl, Latency: lat})
	}
	if err := page.Execute(w, d); err != nil {
		return fmt.Errorf("drill %s: html report: %w", r.Drill, err)
	}
	return nil
}
