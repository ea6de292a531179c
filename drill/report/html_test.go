package report

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Strings from the result reach the page escaped, in the tables and in
// the charts, and the page refers to nothing outside itself.
func TestHTMLEscapes(t *testing.T) {
	r := abortedResult()
	r.Traffic[0].Name = `<script>alert("t")</script>`
	r.Steps[0].Name = `<b>freeze</b>`
	var b bytes.Buffer
	if err := HTML(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"<script", "<img", "<b>", "onerror=\""} {
		if strings.Contains(out, bad) {
			t.Errorf("page contains %q unescaped", bad)
		}
	}
	if !strings.Contains(out, "&lt;script&gt;") {
		t.Error("escaped script tag not found: was the text dropped?")
	}
	assertSelfContained(t, out)
}

func TestHTMLSample(t *testing.T) {
	var b bytes.Buffer
	if err := HTML(&b, sampleResult()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	assertSelfContained(t, out)
	if n := strings.Count(out, "<svg"); n != 4 {
		t.Errorf("%d charts, want 4 (timeline and latency for 2 traffic entries)", n)
	}
	for _, want := range []string{"eu-west", "eu-central", "us-east", "kill-eu-west", `id="verdict">FAIL`} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if p := os.Getenv("STRAIT_REPORT_HTML"); p != "" {
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var externalRef = regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:|//)|@import|url\(\s*["']?(https?:|//)`)

// assertSelfContained fails when the page could fetch anything: no
// script, no external source or link, no imported style sheet.
func assertSelfContained(t *testing.T, page string) {
	t.Helper()
	if m := externalRef.FindString(page); m != "" {
		t.Errorf("page refers outside itself: %q", m)
	}
	if strings.Contains(strings.ToLower(page), "<script") {
		t.Error("page has a script")
	}
	if strings.Contains(page, "<link") {
		t.Error("page links a resource")
	}
}
