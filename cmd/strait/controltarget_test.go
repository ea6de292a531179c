package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlTarget: the CLI reads a gateway's control address and TLS
// files from its config file (other keys, even invalid ones, skipped), the
// environment overrides the file, an all-interfaces address is dialled on
// loopback, and a problem names file:line:column and the key.
func TestControlTarget(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gw.yaml")
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cluster: a\nlisten:\n  data: nonsense\n  control: 0.0.0.0:25012\nservices: [{name: x}]\ntls: {cert: c.pem, key: k.pem, ca: ca.pem}\n")
	ct, err := loadControlTarget(file)
	if err != nil {
		t.Fatal(err)
	}
	if ct.Listen.Control != "127.0.0.1:25012" || ct.TLS.Cert != "c.pem" || ct.TLS.CA != "ca.pem" {
		t.Fatalf("control target %+v", ct)
	}

	t.Setenv("STRAIT_LISTEN_CONTROL", "127.0.0.2:35012")
	if ct, err = loadControlTarget(file); err != nil || ct.Listen.Control != "127.0.0.2:35012" {
		t.Fatalf("STRAIT_LISTEN_CONTROL not applied: %+v, %v", ct, err)
	}
	os.Unsetenv("STRAIT_LISTEN_CONTROL")

	write("listen:\n  control: [1, 2]\ntls: {cert: c.pem, key: k.pem}\n")
	_, err = loadControlTarget(file)
	if err == nil {
		t.Fatal("a control address list and no tls.ca accepted")
	}

	for _, want := range []string{file + ":2:12", "listen.control", "tls.ca", "required to reach the control API"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
