package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/straitmesh/strait/internal/freeport"
)

// StartTimeout bounds how long the API server may take to become ready.
const StartTimeout = 90 * time.Second

// Admin is the user in system:masters.
const Admin = "admin"

// Options configure a Server.
type Options struct {
	// Users are token users besides Admin. They belong to no group but
	// system:authenticated, so they may do only what RBAC objects grant.
	Users []string
}

// Server is an etcd and a kube-apiserver on loopback.
type Server struct {
	// URL is the API server's address, https://127.0.0.1:port.
	URL string

	t      testing.TB
	dir    string
	bin    string
	args   []string
	caPEM  []byte
	tokens map[string]string
	etcd   *etcd
	api    *exec.Cmd
	apiLog string
}

// Start starts etcd and kube-apiserver with RBAC authorization and waits
// until the API server is ready. Cleanup stops both.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "kubetest-"); err == nil {
		// etcd syncs every write; memory makes that cheap.
		dir = shm
		t.Cleanup(func() { os.RemoveAll(shm) })
	}
	s := &Server{t: t, dir: dir, bin: bin, tokens: map[string]string{}, apiLog: filepath.Join(dir, "apiserver.log")}
	s.etcd = startEtcd(t, dir)
	t.Cleanup(func() {
		s.stopAPI()
		s.etcd.stop()
		if t.Failed() {
			t.Logf("kubetest: kube-apiserver log (end):\n%s", readTail(s.apiLog, 4000))
		}
	})

	port := freeport.Get(t)
	s.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	certFile, keyFile := s.servingCert(t)
	saKey := s.writeKey(t, "service-account.key")
	var lines []string
	for _, u := range append([]string{Admin}, opts.Users...) {
		tok := u + "-" + randHex(t, 16)
		s.tokens[u] = tok
		line := fmt.Sprintf("%s,%s,%s", tok, u, u)
		if u == Admin {
			line += `,"system:masters"`
		}
		lines = append(lines, line)
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{
		"--etcd-servers=" + s.etcd.url,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + certFile, "--tls-private-key-file=" + keyFile,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey, "--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// Loopback has no node to reconcile the kubernetes Service's
		// endpoints against.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--v=1",
	}
	s.startAPI(t)
	return s
}

// Stop kills the API server, as a crash or a lost node would, leaving
// etcd and its data as they are.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	killProcess(s.api)
	s.api = nil
}

// Restart starts the API server again after Stop, on the same address
// and data, and waits until it is ready.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.startAPI(t)
}

func (s *Server) stopAPI() {
	stopProcess(s.api)
	s.api = nil
}

func (s *Server) startAPI(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(s.apiLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: start kube-apiserver: %v", err)
	}
	s.api = cmd
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: s.tlsConfig()}}
	err = waitReady(waitProcess(cmd), StartTimeout, func() bool {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.tokens[Admin])
		resp, err := cl.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		t.Fatalf("kubetest: kube-apiserver %v:\n%s", err, readTail(s.apiLog, 4000))
	}
	t.Logf("kubetest: kube-apiserver %s ready at %s in %s", Version, s.URL, time.Since(start).Round(time.Millisecond))
}

func (s *Server) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// Config returns a client configuration that authenticates as user
// (Admin or one of Options.Users).
func (s *Server) Config(user string) *rest.Config {
	tok, ok := s.tokens[user]
	if !ok {
		s.t.Fatalf("kubetest: no user %q (add it to Options.Users)", user)
	}
	return &rest.Config{Host: s.URL, BearerToken: tok, TLSClientConfig: rest.TLSClientConfig{CAData: s.caPEM},
		QPS: 200, Burst: 400, Timeout: 10 * time.Second}
}

// Kubeconfig writes a kubeconfig file for user and returns its path.
func (s *Server) Kubeconfig(t testing.TB, user string) string {
	t.Helper()
	cfg := s.Config(user)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: user}
	kc.CurrentContext = "kubetest"
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return path
}

// servingCert writes a CA and a serving certificate for 127.0.0.1 signed
// by it, and keeps the CA for clients.
func (s *Server) servingCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubetest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certFile = filepath.Join(s.dir, "serving.crt")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, s.writeKeyOf(t, "serving.key", key)
}

func (s *Server) writeKey(t testing.TB, name string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s.writeKeyOf(t, name, key)
}

func (s *Server) writeKeyOf(t testing.TB, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// waitUntil polls cond every 100ms until it returns true, an error, or
// within passes.
func waitUntil(ctx context.Context, within time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
