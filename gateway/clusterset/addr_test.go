package clusterset

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ns%d/svc%d", i%7, i)
	}
	return out
}

// TestAssignIgnoresOrder: the same set of services in any order gets the
// same addresses, each once, all inside the block and usable.
func TestAssignIgnoresOrder(t *testing.T) {
	block := netip.MustParsePrefix("127.77.0.0/24")
	ks := keys(200)
	want, err := Assign(block, ks)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for k, a := range want {
		if !block.Contains(a) || a == block.Addr() || a == netip.MustParseAddr("127.77.0.255") {
			t.Errorf("%s got %s: outside the usable addresses of %s", k, a, block)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share %s", k, other, a)
		}
		seen[a] = k
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := append([]string(nil), ks...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := Assign(block, append(shuffled, shuffled[0]))
		if err != nil {
			t.Fatal(err)
		}
		for k, a := range want {
			if got[k] != a {
				t.Fatalf("%s: %s in one order, %s in another", k, a, got[k])
			}
		}
	}
}

// TestAssignStable: adding services moves no existing one unless a new
// one collides with it and sorts first; in a /16 with a few dozen
// services that is rare, and the known names keep theirs here.
func TestAssignStable(t *testing.T) {
	block := netip.MustParsePrefix("127.77.0.0/16")
	before, err := Assign(block, []string{"demo/ledger", "demo/profile", "demo/echo"})
	if err != nil {
		t.Fatal(err)
	}
	after, err := Assign(block, append(keys(40), "demo/ledger", "demo/profile", "demo/echo"))
	if err != nil {
		t.Fatal(err)
	}
	for k, a := range before {
		if after[k] != a {
			t.Errorf("%s moved from %s to %s", k, a, after[k])
		}
	}
	// Fixed by the hash: documentation and dashboards may quote it.
	if got := before["demo/ledger"].String(); got != "127.77.40.223" {
		t.Errorf("demo/ledger got %s; the hash changed", got)
	}
}

func TestAssignBlocks(t *testing.T) {
	for _, tc := range []struct {
		block string
		n     int
		want  string // an address every key must be, or "" for any in the block
		err   bool
	}{
		{"::1/128", 1, "::1", false},
		{"127.0.0.9/32", 1, "127.0.0.9", false},
		{"127.0.0.8/31", 2, "", false},
		{"127.0.0.8/30", 2, "", false},
		{"127.0.0.8/30", 3, "", true},
		{"fd00:77::/120", 255, "", false},
		{"fd00:77::/120", 256, "", true},
		{"fd00::/48", 50, "", false},
		{"10.0.0.0/8", 50, "", false},
		{"0.0.0.0/0", 1, "", true},
		{"::ffff:127.0.0.0/104", 1, "", true},
	} {
		t.Run(fmt.Sprintf("%s %d", tc.block, tc.n), func(t *testing.T) {
			block := netip.MustParsePrefix(tc.block)
			got, err := Assign(block, keys(tc.n))
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			seen := map[netip.Addr]bool{}
			for k, a := range got {
				if !block.Contains(a) || seen[a] || tc.want != "" && a.String() != tc.want {
					t.Errorf("%s got %s", k, a)
				}
				if block.Addr().Is6() && block.Bits() < 127 && a == block.Addr() {
					t.Errorf("%s got the subnet-router anycast address %s", k, a)
				}
				seen[a] = true
			}
		})
	}
	if err := CheckBlock(netip.MustParsePrefix("127.77.1.0/16")); err == nil {
		t.Error("a block with host bits was accepted")
	}
}
