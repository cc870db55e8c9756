// Package names holds the names of everything Weft creates on a node, in
// one place, so that the agent, the plugin, doctor and uninstall agree on
// what is Weft's.
package names

const (
	// Bridge is the node bridge that every pod's host-side veth joins.
	Bridge = "weft0"
	// VXLANDevice is the node's single VXLAN device (its VTEP).
	VXLANDevice = "weft.vxlan"
	// VethPrefix starts the name of every host-side pod veth.
	VethPrefix = "weft"
	// NFTable is the nftables table (family inet) that holds all of Weft's
	// rules; nothing of Weft's lives in any other table.
	NFTable = "weft"
	// RouteProtocol marks every route the agent installs (rtm_protocol), so
	// that reconcile and uninstall find Weft's routes and only those.
	RouteProtocol = 87
	// ConfListName is the CNI network configuration the agent writes.
	ConfListName = "10-weft.conflist"
	// NetworkName is the CNI network's name.
	NetworkName = "weft"
	// PluginType is the CNI plugin binary's name.
	PluginType = "weft-cni"
	// PortmapType is the portmap plugin Weft ships, chained after
	// weft-cni for hostPort: containernetworking's, under a name of
	// Weft's so that installing it never replaces a portmap that the OS
	// or another network owns.
	PortmapType = "weft-portmap"

	DataDir    = "/var/lib/weft"
	RunDir     = "/run/weft"
	CNIConfDir = "/etc/cni/net.d"
	CNIBinDir  = "/opt/cni/bin"

	// VXLANPort is the UDP port VXLAN traffic uses (IANA's).
	VXLANPort = 4789
	// VNI is the VXLAN network identifier of Weft's overlay.
	VNI = 1
	// HealthPort serves /healthz, /readyz (and /metrics unless split).
	HealthPort = 9753
	// MetricsPort serves Prometheus' /metrics (on loopback unless the
	// operator opens it).
	MetricsPort = 9755
	// ProbePort is where agents answer each other's probes over the pod
	// network, at their bridge address.
	ProbePort = 9754
	// APISocket is the agent's local API, relative to RunDir; root only.
	APISocket = "weft.sock"
)
