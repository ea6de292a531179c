package kube

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/straitmesh/strait/discovery"
	"github.com/straitmesh/strait/federation/catalog"
)

func export(labels string) *mcsv1a1.ServiceExport {
	se := &mcsv1a1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ledger", Generation: 3}}
	if labels != "" {
		se.Annotations = map[string]string{LabelsAnnotation: labels}
	}
	return se
}

func service(ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "ledger"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "ledger"}, Ports: ports}}
}

func port(name string, n int32, app string) corev1.ServicePort {
	p := corev1.ServicePort{Name: name, Port: n, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString(name)}
	if app != "" {
		p.AppProtocol = &app
	}
	return p
}

type ep struct {
	addr                        string
	ready, serving, terminating *bool
	zone                        string
}

func slice(name string, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name,
		Labels: map[string]string{serviceNameLabel: "ledger"}}, AddressType: discoveryv1.AddressTypeIPv4}
	for n, p := range ports {
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: ptr.To(n), Port: ptr.To(p), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.zone != "" {
			x.Zone = ptr.To(e.zone)
		}
		sl.Endpoints = append(sl.Endpoints, x)
	}
	return sl
}

var yes, no = ptr.To(true), ptr.To(false)

// TestResolve decides, from the objects alone, what an export exports and
// which conditions it carries.
func TestResolve(t *testing.T) {
	web := map[string]int32{"web": 8080}
	many := make([]corev1.ServicePort, MaxPorts+1)
	for i := range many {
		many[i] = port(fmt.Sprintf("p%d", i), int32(1000+i), "")
	}
	headless := service(port("web", 80, "http"))
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	noSelector := service(port("web", 80, ""))
	noSelector.Spec.Selector = nil
	external := service()
	external.Spec.Type = corev1.ServiceTypeExternalName
	udp := service(corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})

	cases := []struct {
		name     string
		se       *mcsv1a1.ServiceExport
		svc      *corev1.Service
		slices   []*discoveryv1.EndpointSlice
		remote   []discovery.ClusterPorts
		want     *discovery.Service // nil: not exported
		valid    string             // reason of Valid
		conflict string             // reason of Conflict; "" when absent
		problems []string
	}{
		{name: "ready endpoints, named target port, zones, labels, protocols",
			se: export("data-class=pii-eu, tier=gold"),
			svc: service(port("web", 80, "http"), port("rpc", 9000, "grpc"), port("h2", 81, "kubernetes.io/h2c"),
				port("raw", 5432, ""), corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
			slices: []*discoveryv1.EndpointSlice{slice("a", map[string]int32{"web": 8080, "rpc": 9090, "h2": 8081, "raw": 5432},
				ep{addr: "10.0.0.2", zone: "z1"}, ep{addr: "10.0.0.1", ready: yes, zone: "z2"}, ep{addr: "10.0.0.9", ready: no, serving: no})},
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Labels: map[string]string{"data-class": "pii-eu", "tier": "gold"},
				Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 8080, Protocol: "http"}, {Name: "rpc", Port: 9000, TargetPort: 9090, Protocol: "grpc"},
					{Name: "h2", Port: 81, TargetPort: 8081, Protocol: "http2"}, {Name: "raw", Port: 5432, TargetPort: 5432, Protocol: "tcp"}},
				Endpoints: []string{"10.0.0.1", "10.0.0.2"}, Zones: map[string]string{"10.0.0.1": "z2", "10.0.0.2": "z1"}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "no ready endpoint: serving terminating ones drain",
			se: export(""), svc: service(port("web", 80, "")),
			slices: []*discoveryv1.EndpointSlice{slice("a", web,
				ep{addr: "10.0.0.1", ready: no, serving: yes, terminating: yes}, ep{addr: "10.0.0.2", ready: no, serving: no, terminating: yes},
				ep{addr: "10.0.0.3", ready: no, serving: no})},
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 8080, Protocol: "tcp"}},
				Endpoints: []string{"10.0.0.1"}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "a ready endpoint: terminating ones are left out",
			se: export(""), svc: service(port("web", 80, "")),
			slices: []*discoveryv1.EndpointSlice{slice("a", web,
				ep{addr: "10.0.0.1", ready: no, serving: yes, terminating: yes}, ep{addr: "10.0.0.2", ready: yes})},
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 8080, Protocol: "tcp"}},
				Endpoints: []string{"10.0.0.2"}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "slices that disagree on a port's number: the mapping with most endpoints",
			se: export(""), svc: service(port("web", 80, "")),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", map[string]int32{"web": 8080}, ep{addr: "10.0.0.1"}),
				slice("b", map[string]int32{"web": 9090}, ep{addr: "10.0.1.1"}, ep{addr: "10.0.1.2"}),
				slice("c", map[string]int32{"other": 1}, ep{addr: "10.0.2.1"}, ep{addr: "10.0.2.2"}, ep{addr: "10.0.2.3"})},
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 9090, Protocol: "tcp"}},
				Endpoints: []string{"10.0.1.1", "10.0.1.2"}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "no slices: exported with no endpoints, numeric target port",
			se: export(""), svc: service(corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromInt32(8080)}),
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 8080, Protocol: "tcp"}},
				Endpoints: []string{}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "headless is exported", se: export(""), svc: headless,
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 80, Protocol: "http"}},
				Endpoints: []string{}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "no selector: exported, counted", se: export(""), svc: noSelector,
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 80, Protocol: "tcp"}},
				Endpoints: []string{}},
			valid: "Valid", conflict: "NoConflicts", problems: []string{"NoSelector"}},
		{name: "missing service", se: export(""), valid: "NoService", problems: []string{"NoService"}},
		{name: "ExternalName", se: export(""), svc: external, valid: "InvalidServiceType", problems: []string{"InvalidServiceType"}},
		{name: "UDP only", se: export(""), svc: udp, valid: "NoTCPPorts", problems: []string{"NoTCPPorts"}},
		{name: "too many ports", se: export(""), svc: service(many...), valid: "TooManyPorts", problems: []string{"TooManyPorts"}},
		{name: "unreadable labels: not exported", se: export("data-class"), svc: service(port("web", 80, "")),
			valid: "InvalidLabels", problems: []string{"InvalidLabels"}},
		{name: "other clusters agree", se: export(""), svc: service(port("web", 80, "http")),
			remote: []discovery.ClusterPorts{{Cluster: "b", Ports: []discovery.Port{{Name: "web", Port: 80, Protocol: "http"}}}},
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 80, Protocol: "http"}},
				Endpoints: []string{}},
			valid: "Valid", conflict: "NoConflicts"},
		{name: "another cluster declares the port differently", se: export(""), svc: service(port("web", 80, "http")),
			remote: []discovery.ClusterPorts{{Cluster: "b", Ports: []discovery.Port{{Name: "web", Port: 80, Protocol: "http"}}},
				{Cluster: "c", Ports: []discovery.Port{{Name: "web", Port: 80, Protocol: "grpc"}}}},
			want: &discovery.Service{Namespace: "demo", Name: "ledger", Ports: []discovery.Port{{Name: "web", Port: 80, TargetPort: 80, Protocol: "http"}},
				Endpoints: []string{}},
			valid: "Valid", conflict: "PortConflict", problems: []string{"PortConflict"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := resolve(c.se, c.svc, c.slices, c.remote)
			if !reflect.DeepEqual(st.svc, c.want) {
				t.Errorf("service:\n got %+v\nwant %+v", st.svc, c.want)
			}
			if len(st.conds) == 0 || st.conds[0].Type != "Valid" || st.conds[0].Reason != c.valid {
				t.Fatalf("conditions %+v, want Valid with reason %s", st.conds, c.valid)
			}
			if wantStatus := map[bool]metav1.ConditionStatus{true: "True", false: "False"}[c.valid == "Valid"]; st.conds[0].Status != wantStatus {
				t.Errorf("Valid is %s, want %s", st.conds[0].Status, wantStatus)
			}
			if st.conds[0].ObservedGeneration != 3 {
				t.Errorf("observedGeneration %d, want the export's 3", st.conds[0].ObservedGeneration)
			}
			switch {
			case c.conflict == "" && len(st.conds) != 1:
				t.Errorf("an invalid export carries %+v, want Valid only", st.conds)
			case c.conflict != "" && (len(st.conds) != 2 || st.conds[1].Type != "Conflict" || st.conds[1].Reason != c.conflict):
				t.Errorf("conditions %+v, want Conflict with reason %s", st.conds, c.conflict)
			}
			if c.conflict == "PortConflict" {
				msg := st.conds[1].Message
				if st.conds[1].Status != "True" || !strings.Contains(msg, "c declares [80/grpc(web)]") || strings.Contains(msg, "b declares") {
					t.Errorf("Conflict %s: %q should name cluster c and its ports, and not b", st.conds[1].Status, msg)
				}
			}
			if !reflect.DeepEqual(st.problems, c.problems) {
				t.Errorf("problems %v, want %v", st.problems, c.problems)
			}
		})
	}
}

