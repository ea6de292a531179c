package federation

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/straitmesh/strait/internal/configfile"
)

// Config configures a gateway's membership in the gossip pool.
type Config struct {
	// NodeName is this gateway's unique name in the pool. Default: the
	// cluster name followed by the host name.
	NodeName string `mapstructure:"nodeName"`
	// Bind is the TCP and UDP address gossip listens on. Default 0.0.0.0:7946.
	// Port 0 picks a free port (tests).
	Bind string `mapstructure:"bind"`
	// Advertise is the address other gateways reach this one at. Default:
	// the bind address, or the first private address when binding 0.0.0.0.
	Advertise string `mapstructure:"advertise"`
	// Join lists gossip addresses (host:port) of gateways to join at start.
	// Joining is retried in the background until one answers.
	Join []string `mapstructure:"join"`
	// Key is the base64-encoded AES key (16, 24 or 32 bytes) that encrypts
	// all gossip. Empty disables encryption.
	Key string `mapstructure:"key"`
	// Profile picks memberlist timings: "lan" (default; probe 1 s, gossip
	// 200 ms), "wan" (probe 5 s, gossip 500 ms) or "local" (probe 1 s with a
	// 200 ms timeout, gossip 100 ms; one machine).
	Profile string `mapstructure:"profile"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Bind: "0.0.0.0:7946", Profile: "lan"}
}

// Validate reports every problem with c, each naming its key under prefix.
func (c Config) Validate(prefix string) error {
	var errs []error
	if _, _, err := splitHostPort(c.Bind); err != nil {
		errs = append(errs, configfile.Errorf(prefix+"bind", "%v", err))
	}
	if c.Advertise != "" {
		if _, _, err := splitHostPort(c.Advertise); err != nil {
			errs = append(errs, configfile.Errorf(prefix+"advertise", "%v", err))
		}
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, configfile.Errorf(fmt.Sprintf("%sjoin.%d", prefix, i), "want host:port, found %q", j))
		}
	}
	if c.Key != "" {
		if _, err := decodeKey(c.Key); err != nil {
			errs = append(errs, configfile.Errorf(prefix+"key", "%v", err))
		}
	}
	switch c.Profile {
	case "lan", "wan", "local":
	default:
		errs = append(errs, configfile.Errorf(prefix+"profile", "want one of lan, wan, local; found %q", c.Profile))
	}
	return errors.Join(errs...)
}

func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("gossip key is not base64: %v", err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("gossip key is %d bytes, want 16, 24 or 32", len(k))
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want host:port, found %q", addr)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q out of range 0-65535", ps)
	}
	return host, port, nil
}

func memberlistConfig(profile string) *memberlist.Config {
	switch profile {
	case "wan":
		return memberlist.DefaultWANConfig()
	case "local":
		c := memberlist.DefaultLocalConfig()
		c.GossipInterval = 100 * time.Millisecond
		c.ProbeInterval = time.Second
		c.ProbeTimeout = 200 * time.Millisecond
		c.PushPullInterval = 10 * time.Second
		return c
	default:
		return memberlist.DefaultLANConfig()
	}
}
