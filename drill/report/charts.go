package report

// Charts are drawn with gonum.org/v1/plot and its SVG backend, on the
// server side, and inlined into the page. Chosen over
// github.com/wcharczuk/go-chart (archived, last release 2024) and over a
// vendored JavaScript library (uPlot, Chart.js): gonum/plot is maintained
// with gonum's numeric libraries, and server-side SVG keeps the page free
// of script, so it shows the same offline, in a CI artifact viewer that
// blocks script, and when printed.

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/straitmesh/strait/drill"
)

const (
	chartWidth  = 26 * vg.Centimeter
	chartHeight = 9 * vg.Centimeter
)

var (
	// regionColors are distinguishable with common colour blindness
	// (Okabe-Ito without its red and orange, kept for errors and refusals).
	regionColors = []color.RGBA{
		{0x00, 0x72, 0xb2, 0xff}, // blue
		{0x00, 0x9e, 0x73, 0xff}, // green
		{0xcc, 0x79, 0xa7, 0xff}, // purple
		{0x56, 0xb4, 0xe9, 0xff}, // sky
		{0xf0, 0xe4, 0x42, 0xff}, // yellow
		{0x66, 0x66, 0x66, 0xff}, // grey
	}
	errorColor   = color.RGBA{0xd5, 0x2b, 0x1e, 0xff}
	refusedColor = color.RGBA{0xe6, 0x9f, 0x00, 0xff}
	bandColor    = color.NRGBA{0xd5, 0x2b, 0x1e, 0x26}
	bandEdge     = color.NRGBA{0xd5, 0x2b, 0x1e, 0xa0}
	restoreColor = color.NRGBA{0x00, 0x9e, 0x73, 0xc0}
)

// regions lists the regions that served t, in the order of the result's
// clusters, then any others by name.
func regions(r *drill.Result, t drill.TrafficResult) []string {
	seen := map[string]bool{}
	for _, s := range t.Seconds {
		for reg, n := range s.ByRegion {
			if n > 0 {
				seen[reg] = true
			}
		}
	}
	var out []string
	for _, c := range r.Clusters {
		if seen[c.Region] && !slices.Contains(out, c.Region) {
			out = append(out, c.Region)
		}
	}
	var rest []string
	for reg := range seen {
		if !slices.Contains(out, reg) {
			rest = append(rest, reg)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// trafficChart stacks t's successful requests per second by serving
// region, then its errors and refusals, with the fault steps as bands.
func trafficChart(r *drill.Result, t drill.TrafficResult) (template.HTML, error) {
	p := newPlot(fmt.Sprintf("%s: requests per second by serving region", t.Name), "requests/s")
	regs := regions(r, t)
	type layer struct {
		name  string
		color color.Color
		n     func(drill.Second) int
	}
	var layers []layer
	for i, reg := range regs {
		layers = append(layers, layer{reg, regionColors[i%len(regionColors)], func(s drill.Second) int { return s.ByRegion[reg] }})
	}
	layers = append(layers,
		layer{"errors", errorColor, func(s drill.Second) int { return s.Errors }},
		layer{"refused", refusedColor, func(s drill.Second) int { return s.Refused }},
	)
	// Cumulative tops, each layer on the ones below it.
	tops := make([]plotter.XYs, len(layers))
	ymax := 1.0
	for _, s := range t.Seconds {
		sum := 0
		for i, l := range layers {
			sum += l.n(s)
			tops[i] = append(tops[i], plotter.XY{X: float64(s.T), Y: float64(sum)})
		}
		ymax = math.Max(ymax, float64(sum))
	}
	ymax *= 1.45 // room for the legend above the data
	p.Y.Min, p.Y.Max = 0, ymax
	if err := addSteps(p, r, 0, ymax, false); err != nil {
		return "", err
	}
	// The highest layer first: each lower one paints over its part.
	for i := len(layers) - 1; i >= 0; i-- {
		pts := closeSteps(tops[i])
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return "", fmt.Errorf("chart %s: %w", t.Name, err)
		}
		l.StepStyle = plotter.PostStep
		l.FillColor = layers[i].color
		l.Color = layers[i].color
		l.Width = vg.Points(0.5)
		p.Add(l)
	}
	for _, l := range layers {
		p.Legend.Add(l.name, swatch{l.color})
	}
	return render(p)
}

// latencyChart draws t's p50, p90 and p99 per second on a log scale,
// skipping seconds with no answer.
func latencyChart(r *drill.Result, t drill.TrafficResult) (template.HTML, error) {
	p := newPlot(fmt.Sprintf("%s: latency percentiles", t.Name), "ms (log)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = ticks125{}
	lo, hi := math.Inf(1), 0.0
	series := []struct {
		name  string
		v     func(drill.Second) float64
		color color.Color
		dash  []vg.Length
	}{
		{"p50", func(s drill.Second) float64 { return s.P50 }, regionColors[0], nil},
		{"p90", func(s drill.Second) float64 { return s.P90 }, regionColors[2], []vg.Length{vg.Points(4), vg.Points(2)}},
		{"p99", func(s drill.Second) float64 { return s.P99 }, errorColor, nil},
	}
	lines := make([]*plotter.Line, 0, len(series))
	for _, se := range series {
		var pts plotter.XYs
		for _, s := range t.Seconds {
			if v := se.v(s); v > 0 {
				pts = append(pts, plotter.XY{X: float64(s.T) + 0.5, Y: v})
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return "", fmt.Errorf("chart %s: %w", t.Name, err)
		}
		l.Color = se.color
		l.Width = vg.Points(1.2)
		l.Dashes = se.dash
		lines = append(lines, l)
		p.Legend.Add(se.name, l)
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	// Room for the legend above the data, and a finite axis whatever the
	// figures.
	p.Y.Min, p.Y.Max = math.Max(lo/1.5, math.SmallestNonzeroFloat64), math.Min(hi*5, math.MaxFloat64)
	if err := addSteps(p, r, p.Y.Min, p.Y.Max, true); err != nil {
		return "", err
	}
	for _, l := range lines {
		p.Add(l)
	}
	return render(p)
}

func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	sans := func(f *font.Font) { f.Variant = "Sans" }
	sans(&p.Title.TextStyle.Font)
	sans(&p.X.Label.TextStyle.Font)
	sans(&p.Y.Label.TextStyle.Font)
	sans(&p.X.Tick.Label.Font)
	sans(&p.Y.Tick.Label.Font)
	sans(&p.Legend.TextStyle.Font)
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.X.Label.Text = "seconds from the drill's start"
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -vg.Points(4)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.ThumbnailWidth = vg.Points(14)
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	return p
}

// addSteps marks each fault from when it was in place to when it was
// undone (or the drill's end) as a band, labelled with the step's name,
// and each restore as a line.
func addSteps(p *plot.Plot, r *drill.Result, ymin, ymax float64, log bool) error {
	end := r.Ran.Seconds()
	p.X.Max = math.Max(p.X.Max, end)
	labelY := ymax / 1.04
	if log {
		labelY = ymax / 1.3
	}
	var labels plotter.XYLabels
	for _, s := range r.Steps {
		if s.Done == 0 {
			continue
		}
		x0 := s.Done.Seconds()
		if s.Kind == drill.Restore {
			l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: ymin}, {X: x0, Y: ymax}})
			if err != nil {
				return err
			}
			l.Color = restoreColor
			l.Width = vg.Points(1.5)
			l.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
			p.Add(l)
			continue
		}
		x1 := end
		if s.Undone > 0 {
			x1 = s.Undone.Seconds()
		}
		band, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: ymin}, {X: x1, Y: ymin}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
		if err != nil {
			return err
		}
		band.Color = bandColor
		band.LineStyle.Color = bandEdge
		band.LineStyle.Width = vg.Points(0.5)
		p.Add(band)
		labels.XYs = append(labels.XYs, plotter.XY{X: x0, Y: labelY})
		labels.Labels = append(labels.Labels, fmt.Sprintf(" %s (%s, %s–%s)", s.Name, s.Kind, short(s.Done), short(x1Dur(s, r))))
	}
	if len(labels.Labels) > 0 {
		ls, err := plotter.NewLabels(labels)
		if err != nil {
			return err
		}
		for i := range ls.TextStyle {
			ls.TextStyle[i].Font.Variant = "Sans"
			ls.TextStyle[i].Font.Size = vg.Points(8)
			ls.TextStyle[i].Color = color.RGBA{0x8a, 0x1c, 0x13, 0xff}
			ls.TextStyle[i].Handler = p.Title.TextStyle.Handler
		}
		p.Add(ls)
	}
	return nil
}

