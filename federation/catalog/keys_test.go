package catalog

import (
	"regexp"
	"strings"
	"testing"
)

func TestKeyFingerprint(t *testing.T) {
	a, _ := GenerateKey()
	b, _ := GenerateKey()
	fa := KeyFingerprint(a)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{16}$`).MatchString(fa) {
		t.Fatalf("fingerprint %q", fa)
	}
	if fa != KeyFingerprint(a) || fa == KeyFingerprint(b) {
		t.Fatalf("fingerprints not stable or not distinct: %s %s", fa, KeyFingerprint(b))
	}
	// The documented value of the example key, so a fingerprint can be
	// checked by hand: printf %s KEY | base64 -d | sha256sum | cut -c1-16.
	if got := KeyFingerprint("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="); got != "sha256:3eb1bd439947eb76" {
		t.Errorf("fingerprint of the example key %s", got)
	}
	for _, bad := range []string{"not-base64!", "c2hvcnQ="} {
		if f := KeyFingerprint(bad); strings.Contains(f, bad) || !strings.HasPrefix(f, "sha256:") {
			t.Errorf("fingerprint of %q: %q", bad, f)
		}
	}
}
