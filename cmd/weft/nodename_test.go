package main

import (
	"os"
	"testing"
)

// The agent and its datastore use one node name, decided once: the flag,
// else NODE_NAME (the DaemonSet's), else the host name.
func TestNodeNameIsResolvedOnce(t *testing.T) {
	host, _ := os.Hostname()
	for _, c := range []struct {
		name, flag, env, want string
	}{
		{"flag wins over NODE_NAME", "node-7", "node-9", "node-7"},
		{"NODE_NAME without the flag", "", "node-9", "node-9"},
		{"host name without either", "", "", host},
		// The flag set to the host name is still the flag: it must not be
		// mistaken for its default (which once sent NODE_NAME to the
		// Kubernetes datastore and the host name to the agent).
		{"flag equal to the host name", host, "node-9", host},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("NODE_NAME", c.env)
			if got := resolveNodeName(c.flag); got != c.want {
				t.Errorf("resolveNodeName(%q) with NODE_NAME=%q = %q, want %q", c.flag, c.env, got, c.want)
			}
		})
	}
}
