package names

// Dirs are the directories that hold Weft's files on a node. The agent,
// its plugin, doctor and uninstall must agree on them; the agent reports
// its own in its status (agentapi), so that tools on the node look where
// the agent and its plugin do.
type Dirs struct {
	// Data holds the node state and the plugin's IPAM leases (DataDir).
	Data string `json:"data"`
	// Run holds the agent's API and CNI events sockets (RunDir).
	Run string `json:"run"`
	// CNIConf is the container runtime's CNI config directory (CNIConfDir).
	CNIConf string `json:"cniConf"`
	// CNIBin is the container runtime's CNI plugin directory (CNIBinDir).
	CNIBin string `json:"cniBin"`
}

// DefaultDirs are the directories Weft uses on a node unless told
// otherwise.
func DefaultDirs() Dirs {
	return Dirs{Data: DataDir, Run: RunDir, CNIConf: CNIConfDir, CNIBin: CNIBinDir}
}

// Or fills each of d's empty directories from o.
func (d Dirs) Or(o Dirs) Dirs {
	return Dirs{Data: or(d.Data, o.Data), Run: or(d.Run, o.Run), CNIConf: or(d.CNIConf, o.CNIConf), CNIBin: or(d.CNIBin, o.CNIBin)}
}

func or(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// WithDefaults fills each of d's empty directories with Weft's standard
// path: the one place where those defaults are applied.
func (d Dirs) WithDefaults() Dirs { return d.Or(DefaultDirs()) }
