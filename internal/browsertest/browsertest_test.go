package browsertest

import (
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The collector sees console.error, an uncaught exception and a failed
// load, and nothing from a page that is quiet.
func TestWatchConsole(t *testing.T) {
	ctx := Chromium(t)
	console := WatchConsole(t, ctx)
	quiet := "data:text/html," + url.PathEscape(`<p id="p">quiet</p><script>console.log("fine")</script>`)
	if err := chromedp.Do(ctx, chromedp.Navigate(quiet)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Text("#p")); err != nil {
		t.Fatal(err)
	}
	if errs := console.Errors(); len(errs) != 0 {
		t.Fatalf("quiet page reported %q", errs)
	}

	noisy := "data:text/html," + url.PathEscape(`<p id="p">noisy</p>`+
		`<script>console.error("bad", 42)</script><script>throw new Error("boom")</script>`+
		`<img src="file:///nonexistent-browsertest.png">`)
	if err := chromedp.Do(ctx, chromedp.Navigate(noisy)); err != nil {
		t.Fatal(err)
	}
	// A round trip to the page after its load: the browser sent the
	// page's events before this answer.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(console.Errors(), "\n")
	for _, want := range []string{"console.error: \"bad\" 42", "boom", "nonexistent-browsertest.png"} {
		if !strings.Contains(got, want) {
			t.Errorf("collected %q, want it to contain %q", got, want)
		}
	}
}
