package gateway

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straitmesh/strait/identity"
	"github.com/straitmesh/strait/sovereignty"
)

const factsPolicy = `apiVersion: strait.io/v1
kind: ResidencyPolicy
metadata: {name: facts}
spec:
  regionGroups:
    eu: [eu-west, eu-central]
    us: [us-east]
  classes:
    - name: pii-eu
      allowedRegions: [eu]
      match:
        services: [{labels: {data-class: pii-eu}}]
        headers: [{name: x-data-residency, value: eu}]
    - name: west
      allowedRegions: [eu-west]
      match:
        sources: [{namespace: vault}]
  default: %s
`

func TestDecideInbound(t *testing.T) {
	allow := mustEngine(t, strings.Replace(factsPolicy, "%s", "allow", 1))
	deny := mustEngine(t, strings.Replace(factsPolicy, "%s", "deny", 1))
	ledger := map[string]string{"data-class": "pii-eu"}
	euWest := sovereignty.Candidate{Cluster: "eu-west-1", Region: "eu-west"}
	euCentral := sovereignty.Candidate{Cluster: "eu-central-1", Region: "eu-central"}
	from := func(region string) identity.ID { return identity.ID{TrustDomain: "t", Region: region, Cluster: "src"} }
	svc := Target{Namespace: "demo", Name: "svc", Port: 80}
	for _, tc := range []struct {
		name   string
		eng    *sovereignty.Engine
		self   sovereignty.Candidate
		labels map[string]string
		peer   identity.ID
		facts  flowFacts
		allow  bool
		rule   string
	}{
		{"own labels, allowed source", allow, euWest, ledger, from("eu-central"), flowFacts{}, true, "class:pii-eu"},
		{"own labels, source region from the certificate", allow, euWest, ledger, from("us-east"), flowFacts{}, false, "class:pii-eu"},
		{"claims cannot remove a class the labels give", allow, euWest, ledger, from("us-east"), flowFacts{Classes: []string{}, Restricted: false}, false, "class:pii-eu"},
		{"a claimed class adds its restriction", allow, euCentral, nil, from("eu-west"), flowFacts{Classes: []string{"west"}}, false, "class:west"},
		{"a claimed header classifies", allow, euWest, nil, from("us-east"), flowFacts{Headers: map[string][]string{"x-data-residency": {"eu"}}}, false, "class:pii-eu"},
		{"a claimed namespace classifies", allow, euCentral, nil, from("eu-west"), flowFacts{Namespace: "vault"}, false, "class:west"},
		{"claimed regions must hold this cluster", allow, euCentral, ledger, from("eu-west"), flowFacts{Classes: []string{"pii-eu"}, Regions: []string{"eu-west"}, Restricted: true}, false, "peer-restriction"},
		{"claimed regions must hold the source", allow, euWest, nil, from("eu-central"), flowFacts{Regions: []string{"eu-west"}, Restricted: true}, false, "peer-restriction"},
		{"an unknown claimed class is covered by its regions", allow, euCentral, nil, from("eu-west"), flowFacts{Classes: []string{"newer"}, Regions: []string{"eu-west"}, Restricted: true}, false, "peer-restriction"},
		{"default deny: unclassified is refused", deny, euWest, nil, from("eu-west"), flowFacts{}, false, "default"},
		{"default deny: a claimed class cannot turn a refusal into an allow", deny, euWest, nil, from("eu-west"), flowFacts{Classes: []string{"pii-eu"}}, false, "default"},
		{"default deny: own class allows inside its regions", deny, euWest, ledger, from("eu-central"), flowFacts{Classes: []string{"pii-eu"}}, true, "class:pii-eu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := decideInbound(tc.eng, tc.self, svc, tc.labels, tc.peer, tc.facts)
			if v.decision.Allow != tc.allow || v.decision.Rule.ID != tc.rule {
				t.Errorf("allow %v rule %s (%s); want allow %v rule %s", v.decision.Allow, v.decision.Rule.ID, v.reason, tc.allow, tc.rule)
			}
			if !v.decision.Allow && v.reason == "" {
				t.Error("refusal without a reason")
			}
		})
	}
}

func mustEngine(t testing.TB, doc string) *sovereignty.Engine {
	t.Helper()
	e, err := sovereignty.Compile("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestFactsRoundTrip(t *testing.T) {
	in := flowFacts{Classes: []string{"pii-eu"}, Regions: []string{"eu-west"}, Restricted: true, Namespace: "ns", Headers: map[string][]string{"X-A": {"1"}}, Policy: 4}
	b, err := encodeFacts(in)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(append(b, "payload"...))
	out, err := readFacts(r)
	if err != nil {
		t.Fatal(err)
	}
	if out.Policy != 4 || !out.Restricted || out.Header().Get("x-a") != "1" {
		t.Errorf("round trip %+v", out)
	}
	if rest := r.Len(); rest != len("payload") {
		t.Errorf("readFacts consumed %d payload bytes", len("payload")-rest)
	}
	if _, err := readFacts(strings.NewReader(strings.Repeat("x", maxFactsLine+1))); err == nil {
		t.Error("over-long facts accepted")
	}
}

// FuzzDecodeFacts: decoding never panics, and what it accepts is bounded
// and re-encodes.
func FuzzDecodeFacts(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "facts", "*.json"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ff, err := decodeFacts(b)
		if err != nil {
			return
		}
		if len(ff.Classes) > sovereignty.MaxClasses || len(ff.Headers) > 32 {
			t.Fatalf("accepted unbounded facts %+v", ff)
		}
		_ = ff.Header()
		if _, err := encodeFacts(ff); err != nil && len(b) < maxFactsLine/2 {
			t.Fatalf("accepted facts do not re-encode: %v", err)
		}
	})
}