func x1Dur(s drill.StepRecord, r *drill.Result) time.Duration {
	if s.Undone > 0 {
		return s.Undone
	}
	return r.Ran
}

// short is an offset for a chart label, to the tenth of a second.
func short(d time.Duration) string {
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// closeSteps adds the end of the last one-second bucket, so a post-step
// line covers it.
func closeSteps(pts plotter.XYs) plotter.XYs {
	if len(pts) == 0 {
		return pts
	}
	last := pts[len(pts)-1]
	return append(pts, plotter.XY{X: last.X + 1, Y: last.Y})
}

// swatch is a legend thumbnail: a filled square.
type swatch struct{ color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	pts := []vg.Point{
		{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y},
		{X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y},
	}
	c.FillPolygon(s.Color, c.ClipPolygonY(pts))
}

// render draws p as SVG for inlining: without the XML declaration, and
// with fallbacks for the font (Liberation Sans has Arial's metrics, which
// the layout was computed with).
func render(p *plot.Plot) (template.HTML, error) {
	w, err := p.WriterTo(chartWidth, chartHeight, "svg")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	if i := strings.Index(s, "<svg"); i >= 0 {
		s = s[i:]
	}
	s = strings.ReplaceAll(s, "font-family:Liberation Sans;", "font-family:'Liberation Sans',Arial,Helvetica,sans-serif;")
	// The SVG backend escapes every string it draws (html.EscapeString),
	// so the chart is safe to inline.
	return template.HTML(s), nil
}

// ticks125 marks a log axis at 1, 2 and 5 times the powers of ten, which
// reads better than plot.LogTicks when the data spans a decade or two.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	if !(lo > 0) || math.IsInf(hi, 0) || math.IsNaN(hi) {
		return nil
	}
	first := math.Floor(math.Log10(lo))
	for e := first; math.Pow(10, e) <= hi && e < first+30; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	return ts
}
