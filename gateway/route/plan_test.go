package route

import (
	"net/http"
	"strings"
	"testing"

	"github.com/straitmesh/strait/deploy/examples"
	"github.com/straitmesh/strait/gateway/wire"
	"github.com/straitmesh/strait/sovereignty"
)

// TestPlanUnreadable: a flow the gateway cannot read carries the policy's
// header classes, so the plan keeps it inside their regions; with headers
// the flow was read and Unreadable changes nothing.
func TestPlanUnreadable(t *testing.T) {
	eng, err := sovereignty.Compile("residency.yaml", examples.Residency)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := sovereignty.Compile("residency.yaml", []byte(strings.Replace(string(examples.Residency),
		"      catalog: region-only\n", "      catalog: region-only\n      unreadable: allow\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	self := Self{Cluster: "a", Region: "eu-west", Zone: "eu-west-1a"}
	snap := exporters("profile", nil, 1, "c:eu-central:eu-central-1a", "u:us-east:us-east-1a")
	tgt := wire.Target{Namespace: "demo", Name: "profile", Port: 80}
	for _, tc := range []struct {
		name            string
		eng             *sovereignty.Engine
		in              FlowIn
		classes, allowd string
	}{
		{"passthrough is unreadable: kept in eu", eng, FlowIn{Entry: "passthrough", Unreadable: true}, "pii-eu", "c"},
		{"import of a tcp port is unreadable: kept in eu", eng, FlowIn{Entry: "import", Namespace: "web", Unreadable: true}, "pii-eu", "c"},
		{"L4 not marked unreadable goes anywhere", eng, FlowIn{Entry: "import"}, "", "c,u"},
		{"unreadable: allow leaves it unclassified", allow, FlowIn{Entry: "passthrough", Unreadable: true}, "", "c,u"},
		{"a read flow is classified by its headers", eng, FlowIn{Entry: "http", Headers: http.Header{"Accept": {"*/*"}}}, "", "c,u"},
		{"a CONNECT carrying TLS: its head was read, its bytes cannot be", eng, FlowIn{Entry: "connect", Headers: http.Header{"Accept": {"*/*"}}, Unreadable: true}, "pii-eu", "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPlan(self, LocalView{}, snap, tc.eng, tgt, tc.in, nil)
			if p.Source.Unreadable != tc.in.Unreadable {
				t.Errorf("plan's flow Unreadable %v, want %v", p.Source.Unreadable, tc.in.Unreadable)
			}
			if got := strings.Join(tc.eng.ClassNames(p.Classes), ","); got != tc.classes {
				t.Errorf("classes %q, want %q", got, tc.classes)
			}
			if got := names(p.Allowed); got != tc.allowd {
				t.Errorf("allowed %s, want %s", got, tc.allowd)
			}
			// The inbound gateway learns the classes, and so the regions.
			f := p.Facts(tc.eng, 1)
			if strings.Join(f.Classes, ",") != tc.classes || f.Restricted != (tc.classes != "") {
				t.Errorf("facts %+v", f)
			}
		})
	}
	p := NewPlan(Self{Cluster: "u", Region: "us-east"}, LocalView{}, snap, eng, tgt, FlowIn{Entry: "passthrough", Unreadable: true}, nil)
	if nre := p.Refusal(eng); nre == nil || nre.Status() != http.StatusForbidden || nre.Rule != "class:pii-eu" {
		t.Errorf("unreadable flow from us-east: refusal %v, want 403 by class:pii-eu", nre)
	}
}

// TestExplainUnreadable: explain says a class applies because the flow
// cannot be read, and refuses a question with both headers and unreadable.
func TestExplainUnreadable(t *testing.T) {
	eng, err := sovereignty.Compile("residency.yaml", examples.Residency)
	if err != nil {
		t.Fatal(err)
	}
	top, err := sovereignty.ParseTopology("topo.yaml", []byte(`clusters:
  - {name: eu-west-1, region: eu-west, services: [{service: demo/profile, ports: [80]}]}
  - {name: us-east-1, region: us-east, services: [{service: demo/profile, ports: [80]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	w := WhatIf{Policy: eng, Top: top}
	ex, err := w.Explain(ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1", Unreadable: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Classes) != 1 || len(ex.Classes[0].MatchedBy) != 1 || ex.Classes[0].MatchedBy[0].Kind != sovereignty.KindUnreadable {
		t.Fatalf("classes %+v", ex.Classes)
	}
	if !ex.Unreadable || ex.Outcome != "goes to eu-west-1" || ex.Candidates[1].Decision != "deny" {
		t.Errorf("explanation %+v", ex)
	}
	var b strings.Builder
	if err := ex.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if want := "applies: the flow cannot be read and the class matches headers (unreadable: restrict); spec.classes[0].match.headers at residency.yaml:17:9"; !strings.Contains(b.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, b.String())
	}
	if _, err := w.Explain(ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1", Unreadable: true, Headers: http.Header{}}); err == nil {
		t.Error("explain accepted headers with unreadable")
	}

	w.Unreadable = true
	sim, err := w.Simulate()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sim.Rows {
		if !strings.HasPrefix(r.Traffic, "unreadable") {
			t.Errorf("simulated a readable variant: %+v", r)
		}
		if r.From == "eu-west-1" && r.Before.Cluster != "eu-west-1" || r.From == "us-east-1" && r.Before.Status != http.StatusForbidden {
			t.Errorf("simulated %+v", r)
		}
	}
}

// TestExplainClaimsOnlyNarrow: explain runs the same decision as the
// gateway, so under default deny a header or a namespace claim is shown
// refusing the flow (rule default, claims only narrow), while under
// default allow it narrows as always; a labelled service still allows.
func TestExplainClaimsOnlyNarrow(t *testing.T) {
	allow, err := sovereignty.Compile("residency.yaml", examples.Residency)
	if err != nil {
		t.Fatal(err)
	}
	deny, err := sovereignty.Compile("residency.yaml", []byte(strings.Replace(string(examples.Residency), "default: allow", "default: deny", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if deny.Default() != "deny" {
		t.Fatal("the example policy no longer says default: allow")
	}
	top, err := sovereignty.ParseTopology("topo.yaml", []byte(`clusters:
  - {name: eu-west-1, region: eu-west, services: [{service: demo/profile, ports: [80]}]}
  - {name: eu-central-1, region: eu-central, services: [{service: demo/profile, ports: [80]}, {service: demo/ledger, ports: [80], labels: {data-class: pii-eu}}]}
  - {name: us-east-1, region: us-east, services: [{service: demo/profile, ports: [80]}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	marked := http.Header{"X-Data-Residency": {"eu"}}
	for _, tc := range []struct {
		name    string
		eng     *sovereignty.Engine
		q       ExplainQuery
		status  int
		outcome string // prefix
		why     string // in the first candidate's Why
	}{
		{"allow: a header keeps the flow in eu", allow, ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1", Headers: marked},
			http.StatusOK, "goes to eu-west-1; fails over to eu-central-1", "class pii-eu allows"},
		{"allow: a namespace keeps the flow in eu", allow, ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1", SourceNamespace: "eu-customers"},
			http.StatusOK, "goes to eu-west-1; fails over to eu-central-1", "class pii-eu allows"},
		{"deny: unmarked is refused by default", deny, ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1"},
			http.StatusForbidden, "residency: demo/profile:80 refused: no residency class applies", "no residency class applies"},
		{"deny: a header does not allow the flow", deny, ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1", Headers: marked},
			http.StatusForbidden, "residency: demo/profile:80 refused: only claims", "claims only narrow"},
		{"deny: a namespace does not allow the flow", deny, ExplainQuery{Namespace: "demo", Name: "profile", From: "eu-west-1", SourceNamespace: "eu-customers"},
			http.StatusForbidden, "residency: demo/profile:80 refused: only claims", "claims only narrow"},
		{"deny: a labelled service is allowed in its regions", deny, ExplainQuery{Namespace: "demo", Name: "ledger", From: "eu-west-1", Headers: marked},
			http.StatusOK, "goes to eu-central-1", "class pii-eu allows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := WhatIf{Policy: tc.eng, Top: top}.Explain(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if ex.Status != tc.status || !strings.HasPrefix(ex.Outcome, tc.outcome) || !strings.Contains(ex.Candidates[0].Why, tc.why) {
				t.Errorf("status %d outcome %q, first candidate %+v; want %d %q…, why with %q", ex.Status, ex.Outcome, ex.Candidates[0], tc.status, tc.outcome, tc.why)
			}
		})
	}
}
