package sovereignty_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/straitmesh/strait/sovereignty"
)

const examplePath = "../deploy/examples/residency.yaml"

func TestShippedExampleCompiles(t *testing.T) {
	e, err := sovereignty.LoadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.Summary(), "policy default: 1 class, 3 regions in 2 groups, default allow"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	c, ok := e.Class("pii-eu")
	if !ok {
		t.Fatal("no class pii-eu")
	}
	if strings.Join(c.Allowed, ",") != "eu-central,eu-west" || c.Catalog != sovereignty.CatalogRegionOnly || len(c.Matchers) != 3 {
		t.Errorf("pii-eu compiled as %+v", c)
	}
	if c.Rule.At != examplePath+":11:7" || c.Rule.Path != "spec.classes[0].allowedRegions" {
		t.Errorf("rule position %s %s", c.Rule.Path, c.Rule.At)
	}
	if got := strings.Join(e.HeaderNames(), ","); got != "X-Data-Residency" {
		t.Errorf("header names %q", got)
	}
}

// base is a valid policy that the problem cases edit.
const base = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata:
  name: p
spec:
  regionGroups:
    eu: [eu-west, eu-central]
    us: [us-east]
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match:
        services:
          - labels: {data-class: pii-eu}
  default: allow
`

func TestPolicyProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string // every problem, in order, without the "p.yaml:" prefix
	}{
		{"unknown top-level key", base + "extra: 1\n",
			[]string{`16:1: extra: unknown key (known keys: apiVersion, kind, metadata, spec)`}},
		{"unknown nested key with suggestion", strings.Replace(base, "      match:", "      matchs:", 1),
			[]string{`10:7: spec.classes[0].match: required: services, sources or headers that put traffic in this class`,
				`12:7: spec.classes[0].matchs: unknown key (did you mean "match"?)`}},
		{"unknown key in a matcher", strings.Replace(base, "- labels:", "- label:", 1),
			[]string{`14:13: spec.classes[0].match.services[0].label: unknown key (did you mean "labels"?)`,
				`14:13: spec.classes[0].match.services[0]: empty matcher: it would match every service; give namespace, name or labels`}},
		{"unknown region", strings.Replace(base, "[eu]", "[eu, eu-north]", 1),
			[]string{`11:28: spec.classes[0].allowedRegions[1]: unknown region or group "eu-north" (groups: eu, us; regions: eu-central, eu-west, us-east)`}},
		{"unknown group in a source matcher", strings.Replace(base, "          - labels: {data-class: pii-eu}\n", "          - labels: {data-class: pii-eu}\n        sources:\n          - {region: apac}\n", 1),
			[]string{`16:22: spec.classes[0].match.sources[0].region: unknown region or group "apac" (groups: eu, us; regions: eu-central, eu-west, us-east)`}},
		{"empty service matcher", strings.Replace(base, "- labels: {data-class: pii-eu}", "- {}", 1),
			[]string{`14:13: spec.classes[0].match.services[0]: empty matcher: it would match every service; give namespace, name or labels`}},
		{"empty source matcher", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        sources:\n          - {}\n", 1),
			[]string{`14:13: spec.classes[0].match.sources[0]: empty matcher: it would match every source; give cluster, region or namespace`}},
		{"no matcher at all", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        services: []\n", 1),
			[]string{`12:7: spec.classes[0].match: no matcher: give at least one of services, sources or headers`}},
		{"header matcher without a name", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        headers:\n          - {value: eu}\n", 1),
			[]string{`14:13: spec.classes[0].match.headers[0].name: required: the header name`}},
		{"header value holding a comma", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        headers:\n          - {name: x-data-residency, value: \"eu, us\"}\n", 1),
			[]string{`14:13: spec.classes[0].match.headers[0].value: "eu, us" holds a comma: a header's comma-separated list is read item by item, so no item could equal it`}},
		{"empty header value", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        headers:\n          - {name: x-data-residency, value: \" \"}\n", 1),
			[]string{`14:13: spec.classes[0].match.headers[0].value: empty value: give the value that marks the traffic, or leave value out to match the header with any value`}},
		{"onUnknownValue neither refuse nor ignore", strings.Replace(base, "  default:", "  onUnknownValue: allow\n  default:", 1),
			[]string{`15:19: spec.onUnknownValue: expected refuse or ignore, found "allow"`}},
		{"effective region set empty", strings.Replace(base, "us: [us-east]", "us: [us-east]\n    none: []", 1) + "",
			nil}, // an unused empty group is fine
		{"class allowing only an empty group", strings.Replace(strings.Replace(base, "us: [us-east]", "us: [us-east]\n    none: []", 1), "[eu]", "[none]", 1),
			[]string{`12:7: spec.classes[0].allowedRegions: the effective region set is empty (none expand to no region): every flow in the class would be refused`}},
		{"empty allowed list", strings.Replace(base, "[eu]", "[]", 1),
			[]string{`11:7: spec.classes[0].allowedRegions: empty: a class must allow at least one region`}},
		{"disjoint classes that can match one flow", base[:strings.Index(base, "  default:")] + `    - name: us-only
      allowedRegions: [us]
      match:
        headers:
          - {name: x-data-residency, value: us}
`,
			[]string{`15:13: spec.classes[1]: classes "pii-eu" (line 10) and "us-only" (line 15) can match the same flow (one matching both spec.classes[0].match.services[0] and spec.classes[1].match.headers[0]) but allow disjoint regions [eu-central eu-west] and [us-east]: such a flow would always be refused; narrow a matcher or share a region`}},
		{"disjoint classes on different label values never meet", base[:strings.Index(base, "  default:")] + `    - name: pii-us
      allowedRegions: [us]
      match:
        services:
          - labels: {data-class: pii-us}
`, nil},
		{"disjoint classes on different values of one header never meet", base[:strings.Index(base, "    - name: pii-eu")] + `    - name: us-only
      allowedRegions: [us]
      match:
        headers:
          - {name: X-Data-Residency, value: us}
    - name: eu-only
      allowedRegions: [eu]
      match:
        headers:
          - {name: x-data-residency, value: eu}
`, nil},
		{"duplicate class", base[:strings.Index(base, "  default:")] + "    - name: pii-eu\n      allowedRegions: [eu]\n      match: {services: [{name: x}]}\n",
			[]string{`15:13: spec.classes[1].name: class "pii-eu" defined twice (first at line 10)`}},
		{"bad default", strings.Replace(base, "default: allow", "default: maybe", 1),
			[]string{`15:12: spec.default: expected allow or deny, found "maybe"`}},
		{"unsupported apiVersion", strings.Replace(base, "strait.io/v1", "strait.io/v2", 1),
			[]string{`1:13: apiVersion: unsupported version "strait.io/v2"; this gateway reads "strait.io/v1"`}},
		{"missing apiVersion and kind", base[strings.Index(base, "metadata:"):],
			[]string{`1:1: apiVersion: required: the policy file version, "strait.io/v1"`, `1:1: kind: required: "ResidencyPolicy"`}},
		{"wrong type", strings.Replace(base, "[eu]", "eu", 1),
			[]string{`11:23: spec.classes[0].allowedRegions: expected a list, found "eu"`}},
		{"duplicate key", strings.Replace(base, "  default: allow", "  default: allow\n  default: deny", 1),
			[]string{`16:3: spec.default: duplicate key (already set at line 15)`}},
		{"region-only without a service matcher", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        sources: [{namespace: x}]\n      catalog: region-only\n", 1),
			[]string{`14:16: spec.classes[0].catalog: region-only scopes catalog entries of services: the class needs a services matcher`}},
		{"unreadable neither restrict nor allow", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        headers: [{name: x-data-residency, value: eu}]\n      unreadable: deny\n", 1),
			[]string{`14:19: spec.classes[0].unreadable: expected restrict or allow, found "deny"`}},
		{"unreadable not text", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        headers: [{name: x-data-residency, value: eu}]\n      unreadable: [allow]\n", 1),
			[]string{`14:19: spec.classes[0].unreadable: expected a string, found a list`}},
		{"unreadable on a class without header matchers", strings.Replace(base, "          - labels: {data-class: pii-eu}\n", "          - labels: {data-class: pii-eu}\n      unreadable: allow\n", 1),
			[]string{`15:19: spec.classes[0].unreadable: unreadable says what flows the gateway cannot read get from the class's header matchers, and the class has none: remove unreadable or add match.headers`}},
		{"unreadable restrict on a class without header matchers", strings.Replace(base, "          - labels: {data-class: pii-eu}\n", "          - labels: {data-class: pii-eu}\n      unreadable: restrict\n", 1),
			[]string{`15:19: spec.classes[0].unreadable: unreadable says what flows the gateway cannot read get from the class's header matchers, and the class has none: remove unreadable or add match.headers`}},
		{"unreadable allow on a class with header matchers", strings.Replace(base, "          - labels: {data-class: pii-eu}\n", "          - labels: {data-class: pii-eu}\n        headers: [{name: x-data-residency, value: eu}]\n      unreadable: allow\n", 1),
			nil},
		{"bad header name", strings.Replace(base, "        services:\n          - labels: {data-class: pii-eu}\n", "        headers: [{name: \"x residency\"}]\n", 1),
			[]string{`13:19: spec.classes[0].match.headers[0].name: "x residency" is not an HTTP header name`}},
		{"group named like a region", strings.Replace(base, "us: [us-east]", "us: [us-east]\n    eu-west: [eu-west]", 1),
			[]string{`9:5: spec.regionGroups.eu-west: group "eu-west" has the name of a region (line 7); names must say one thing`}},
		{"alias", strings.Replace(base, "eu: [eu-west, eu-central]", "eu: &e [eu-west, eu-central]\n    eu2: *e", 1),
			[]string{`8:10: spec.regionGroups.eu2: YAML aliases (*name) are not supported; write the value out`}},
		{"two documents", base + "---\n" + base,
			[]string{`16:1: a second YAML document starts here; the file must hold exactly one`}},
		{"syntax error", "apiVersion: [\n",
			[]string{`2: YAML syntax error: did not find expected node content`}},
		{"empty file", "# nothing\n", []string{`file is empty`}},
		{"not a mapping", "- a\n", []string{`1:1: expected a policy (a mapping with apiVersion, kind, metadata and spec), found a list`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sovereignty.Compile("p.yaml", []byte(tc.doc))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want a valid policy, got %v\n%s", err, tc.doc)
				}
				return
			}
			var pe *sovereignty.Error
			if !errors.As(err, &pe) {
				t.Fatalf("want *sovereignty.Error, got %v", err)
			}
			var got []string
			for _, p := range pe.Problems {
				got = append(got, strings.TrimSpace(strings.TrimPrefix(p.String(), "p.yaml:")))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if !strings.HasPrefix(err.Error(), "invalid policy p.yaml (") {
				t.Errorf("error header %q", strings.SplitN(err.Error(), "\n", 2)[0])
			}
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := sovereignty.LoadFile("/nonexistent/policy.yaml")
	var pe *sovereignty.Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "/nonexistent/policy.yaml: cannot read policy: file does not exist") {
		t.Fatalf("got %v", err)
	}
}

func TestSeedsBehave(t *testing.T) {
	// The fuzz seeds double as fixtures: the valid ones compile, the rest do not.
	for file, valid := range map[string]bool{
		"testdata/seed/example.yaml": true, "testdata/seed/two-classes.yaml": true, "testdata/seed/unreadable.yaml": true,
		"testdata/seed/problems.yaml": false, "testdata/seed/alias.yaml": false, "testdata/seed/syntax.yaml": false,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sovereignty.Compile(file, data)
		if (err == nil) != valid {
			t.Errorf("%s: valid=%v, got %v", file, valid, err)
		}
	}
}
