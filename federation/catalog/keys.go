package catalog

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Key operations, federation-wide. Rotation without downtime is three
// steps, each applied to every gateway before the next: install the new
// key (all gateways accept both), use it (all gateways send with it),
// remove the old one.
const (
	keyInstall byte = 1
	keyUse     byte = 2
	keyRemove  byte = 3
)

// KeyOps names the operations for people and the admin API.
var KeyOps = map[string]byte{"install": keyInstall, "use": keyUse, "remove": keyRemove}

// ErrNoKeyring is returned for key operations on an unencrypted pool.
var ErrNoKeyring = errors.New("gossip is not encrypted: no keyring")

// GenerateKey returns a fresh random 32-byte key, base64-encoded.
func GenerateKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

type keyringFile struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
}

// keys returns the keys to start with, the primary first.
func (c Config) keys() ([][]byte, error) {
	if c.KeyringFile != "" {
		b, err := os.ReadFile(c.KeyringFile)
		switch {
		case err == nil:
			var kf keyringFile
			if err := json.Unmarshal(b, &kf); err != nil {
				return nil, fmt.Errorf("keyring file %s: %w", c.KeyringFile, err)
			}
			primary, err := DecodeKey(kf.Primary)
			if err != nil {
				return nil, fmt.Errorf("keyring file %s: primary: %w", c.KeyringFile, err)
			}
			out := [][]byte{primary}
			for i, s := range kf.Keys {
				k, err := DecodeKey(s)
				if err != nil {
					return nil, fmt.Errorf("keyring file %s: keys[%d]: %w", c.KeyringFile, i, err)
				}
				if !bytes.Equal(k, primary) {
					out = append(out, k)
				}
			}
			return out, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("read keyring file: %w", err)
		}
	}
	if c.Key == "" {
		return nil, fmt.Errorf("no gossip key: set key, or a keyringFile that exists")
	}
	k, err := DecodeKey(c.Key)
	if err != nil {
		return nil, err
	}
	return [][]byte{k}, nil
}

// KeyFingerprint names a gossip key without revealing it: "sha256:" and
// the first 8 bytes of the SHA-256 of the key's bytes, in hex. What is not
// a valid key is fingerprinted as its text, so the result never echoes
// its input.
func KeyFingerprint(key string) string {
	b, err := DecodeKey(key)
	if err != nil {
		b = []byte(key)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// KeyStatus lists the installed keys.
type KeyStatus struct {
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
}

// Keys returns the installed gossip keys (base64) and which is primary.
func (c *Catalog) Keys() (KeyStatus, error) {
	if c.keyring == nil {
		return KeyStatus{}, ErrNoKeyring
	}
	st := KeyStatus{Primary: base64.StdEncoding.EncodeToString(c.keyring.GetPrimaryKey())}
	for _, k := range c.keyring.GetKeys() {
		st.Keys = append(st.Keys, base64.StdEncoding.EncodeToString(k))
	}
	sort.Strings(st.Keys)
	return st, nil
}

// KeyResult is the outcome of a key operation on every gateway: gateways
// that failed or did not answer, with the reason.
type KeyResult struct {
	Op       string            `json:"op"`
	Applied  []string          `json:"applied"`
	Failed   map[string]string `json:"failed,omitempty"`
	Complete bool              `json:"complete"`
}

// KeyOp applies a key operation here and on every alive gateway, and waits
// until all have answered or ctx ends.
func (c *Catalog) KeyOp(ctx context.Context, op string, key string) (KeyResult, error) {
	code, ok := KeyOps[op]
	if !ok {
		return KeyResult{}, fmt.Errorf("unknown key operation %q (want install, use or remove)", op)
	}
	raw, err := DecodeKey(key)
	if err != nil {
		return KeyResult{}, err
	}
	if err := c.applyKeyOp(code, raw); err != nil {
		return KeyResult{}, fmt.Errorf("%s key on %s: %w", op, c.name, err)
	}
	res := KeyResult{Op: op, Applied: []string{c.name}, Failed: map[string]string{}}
	idb := make([]byte, 8)
	_, _ = rand.Read(idb)
	id := hex.EncodeToString(idb)
	acks := make(chan keyAck, 1024)
	c.mu.Lock()
	c.keyWaits[id] = acks
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.keyWaits, id)
		c.mu.Unlock()
	}()
	kop := &keyOp{ID: id, From: c.name, Op: code, Key: raw}
	if err := c.signer.signKeyOp(kop); err != nil {
		return res, err
	}
	msg := encodeMessage(&message{Kind: kindKeyOp, KeyOp: kop})
	pending := map[string]bool{}
	for _, m := range c.members() {
		if m.Name == c.name {
			continue
		}
		pending[m.Name] = true
		if err := c.ml.SendReliable(m, msg); err != nil {
			res.Failed[m.Name] = "send: " + err.Error()
			delete(pending, m.Name)
		}
	}
	for len(pending) > 0 {
		select {
		case a := <-acks:
			if !pending[a.Node] {
				continue
			}
			delete(pending, a.Node)
			if a.Err != "" {
				res.Failed[a.Node] = a.Err
			} else {
				res.Applied = append(res.Applied, a.Node)
			}
		case <-ctx.Done():
			for n := range pending {
				res.Failed[n] = "no answer: " + ctx.Err().Error()
			}
			pending = nil
		}
	}
	sort.Strings(res.Applied)
	res.Complete = len(res.Failed) == 0
	c.metrics.keyOps.WithLabelValues(op).Inc()
	c.log.Info("gossip key operation", "op", op, "applied", len(res.Applied), "failed", len(res.Failed))
	return res, nil
}

