package catalog

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
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
	// and authenticates all gossip. Required unless KeyringFile holds keys
	// or Insecure is set.
	Key string `mapstructure:"key"`
	// KeyringFile persists the keyring across restarts, so keys installed
	// or switched at runtime (strait keys ...) survive. When the file
	// exists it takes precedence over Key.
	KeyringFile string `mapstructure:"keyringFile"`
	// Insecure runs gossip unencrypted. For development only.
	Insecure bool `mapstructure:"insecure"`
	// Profile picks the timings: "lan" (default), "wan" or "local" (one
	// machine). See docs/configuration.md for what each sets.
	Profile string `mapstructure:"profile"`
	// TombstoneTTL is how long deleted services and departed gateways are
	// remembered before they are collected. Default 1h.
	TombstoneTTL time.Duration `mapstructure:"tombstoneTTL"`
	// UnknownTTL is how long a gateway heard of only through others (never
	// seen alive by this gateway's failure detector) is kept before it is
	// collected. Default 10m.
	UnknownTTL time.Duration `mapstructure:"unknownTTL"`

	// Overrides of the profile's timings; zero keeps the profile's value.
	ProbeInterval    time.Duration `mapstructure:"probeInterval"`
	ProbeTimeout     time.Duration `mapstructure:"probeTimeout"`
	SuspicionMult    int           `mapstructure:"suspicionMult"`
	GossipInterval   time.Duration `mapstructure:"gossipInterval"`
	GossipNodes      int           `mapstructure:"gossipNodes"`
	PushPullInterval time.Duration `mapstructure:"pushPullInterval"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Bind: "0.0.0.0:7946", Profile: "lan", TombstoneTTL: time.Hour, UnknownTTL: 10 * time.Minute}
}

// Validate reports every problem with c, each naming its key under prefix.
func (c Config) Validate(prefix string) error {
	var errs []error
	if _, _, err := configfile.HostPort(c.Bind); err != nil {
		errs = append(errs, configfile.Errorf(prefix+"bind", "%v", err))
	}
	if c.Advertise != "" {
		if _, _, err := configfile.HostPort(c.Advertise); err != nil {
			errs = append(errs, configfile.Errorf(prefix+"advertise", "%v", err))
		}
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, configfile.Errorf(fmt.Sprintf("%sjoin.%d", prefix, i), "want host:port, found %q", j))
		}
	}
	if c.Key != "" {
		if _, err := DecodeKey(c.Key); err != nil {
			errs = append(errs, configfile.Errorf(prefix+"key", "%v", err))
		}
	}
	if c.Key == "" && c.KeyringFile == "" && !c.Insecure {
		errs = append(errs, configfile.Errorf(prefix+"key", "required: gossip is encrypted; generate one with 'strait keys generate' (or set %sinsecure: true, for development only)", prefix))
	}
	if c.Insecure && (c.Key != "" || c.KeyringFile != "") {
		errs = append(errs, configfile.Errorf(prefix+"insecure", "set together with a key: choose one"))
	}
	switch c.Profile {
	case "lan", "wan", "local":
	default:
		errs = append(errs, configfile.Errorf(prefix+"profile", "want one of lan, wan, local; found %q", c.Profile))
	}
	if c.TombstoneTTL < time.Second {
		errs = append(errs, configfile.Errorf(prefix+"tombstoneTTL", "must be at least 1s, found %s", c.TombstoneTTL))
	}
	if c.UnknownTTL != 0 && c.UnknownTTL < time.Second {
		errs = append(errs, configfile.Errorf(prefix+"unknownTTL", "must be at least 1s, found %s", c.UnknownTTL))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"probeInterval", c.ProbeInterval}, {"probeTimeout", c.ProbeTimeout}, {"gossipInterval", c.GossipInterval}, {"pushPullInterval", c.PushPullInterval}} {
		if d.v < 0 {
			errs = append(errs, configfile.Errorf(prefix+d.key, "must not be negative, found %s", d.v))
		}
	}
	if c.SuspicionMult < 0 || c.GossipNodes < 0 {
		errs = append(errs, configfile.Errorf(prefix+"suspicionMult", "suspicionMult and gossipNodes must not be negative"))
	}
	if c.ProbeInterval > 0 && c.ProbeTimeout >= c.ProbeInterval {
		errs = append(errs, configfile.Errorf(prefix+"probeTimeout", "%s must be shorter than probeInterval %s", c.ProbeTimeout, c.ProbeInterval))
	}
	return errors.Join(errs...)
}

// DecodeKey parses a base64 gossip key.
func DecodeKey(s string) ([]byte, error) {
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

// memberlistConfig builds memberlist's config from the profile and overrides.
//
// lan: probe every 200ms with a 100ms timeout, suspicion multiplier 2,
// gossip every 100ms to 4 members, push/pull every 15s. A dead gateway is
// declared dead by every member in about 1.2s at 64 gateways (the
// suspicion timeout grows with log10 of the pool size). Packet compression
// is off: catalog messages compress themselves, and compressing every
// probe costs more CPU than it saves.
//
// wan: probe every 1s with a 500ms timeout (room for 300ms round trips),
// multiplier 3, gossip every 200ms to 4 members, push/pull every 30s:
// about 7s to declare a gateway dead at 64 gateways, where memberlist's
// own WAN profile takes over 30s.
//
// local: the lan timings with push/pull every 10s, for many gateways on
// one machine (tests, strait dev).
func (c Config) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	switch c.Profile {
	case "wan":
		mc = memberlist.DefaultWANConfig()
		mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionMult = time.Second, 500*time.Millisecond, 3
		mc.GossipInterval, mc.GossipNodes, mc.PushPullInterval = 200*time.Millisecond, 4, 30*time.Second
	default:
		mc.ProbeInterval, mc.ProbeTimeout, mc.SuspicionMult = 200*time.Millisecond, 100*time.Millisecond, 2
		mc.GossipInterval, mc.GossipNodes, mc.PushPullInterval = 100*time.Millisecond, 4, 15*time.Second
		if c.Profile == "local" {
			mc.PushPullInterval = 10 * time.Second
		}
	}
	mc.EnableCompression = false
	if c.ProbeInterval > 0 {
		mc.ProbeInterval = c.ProbeInterval
	}
	if c.ProbeTimeout > 0 {
		mc.ProbeTimeout = c.ProbeTimeout
	}
	if c.SuspicionMult > 0 {
		mc.SuspicionMult = c.SuspicionMult
	}
	if c.GossipInterval > 0 {
		mc.GossipInterval = c.GossipInterval
	}
	if c.GossipNodes > 0 {
		mc.GossipNodes = c.GossipNodes
	}
	if c.PushPullInterval > 0 {
		mc.PushPullInterval = c.PushPullInterval
	}
	if mc.ProbeTimeout >= mc.ProbeInterval {
		return nil, fmt.Errorf("gossip probe timeout %s must be shorter than the probe interval %s", mc.ProbeTimeout, mc.ProbeInterval)
	}
	return mc, nil
}
