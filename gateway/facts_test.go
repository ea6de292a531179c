package gateway

import (
	"strings"
	"testing"

	"github.com/straitmesh/strait/gateway/wire"
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
	svc := wire.Target{Namespace: "demo", Name: "svc", Port: 80}
	for _, tc := range []struct {
		name   string
		eng    *sovereignty.Engine
		self   sovereignty.Candidate
		labels map[string]string
		peer   identity.ID
		facts  wire.Facts
		allow  bool
		rule   string
	}{
		{"own labels, allowed source", allow, euWest, ledger, from("eu-central"), wire.Facts{}, true, "class:pii-eu"},
		{"own labels, source region from the certificate", allow, euWest, ledger, from("us-east"), wire.Facts{}, false, "class:pii-eu"},
		{"claims cannot remove a class the labels give", allow, euWest, ledger, from("us-east"), wire.Facts{Classes: []string{}, Restricted: false}, false, "class:pii-eu"},
		{"a claimed class adds its restriction", allow, euCentral, nil, from("eu-west"), wire.Facts{Classes: []string{"west"}}, false, "class:west"},
		{"a claimed header classifies", allow, euWest, nil, from("us-east"), wire.Facts{Headers: map[string][]string{"x-data-residency": {"eu"}}}, false, "class:pii-eu"},
		{"a claimed namespace classifies", allow, euCentral, nil, from("eu-west"), wire.Facts{Namespace: "vault"}, false, "class:west"},
		{"claimed regions must hold this cluster", allow, euCentral, ledger, from("eu-west"), wire.Facts{Classes: []string{"pii-eu"}, Regions: []string{"eu-west"}, Restricted: true}, false, "peer-restriction"},
		{"claimed regions must hold the source", allow, euWest, nil, from("eu-central"), wire.Facts{Regions: []string{"eu-west"}, Restricted: true}, false, "peer-restriction"},
		{"an unknown claimed class is covered by its regions", allow, euCentral, nil, from("eu-west"), wire.Facts{Classes: []string{"newer"}, Regions: []string{"eu-west"}, Restricted: true}, false, "peer-restriction"},
		{"default deny: unclassified is refused", deny, euWest, nil, from("eu-west"), wire.Facts{}, false, "default"},
		{"default deny: a claimed class cannot turn a refusal into an allow", deny, euWest, nil, from("eu-west"), wire.Facts{Classes: []string{"pii-eu"}}, false, "default"},
		{"default deny: own class allows inside its regions", deny, euWest, ledger, from("eu-central"), wire.Facts{Classes: []string{"pii-eu"}}, true, "class:pii-eu"},
		{"default deny: a claimed header cannot turn a refusal into an allow", deny, euWest, nil, from("eu-central"), wire.Facts{Headers: map[string][]string{"x-data-residency": {"eu"}}}, false, "default"},
		{"default deny: a claimed namespace cannot turn a refusal into an allow", deny, euWest, nil, from("eu-west"), wire.Facts{Namespace: "vault"}, false, "default"},
		{"default deny: a claimed namespace still narrows what labels allow", deny, euCentral, ledger, from("eu-west"), wire.Facts{Namespace: "vault"}, false, "class:west"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := decideInbound(tc.eng, tc.self, svc, tc.labels, sovereignty.ServiceClasses{}, tc.peer, tc.facts)
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
