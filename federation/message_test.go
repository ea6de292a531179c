package federation

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeMessageRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"not json", "{", "unexpected end"},
		{"unknown kind", `{"kind":"boom","entries":[]}`, `unknown kind "boom"`},
		{"null entry", `{"kind":"entry","entries":[null]}`, "null entry"},
		{"missing cluster", `{"kind":"entry","entries":[{"node":"n","region":"r"}]}`, "cluster: missing"},
		{"bad port", `{"kind":"entry","entries":[{"node":"n","cluster":"c","region":"r","services":[{"namespace":"a","name":"b","ports":[{"port":70000}]}]}]}`, "port 70000 out of range"},
		{"healthy above total", `{"kind":"entry","entries":[{"node":"n","cluster":"c","region":"r","services":[{"namespace":"a","name":"b","healthy":3,"total":1}]}]}`, "healthy 3, total 1"},
		{"oversized", `{"kind":"entry","entries":[],"pad":"` + strings.Repeat("x", MaxMessageBytes) + `"}`, "exceeds limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeMessage([]byte(tc.in))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDecodeMessageRoundTrip(t *testing.T) {
	in := []*Entry{{Node: "n", Cluster: "c", Region: "r", Gateway: "127.0.0.1:15443", Version: 7,
		Services: []Service{{Namespace: "demo", Name: "echo", Ports: []Port{{Port: 8080}}, Labels: map[string]string{"k": "v"}, Healthy: 1, Total: 1}}}}
	b, err := encodeMessage("state", in)
	if err != nil {
		t.Fatal(err)
	}
	kind, out, err := DecodeMessage(b)
	if err != nil || kind != "state" || len(out) != 1 || out[0].Services[0].Labels["k"] != "v" || out[0].Version != 7 {
		t.Fatalf("round trip: %s %+v %v", kind, out, err)
	}
}

// FuzzDecodeMessage: malformed gossip never panics, and whatever decodes
// passes validation again after re-encoding.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"kind":"entry","entries":[{"node":"n","cluster":"c","region":"r","gateway":"g","version":1,"services":[{"namespace":"a","name":"b","ports":[{"port":80}],"healthy":1,"total":1}]}]}`))
	f.Add([]byte(`{"kind":"state","entries":[]}`))
	f.Add([]byte(`{"kind":"entry","entries":[null]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, entries, err := DecodeMessage(b)
		if err != nil {
			return
		}
		again, err := encodeMessage(kind, entries)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := DecodeMessage(again); err != nil {
			t.Fatalf("re-encoded message fails: %v", err)
		}
	})
}
