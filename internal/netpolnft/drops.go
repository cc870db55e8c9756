package netpolnft

import "strings"

// Drops are the packets this node's policy dropped since the table was
// made.
type Drops struct {
	// ByPolicy counts, per namespace/name, the packets dropped at the
	// pods the policy isolates. A pod isolated by several policies drops
	// a packet that none of them allows: it counts for each of them.
	ByPolicy map[string]uint64
	// Unknown counts packets to or from a local address that had no
	// verdicts yet (a pod newer than the last compile).
	Unknown uint64
	// Invalid counts packets in no connection (conntrack's invalid or
	// untracked), to or from a local address while policies exist.
	Invalid uint64
}

// ReadDrops reads the drop counters, in the calling thread's namespace.
func ReadDrops() (Drops, error) {
	d := Drops{ByPolicy: map[string]uint64{}}
	rules, err := dumpRules()
	if err != nil {
		return d, err
	}
	for _, r := range rules {
		tag := r.tag
		switch {
		case strings.HasPrefix(tag, tagDrop):
			if p := strings.TrimPrefix(tag, tagDrop); p != "" {
				for _, id := range strings.Split(p, ",") {
					d.ByPolicy[id] += r.packets
				}
			}
		case strings.HasPrefix(tag, tagFixed+"unknown-"):
			d.Unknown += r.packets
		case strings.HasPrefix(tag, tagFixed+"untracked-"):
			d.Invalid += r.packets
		}
	}
	return d, nil
}
