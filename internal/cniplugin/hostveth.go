package cniplugin

// HostVethName is the name of the host-side veth that ADD makes for an
// attachment (container id + interface), for tools that look for a pod's
// traces on the node (weft doctor).
func HostVethName(containerID, ifname string) string { return hostVethName(containerID, ifname) }