func TestProtocol(t *testing.T) {
	for app, want := range map[string]string{"http": "http", "HTTP": "http", "http2": "http2", "h2c": "http2",
		"kubernetes.io/h2c": "http2", "grpc": "grpc", "https": "tcp", "kubernetes.io/ws": "tcp", "": "tcp"} {
		if got := Protocol(&app); got != want {
			t.Errorf("Protocol(%q) = %s, want %s", app, got, want)
		}
		if got := Protocol(appProtocol(want)); got != want {
			t.Errorf("Protocol(appProtocol(%s)) = %s: not each other's inverse", want, got)
		}
	}
	if got := Protocol(nil); got != "tcp" {
		t.Errorf("Protocol(nil) = %s, want tcp", got)
	}
}

func TestParseLabels(t *testing.T) {
	good := map[string]map[string]string{
		"":                              nil,
		"a=b":                           {"a": "b"},
		" data-class = pii-eu ,tier=x ": {"data-class": "pii-eu", "tier": "x"},
		"strait.io/zone=eu,empty=":      {"strait.io/zone": "eu", "empty": ""},
	}
	for in, want := range good {
		got, err := parseLabels(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseLabels(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	long := strings.Repeat("a=b,", 0)
	for i := range maxLabels + 1 {
		long += fmt.Sprintf("k%d=v,", i)
	}
	for _, in := range []string{"a", "=b", "a=b,a=c", "bad key=x", "a=not valid", "a=b,,c=d", strings.TrimSuffix(long, ",")} {
		if _, err := parseLabels(in); err == nil {
			t.Errorf("parseLabels(%q) accepted", in)
		}
	}
}

// TestLimitsAreTheCatalogs: an export the catalog would refuse is refused
// here first, with a condition.
func TestLimitsAreTheCatalogs(t *testing.T) {
	if MaxPorts != catalog.MaxPorts || maxLabels != catalog.MaxLabels {
		t.Errorf("MaxPorts %d, maxLabels %d; the catalog carries %d ports and %d labels", MaxPorts, maxLabels, catalog.MaxPorts, catalog.MaxLabels)
	}
}

func TestStatusDiffers(t *testing.T) {
	valid := metav1.Condition{Type: "Valid", Status: "True", Reason: "Valid", Message: "m", ObservedGeneration: 1}
	conflict := metav1.Condition{Type: "Conflict", Status: "False", Reason: "NoConflicts", Message: "n", ObservedGeneration: 1}
	other := metav1.Condition{Type: "Ready", Status: "True", Reason: "Exported"}
	have := applyStatus([]metav1.Condition{other}, []metav1.Condition{valid, conflict})
	if len(have) != 3 || have[1].LastTransitionTime.IsZero() {
		t.Fatalf("applyStatus: %+v", have)
	}
	if statusDiffers(have, []metav1.Condition{valid, conflict}) {
		t.Error("applied conditions still differ")
	}
	changed := valid
	changed.Message = "other"
	if !statusDiffers(have, []metav1.Condition{changed, conflict}) {
		t.Error("a new message does not differ")
	}
	if !statusDiffers(have, []metav1.Condition{valid}) {
		t.Error("a Conflict condition to remove does not differ")
	}
	after := applyStatus(have, []metav1.Condition{valid})
	if len(after) != 2 || after[0].Type != "Ready" {
		t.Errorf("removing Conflict kept another controller's condition? %+v", after)
	}
}

// TestMetricsAreDocumented: every strait_discovery_kube_* series is in
// docs/metrics.md.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range newMetrics().all() {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			name := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]
			n++
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("%s is not in docs/metrics.md", name)
			}
		}
	}
	if n < 7 {
		t.Fatalf("described %d metrics", n)
	}
}
