package record

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sync"
)

const (
	labelClientTraffic = "CLIENT_TRAFFIC_SECRET_0"
	labelServerTraffic = "SERVER_TRAFFIC_SECRET_0"
	maxKeyLogLine      = 512 // a label, a 32-byte random and a 64-byte secret in hex fit with room
)

// Capture is a tls.Config.KeyLogWriter for one connection: it keeps the
// first application traffic secrets of both sides (the NSS key log labels
// CLIENT_TRAFFIC_SECRET_0 and SERVER_TRAFFIC_SECRET_0) and nothing else.
// Other labels are checked for form and dropped. A malformed line makes
// Write fail, which fails the handshake. Capture is safe for concurrent use;
// Switch takes the secrets out of it.
type Capture struct {
	mu             sync.Mutex
	partial        []byte // an unterminated line, until its newline arrives
	client, server []byte
}

// Write parses NSS key log lines.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(c.partial)+len(p) > maxKeyLogLine {
				c.partial = nil
				return 0, fmt.Errorf("tls record: key log line longer than %d bytes", maxKeyLogLine)
			}
			c.partial = append(c.partial, p...)
			return n, nil
		}
		line := p[:i]
		if len(c.partial) > 0 {
			line = append(c.partial, line...)
			c.partial = nil
		}
		if err := c.parse(line); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return n, nil
}

func (c *Capture) parse(line []byte) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] == '#' {
		return nil
	}
	f := bytes.Fields(line)
	if len(f) != 3 {
		return fmt.Errorf("tls record: key log line has %d fields, want 3 (label, client random, secret)", len(f))
	}
	random, err := hex.DecodeString(string(f[1]))
	if err != nil || len(random) != 32 {
		return fmt.Errorf("tls record: key log %s: client random is not 32 bytes of hex", f[0])
	}
	secret, err := hex.DecodeString(string(f[2]))
	if err != nil || len(secret) == 0 {
		return fmt.Errorf("tls record: key log %s: secret is not hex", f[0])
	}
	switch string(f[0]) {
	case labelClientTraffic:
		c.client = secret
	case labelServerTraffic:
		c.server = secret
	}
	return nil
}

// take returns the captured client and server traffic secrets and forgets them.
func (c *Capture) take() (client, server []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	client, server = c.client, c.server
	c.client, c.server = nil, nil
	return client, server
}

// Forget drops the captured secrets, for a connection that stays with
// crypto/tls: nothing outside crypto/tls keeps its keys.
func (c *Capture) Forget() {
	client, server := c.take()
	clear(client)
	clear(server)
}
