package report

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/straitmesh/strait/internal/browsertest"
)

// The page of a realistic drill loads in a real Chromium from a file,
// offline, with no console error, exception or failed load, and its four
// charts are drawn. With STRAIT_SCREENSHOT_DIR set, the full page is
// written there as drill-report.png (docs/drill-report.png is one).
func TestHTMLInBrowser(t *testing.T) {
	file := filepath.Join(t.TempDir(), "report.html")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := HTML(f, sampleResult()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	ctx := browsertest.Chromium(t)
	console := browsertest.WatchConsole(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file)); err != nil {
		t.Fatal(err)
	}

	type chart struct {
		W, H  float64
		Paths int
		Texts int
	}
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[[]chart](`Array.from(document.querySelectorAll("figure.chart svg")).map(s => {
		const r = s.getBoundingClientRect();
		return {W: r.width, H: r.height, Paths: s.querySelectorAll("path").length, Texts: s.querySelectorAll("text").length};
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 4 {
		t.Fatalf("%d charts in the page, want 4", len(charts))
	}
	for i, c := range charts {
		// A drawn chart has axes, ticks, the series and the fault band, and
		// its labels; an empty or broken SVG has few or none.
		if c.W < 300 || c.H < 100 || c.Paths < 10 || c.Texts < 5 {
			t.Errorf("chart %d: %.0fx%.0f px, %d paths, %d texts: not drawn", i, c.W, c.H, c.Paths, c.Texts)
		}
	}
	verdict, err := chromedp.Run(ctx, chromedp.Text("#verdict"))
	if err != nil {
		t.Fatal(err)
	}
	if verdict != "FAIL" {
		t.Errorf("verdict badge %q, want FAIL", verdict)
	}
	failRows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#verdicts tr.fail").length`))
	if err != nil {
		t.Fatal(err)
	}
	if failRows != 1 {
		t.Errorf("%d failing verdict rows, want 1", failRows)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	if dir := os.Getenv("STRAIT_SCREENSHOT_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "drill-report.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range console.Errors() {
		t.Errorf("browser console: %s", e)
	}
}
