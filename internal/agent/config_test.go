package agent

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/names"
)

// A config the agent cannot run with is refused before anything is
// touched, with the flag to fix named; a good one gets its defaults.
func TestConfigIsValidatedAndDefaulted(t *testing.T) {
	good := func() Config {
		return Config{NodeName: "n1", ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16")}
	}
	for _, c := range []struct {
		name    string
		change  func(*Config)
		wantErr string // "" for a valid config
	}{
		{"defaults", func(*Config) {}, ""},
		{"no node name", func(c *Config) { c.NodeName = "" }, "--node-name"},
		{"unknown backend", func(c *Config) { c.Backend = "ipip" }, `unknown backend "ipip"`},
		{"every known backend", func(c *Config) { c.Backend = cluster.BackendHostGW }, ""},
		{"no cluster CIDR", func(c *Config) { c.ClusterCIDR = netip.Prefix{} }, "an IPv4 prefix is required"},
		{"IPv6 cluster CIDR", func(c *Config) { c.ClusterCIDR = netip.MustParsePrefix("fd00::/48") }, "an IPv4 prefix is required"},
		{"IPv6 underlay", func(c *Config) { c.UnderlayIP = netip.MustParseAddr("fd00::1") }, "an IPv4 address is required"},
		{"MTU below IPv4's minimum", func(c *Config) { c.MTU = cluster.MinMTU - 1 }, "must be at least 576"},
		{"MTU at IPv4's minimum", func(c *Config) { c.MTU = cluster.MinMTU }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := good()
			c.change(&cfg)
			err := cfg.setDefaults()
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("err = %v, want one saying %q", err, c.wantErr)
			}
		})
	}

	cfg := good()
	cfg.ClusterCIDR = netip.MustParsePrefix("10.244.7.9/16")
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterCIDR.String() != "10.244.0.0/16" || cfg.Backend != cluster.BackendAuto ||
		cfg.Resync != 30*time.Second || cfg.Logger == nil || cfg.Dirs != names.DefaultDirs() {
		t.Errorf("defaults: cidr %s backend %q resync %s dirs %+v", cfg.ClusterCIDR, cfg.Backend, cfg.Resync, cfg.Dirs)
	}
}
