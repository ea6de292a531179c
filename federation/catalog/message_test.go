package catalog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleNode(n int) *wireNode {
	wn := &wireNode{nodeHeader: nodeHeader{Node: "n1", Cluster: "c1", Region: "eu-west", Zone: "z", Cloud: "aws", Gateway: "127.0.0.1:15443", Control: "127.0.0.1:15012", Version: 42,
		Full: true, Digest: [digestLen]byte{1, 2, 3}, CertFP: bytes.Repeat([]byte{9}, digestLen), Cert: []byte("der"), Sig: []byte("sig")}}
	for i := range n {
		wn.Records = append(wn.Records, &record{Service: Service{Namespace: "demo", Name: fmt.Sprintf("svc-%d", i),
			Ports: []Port{{Name: "http", Port: 8080, Protocol: "http"}}, Labels: map[string]string{"data-class": "pii-eu"}, Healthy: 1, Total: 2, Weight: 3},
			Version: uint64(100 + i), Deleted: i%7 == 3, Scoped: i%5 == 1, Changed: 1234})
	}
	return wn
}

func TestCodecRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 2000} { // 2000 records crosses the compression threshold
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := sampleNode(n)
			b := encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{in}})
			if n == 2000 && b[4] != flagFlate {
				t.Fatalf("large message not compressed")
			}
			m, err := DecodeMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			out := m.Nodes[0]
			if !reflect.DeepEqual(out.nodeHeader, in.nodeHeader) || len(out.Records) != n {
				t.Fatalf("header %+v, %d records", out.nodeHeader, len(out.Records))
			}
			for i, r := range out.Records {
				w := in.Records[i]
				if !serviceEqual(r.Service, w.Service) || r.Version != w.Version || r.Deleted != w.Deleted || r.Scoped != w.Scoped || r.Changed != w.Changed {
					t.Fatalf("record %d: got %+v, want %+v", i, r, w)
				}
			}
			if n > 1 && fmt.Sprintf("%p", out.Records[0].Labels) != fmt.Sprintf("%p", out.Records[1].Labels) {
				t.Errorf("identical label sets are not shared")
			}
		})
	}
	ko := encodeMessage(&message{Kind: kindKeyOp, KeyOp: &keyOp{ID: "abc", From: "n", Op: keyUse, Key: bytes.Repeat([]byte{7}, 32)}})
	m, err := DecodeMessage(ko)
	if err != nil || m.KeyOp.Op != keyUse || m.KeyOp.From != "n" || len(m.KeyOp.Key) != 32 {
		t.Fatalf("keyop: %+v %v", m, err)
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	good := encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{sampleNode(2)}})
	badNode := sampleNode(1)
	badNode.Records[0].Ports[0].Port = 70000
	unhealthy := sampleNode(1)
	unhealthy.Records[0].Healthy = 5
	noCluster := sampleNode(0)
	noCluster.Cluster = ""
	twoNodes := encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{sampleNode(0), sampleNode(0)}})
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not a catalog message"},
		{"json", []byte(`{"kind":"entry"}`), "not a catalog message"},
		{"future format", append([]byte{'S', 'C', 9}, good[3:]...), "format 9"},
		{"unknown kind", append([]byte{'S', 'C', 2, 99, 0}, good[5:]...), "unknown kind 99"},
		{"unknown flags", append([]byte{'S', 'C', 2, 1, 8}, good[5:]...), "unknown flags"},
		{"truncated", good[:len(good)-3], "truncated"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing bytes"},
		{"bad port", encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{badNode}}), "port 70000 out of range"},
		{"healthy above total", encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{unhealthy}}), "healthy 5, total 2"},
		{"missing cluster", encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{noCluster}}), "cluster: missing"},
		{"delta with two nodes", twoNodes, "delta carries 2 nodes"},
		{"huge count", []byte{'S', 'C', 2, kindState, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}, "exceeds limit"},
		{"huge string", []byte{'S', 'C', 2, kindDelta, 0, 1, 0xff, 0xff, 0xff, 0x7f}, "exceeds limit"},
		{"bad flate", []byte{'S', 'C', 2, kindDelta, flagFlate, 0xff, 0xff}, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeMessage(tc.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

// A decompression bomb is refused once it inflates past the limit.
func TestDecodeRefusesDecompressionBomb(t *testing.T) {
	var nodes []*wireNode
	for range 200 {
		nodes = append(nodes, sampleNode(100))
	}
	b := encodeMessage(&message{Kind: kindState, Nodes: nodes})
	if _, err := decodeMessage(b, int64(len(b))*4); err == nil || !strings.Contains(err.Error(), "decompresses to more than") {
		t.Fatalf("%d compressed bytes with a limit of %d: err = %v", len(b), len(b)*4, err)
	}
	if _, err := decodeMessage(b, MaxMessageBytes); err != nil {
		t.Fatalf("under the limit: %v", err)
	}
}

// FuzzDecodeMessage: malformed gossip never panics, and whatever decodes
// decodes again identically after re-encoding.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{sampleNode(3)}}))
	f.Add(encodeMessage(&message{Kind: kindState, Nodes: []*wireNode{sampleNode(1), sampleNode(0)}}))
	f.Add(encodeMessage(&message{Kind: kindDelta, Nodes: []*wireNode{sampleNode(40)}}))
	f.Add(encodeMessage(&message{Kind: kindKeyOp, KeyOp: &keyOp{ID: "a", From: "b", Op: keyInstall, Key: make([]byte, 16)}}))
	// A header and a key operation carrying a chain of leaf and
	// intermediate, as signed gossip does.
	pki := newTestPKI(f, testTrustDomain)
	var chain []byte
	for _, der := range pki.issue("eu", "b", time.Hour, true).Certificate {
		chain = append(chain, der...)
	}
	fp := sha256.Sum256(chain)
	withChain := sampleNode(2)
	withChain.Full, withChain.CertFP, withChain.Cert, withChain.Sig = true, fp[:], chain, make([]byte, 72)
	f.Add(encodeMessage(&message{Kind: kindState, Nodes: []*wireNode{withChain}}))
	f.Add(encodeMessage(&message{Kind: kindKeyOp, KeyOp: &keyOp{ID: "a", From: "b", Op: keyUse, Key: make([]byte, 32),
		CertFP: fp[:], Cert: chain, Sig: make([]byte, 72)}}))
	f.Add(encodeMessage(&message{Kind: kindKeyAck, KeyAck: &keyAck{ID: "a", Node: "b", Err: "x"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		again, err := DecodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-encoded message fails: %v", err)
		}
		if len(again.Nodes) != len(m.Nodes) {
			t.Fatalf("nodes %d -> %d", len(m.Nodes), len(again.Nodes))
		}
	})
}
