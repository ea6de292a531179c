package sovereignty_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/straitmesh/strait/sovereignty"
)

func TestLoadTopology(t *testing.T) {
	top, err := sovereignty.LoadTopology("testdata/topology/devinfo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Clusters) != 2 || top.Clusters[0].Services[0].Labels["data-class"] != "pii-eu" || top.Clusters[0].Services[0].Healthy != 1 ||
		!top.Clusters[1].Down || top.Clusters[1].Services[0].Healthy != 0 {
		t.Errorf("topology %+v", top)
	}
	if got := strings.Join(top.Services(), ","); got != "demo/echo,demo/ledger" {
		t.Errorf("services %s", got)
	}
	_, err = sovereignty.LoadTopology("testdata/topology/problems.yaml")
	var pe *sovereignty.Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		`testdata/topology/problems.yaml:2:5: clusters[0].region: required`,
		`testdata/topology/problems.yaml:2:11: clusters[0].name: "A" is not a DNS label (lower-case letters, digits, '-')`,
		`testdata/topology/problems.yaml:3:26: clusters[0].services[0].service: want namespace/name with DNS labels, found "nope"`,
		`testdata/topology/problems.yaml:3:40: clusters[0].services[0].ports[0]: expected a port 1-65535, found "0"`,
		`testdata/topology/problems.yaml:4:53: clusters[1].services[1].service: service a/b listed twice`,
	}
	var got []string
	for _, p := range pe.Problems {
		got = append(got, p.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestVariants(t *testing.T) {
	e := mustCompile(t, decisionPolicy)
	var labels []string
	for _, v := range e.Variants() {
		labels = append(labels, v.Label)
	}
	if got := strings.Join(labels, "|"); got != "tcp|X-Data-Residency: eu|X-Trace-Residency: (any)|namespace eu-customers|namespace keys" {
		t.Errorf("variants %s", got)
	}
}
