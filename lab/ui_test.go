package lab_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straitmesh/strait/internal/browsertest"

	"github.com/chromedp/chromedp"

	"github.com/straitmesh/strait/lab"
)

// TestTopologyPage opens eu-west-1's topology page in headless Chromium
// on the dev federation (four clusters in three regions): it shows them
// all, follows the death of eu-central-1 within two seconds of the
// gateway reporting it, and lists the marked request that its death gets
// refused. No console error on the way.
func TestTopologyPage(t *testing.T) {
	browser := browsertest.Chromium(t)
	console := browsertest.WatchConsole(t, browser)
	_, d, byName := startDev(t, lab.Spec{})
	euw := byName["eu-west-1"]
	page := "http://" + euw.Admin + "/ui/"

	// Some traffic for the page to show: local, across regions, marked.
	for range 3 {
		for _, tc := range []struct {
			url    string
			header http.Header
		}{{ledgerURL, nil}, {profileURL, nil}, {profileURL, euHeader}, {"http://echo.demo.svc.clusterset.local:8080/", nil}} {
			if resp, _ := viaProxy(t, euw.Connect, tc.url, tc.header); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s via eu-west-1: %s", tc.url, resp.Status)
			}
		}
	}

	if err := chromedp.Do(browser, chromedp.EmulateViewport(1400, 1300), chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS(`#topology .cluster`))); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	shown, err := chromedp.Run(browser, chromedp.Evaluate[shownPage](`({
		clusters: Object.fromEntries([...document.querySelectorAll('#topology .cluster')].map(e => [e.dataset.cluster, e.dataset.region + '/' + e.dataset.state])),
		regions: [...document.querySelectorAll('#topology .region')].map(e => e.dataset.region),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"eu-west-1": "eu-west/up", "eu-west-2": "eu-west/up", "eu-central-1": "eu-central/up", "us-east-1": "us-east/up"}
	if fmt.Sprint(shown.Clusters) != fmt.Sprint(want) || strings.Join(shown.Regions, ",") != "eu-central,eu-west,us-east" {
		t.Fatalf("page shows clusters %v in regions %v, want %v in eu-central, eu-west, us-east", shown.Clusters, shown.Regions, want)
	}
	// The traffic table has the marked flows under their class.
	waitDOM(t, browser, 3*time.Second, `document.querySelector('#traffic tr[data-service="demo/profile:8080"][data-destination="eu-central-1"][data-class="pii-eu"]') !== null`,
		"the marked flows to eu-central-1 in the traffic table")

	// Kill eu-central-1: shown down within two seconds of eu-west-1's
	// status saying so (memberlist's detection is the gossip's business).
	if err := d.KillGateway("eu-central-1"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	reported := make(chan time.Time, 1)
	go func() {
		for time.Since(killed) < 20*time.Second {
			for _, c := range d.Gateway("eu-west-1").Status().Clusters {
				if c.Cluster == "eu-central-1" && !c.Reachable {
					reported <- time.Now()
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(reported)
	}()
	down := `document.querySelector('#topology .cluster[data-cluster="eu-central-1"]')?.dataset.state === 'down'`
	waitDOM(t, browser, 20*time.Second, down, "eu-central-1 shown down")
	shownAt := time.Now()
	at, ok := <-reported
	if !ok {
		t.Fatal("eu-west-1's status never reported eu-central-1 unreachable, yet the page shows it down")
	}
	t.Logf("eu-central-1 killed; reported unreachable after %s, shown down after %s", at.Sub(killed).Round(time.Millisecond), shownAt.Sub(killed).Round(time.Millisecond))
	if lag := shownAt.Sub(at); lag > 2*time.Second {
		t.Errorf("page showed eu-central-1 down %s after the gateway reported it, want within 2s", lag)
	}
	if took := shownAt.Sub(killed); took > 10*time.Second {
		t.Errorf("page showed eu-central-1 down %s after the kill, want within 10s", took)
	}

	// A marked request has nowhere allowed left to go: 503, and the page
	// lists it as it happens.
	if resp, _ := viaProxy(t, euw.Connect, profileURL, euHeader); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("marked request with eu-central-1 down: %s %q, want 503", resp.Status, resp.Header.Get("X-Strait-Reason"))
	}
	waitDOM(t, browser, 2*time.Second, `document.querySelector('#refusals li[data-service="demo/profile"][data-status="503"]') !== null`,
		"the refused marked request in the refusals")

	if dir := os.Getenv("STRAIT_SCREENSHOT_DIR"); dir != "" {
		png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "topology.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if errs := console.Errors(); len(errs) > 0 {
		t.Errorf("console errors on the page:\n%s", strings.Join(errs, "\n"))
	}
}

// shownPage is what the topology page shows of the clusters.
type shownPage struct {
	Clusters map[string]string `json:"clusters"`
	Regions  []string          `json:"regions"`
}

// waitDOM polls the page until the expression is true, for at most d.
func waitDOM(t *testing.T, browser context.Context, d time.Duration, expr, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := chromedp.Run(browser, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(browser, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("%s: not within %s; the page:\n%s", what, d, html)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