func (c *Catalog) applyKeyOp(op byte, key []byte) error {
	if c.keyring == nil {
		return ErrNoKeyring
	}
	var err error
	switch op {
	case keyInstall:
		err = c.keyring.AddKey(key)
	case keyUse:
		err = c.keyring.UseKey(key)
	case keyRemove:
		err = c.keyring.RemoveKey(key)
	}
	if err != nil {
		return err
	}
	return c.saveKeyring()
}

// saveKeyring writes the keyring file atomically, if one is configured.
func (c *Catalog) saveKeyring() error {
	if c.cfg.KeyringFile == "" {
		return nil
	}
	st, err := c.Keys()
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(keyringFile(st), "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(c.cfg.KeyringFile), ".keyring-*")
	if err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save keyring: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save keyring: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.cfg.KeyringFile); err != nil {
		return fmt.Errorf("save keyring: %w", err)
	}
	return nil
}

// handleKeyOp applies a peer's key operation and answers it.
//
// Key operations reach a catalog only from KeyOp (the admin API, behind
// its operator token) or from a peer's signed key operation: with
// signing on, a member that holds the gossip key but no gateway
// certificate of the federation cannot install, switch or remove keys.
func (c *Catalog) handleKeyOp(op *keyOp) {
	ack := keyAck{ID: op.ID, Node: c.name}
	c.mu.Lock()
	reason := c.verifier.verifyKeyOp(op, c.now())
	c.mu.Unlock()
	if reason != "" {
		c.metrics.rejected.WithLabelValues(reason).Inc()
		c.log.Warn("refused gossip key operation", "reason", reason, "peer", op.From)
		ack.Err = "refused: " + reason
	} else if err := c.applyKeyOp(op.Op, op.Key); err != nil {
		ack.Err = err.Error()
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		for _, m := range c.members() {
			if m.Name == op.From {
				if err := c.ml.SendReliable(m, encodeMessage(&message{Kind: kindKeyAck, KeyAck: &ack})); err != nil {
					c.log.Warn("answer key operation", "peer", op.From, "err", err)
				}
				return
			}
		}
	}()
}

func (c *Catalog) handleKeyAck(a *keyAck) {
	c.mu.Lock()
	ch := c.keyWaits[a.ID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- *a:
		default:
		}
	}
}
