package gateway

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var fqName = regexp.MustCompile(`fqName: "([a-z_]+)"`)

// Every data-plane metric is in docs/metrics.md, so operators can find
// what it counts.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry())
	names := 0
	for _, c := range m.all() {
		ch := make(chan *prometheus.Desc, 16)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			match := fqName.FindStringSubmatch(d.String())
			if match == nil {
				t.Fatalf("no name in %s", d)
			}
			names++
			if !strings.Contains(string(doc), "`"+match[1]+"`") {
				t.Errorf("%s is not in docs/metrics.md", match[1])
			}
		}
	}
	if names < 18 {
		t.Fatalf("described %d metrics", names)
	}
}
