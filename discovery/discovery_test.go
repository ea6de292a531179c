package discovery

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/straitmesh/strait/internal/configfile"
)

func TestTarget(t *testing.T) {
	s := Service{Namespace: "demo", Name: "x", Endpoints: []string{"10.0.0.1", "::1"},
		Ports: []Port{{Port: 80}, {Port: 443, TargetPort: 8443}}}
	if got, ok := s.Target(80); !ok || !reflect.DeepEqual(got, []string{"10.0.0.1:80", "[::1]:80"}) {
		t.Errorf("Target(80) = %v %v", got, ok)
	}
	if got, ok := s.Target(443); !ok || !reflect.DeepEqual(got, []string{"10.0.0.1:8443", "[::1]:8443"}) {
		t.Errorf("Target(443) = %v %v", got, ok)
	}
	if _, ok := s.Target(22); ok {
		t.Error("Target(22) found a port the service does not have")
	}
}

func TestValidate(t *testing.T) {
	bad := []Service{
		{Namespace: "", Name: "Upper", Ports: []Port{{Port: 80}, {Port: 80, Protocol: "udp"}}, Endpoints: []string{""}},
		{Namespace: "demo", Name: "x"},
	}
	err := Validate("services.", bad)
	want := map[string]string{
		"services.0.namespace":        "required value missing",
		"services.0.name":             "not a DNS label",
		"services.0.ports.1.port":     "listed twice",
		"services.0.ports.1.protocol": "want one of tcp, http, http2, grpc",
		"services.0.endpoints.0":      "empty address",
		"services.1.ports":            "at least one port required",
	}
	got := map[string]string{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *configfile.FieldError
		if errors.As(e, &fe) {
			got[fe.Key] = fe.Msg
		}
	}
	for k, msg := range want {
		if !strings.Contains(got[k], msg) {
			t.Errorf("%s: got %q, want ...%s...", k, got[k], msg)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems %v, want %d", len(got), got, len(want))
	}
	if err := Validate("services.", []Service{{Namespace: "demo", Name: "x", Ports: []Port{{Port: 80}}}}); err != nil {
		t.Errorf("valid service: %v", err)
	}
}
