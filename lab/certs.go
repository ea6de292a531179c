package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/straitmesh/strait/federation/state"
	"github.com/straitmesh/strait/identity"
)

// CertDir is the directory of a gateway's certificate files
// (Spec.CertFiles): cert.pem, key.pem and ca.pem.
func (l *Lab) CertDir(cluster string) string { return filepath.Join(l.certDir, cluster) }

// RotateCert writes a new certificate for the cluster's gateway, issued
// by ca for validity, over its files the way a tool like cert-manager
// does: each file written beside and renamed into place. It returns the
// new certificate's serial (hex).
func (l *Lab) RotateCert(cluster string, ca *identity.CA, validity time.Duration) (string, error) {
	if l.certDir == "" {
		return "", fmt.Errorf("lab: RotateCert needs Spec.CertFiles")
	}
	l.mu.Lock()
	cs, ok := l.specs[cluster]
	g := l.gateways[cluster]
	l.mu.Unlock()
	if !ok || g == nil {
		return "", fmt.Errorf("lab: no gateway for cluster %s", cluster)
	}
	id := identity.ID{Role: identity.RoleGateway, Region: cs.Region, Cluster: cs.Name}
	if st := g.Status(); st.Certificate != nil && st.State != nil && st.State.Voter {
		id.Role = identity.RoleVoter
	}
	certPEM, keyPEM, err := ca.IssueIDPEM(id, validity)
	if err != nil {
		return "", err
	}
	certs, err := identity.ParsePEMCertificates(certPEM)
	if err != nil {
		return "", err
	}
	dir := l.CertDir(cluster)
	if err := replaceFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		return "", err
	}
	if err := replaceFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644); err != nil {
		return "", err
	}
	return identity.SerialHex(certs[0]), nil
}

// WriteRoots replaces the cluster gateway's CA bundle file with the roots
// of cas.
func (l *Lab) WriteRoots(cluster string, cas ...*identity.CA) error {
	var b bytes.Buffer
	for _, ca := range cas {
		b.Write(ca.CertPEM())
	}
	return replaceFile(filepath.Join(l.CertDir(cluster), "ca.pem"), b.Bytes(), 0o644)
}

func replaceFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("lab: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("lab: replace %s: %w", path, err)
	}
	return nil
}

// writeJoinToken has an operator write a join token for cs's gateway
// (retried until the voters have elected a leader) and writes the token
// to file, as `strait ca token` would.
func (l *Lab) writeJoinToken(ctx context.Context, controls []string, cs ClusterSpec, file string) error {
	if len(controls) == 0 {
		return fmt.Errorf("lab: no voter to ask for %s's join token", cs.Name)
	}
	tok, err := identity.NewToken(l.CA.Roots()[0])
	if err != nil {
		return err
	}
	value, err := json.Marshal(state.JoinToken{Cluster: cs.Name, Region: cs.Region, Role: string(identity.RoleGateway),
		SecretHash: tok.SecretHash(), TTLSeconds: 600})
	if err != nil {
		return err
	}
	ops, err := l.Operator(controls[0])
	if err != nil {
		return err
	}
	defer ops.Close()
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = ops.Write(wctx, &state.WriteRequest{Op: state.OpPut, Kind: state.KindJoinToken, Key: tok.ID, Value: string(value)})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: join token for %s: %w", cs.Name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := os.WriteFile(file, []byte(tok.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("lab: write join token: %w", err)
	}
	return nil
}
