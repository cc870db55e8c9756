package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"

	"github.com/weftnet/weft/internal/atomicfile"
	"github.com/weftnet/weft/internal/cluster"
)

// RootDir holds one directory per lab: its state file, its nodes' data, run
// and CNI directories, its bin directory and its logs. It lives under /run
// so that a reboot, which also removes the lab's namespaces, clears it too.
const RootDir = "/run/weft-lab"

// stateFile is the lab's record of what it made, so that status, exec and
// down work from another process than the one that ran up.
const stateFile = "state.json"

// validName keeps lab names free of '-', so that "<name>-" is a prefix no
// other lab's namespaces can start with, and short enough that every
// namespace name stays readable.
var validName = regexp.MustCompile(`^[a-z][a-z0-9]{0,19}$`)

// CheckName reports whether name can name a lab.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid lab name %q: use 1 to 20 lower-case letters and digits, starting with a letter", name)
	}
	return nil
}

// Dir is the lab's directory.
func Dir(name string) string { return filepath.Join(RootDir, name) }

// State is everything a lab made, as recorded on disk.
type State struct {
	Name    string `json:"name"`
	Dir     string `json:"dir"`
	BinDir  string `json:"binDir"`
	WeftBin string `json:"weftBin"`
	// LabBin is weft-lab, which runs the lab's datastore processes.
	LabBin      string          `json:"labBin"`
	Backend     cluster.Backend `json:"backend"`
	Segments    int             `json:"segments"`
	PodsPerNode int             `json:"podsPerNode"`
	ClusterCIDR netip.Prefix    `json:"clusterCIDR"`
	SubnetLen   int             `json:"subnetLen"`
	LeaseTTL    string          `json:"leaseTTL"`
	// Underlay is the namespace that holds the segments' bridges and the
	// datastore; Router joins two segments (empty with one segment).
	Underlay  string         `json:"underlay"`
	Router    string         `json:"router,omitempty"`
	Datastore DatastoreState `json:"datastore"`
	Nodes     []*NodeState   `json:"nodes"`
	// NextNode numbers the next node, so that a name is never reused
	// within a lab even after a node left.
	NextNode int `json:"nextNode"`
	// PodSyncPID is the process that realises Pod objects bound to the
	// lab's nodes (Kubernetes datastore without --kubelet; see package podsync).
	PodSyncPID int `json:"podSyncPID,omitempty"`
}

// DatastoreState is the lab's datastore process.
type DatastoreState struct {
	Kind     string `json:"kind"`
	PID      int    `json:"pid"`
	Endpoint string `json:"endpoint"`
	DataDir  string `json:"dataDir"`
	Log      string `json:"log"`
}

// NodeState is one node: a namespace wired to an underlay segment, with an
// agent and pods.
type NodeState struct {
	Name       string       `json:"name"`
	Netns      string       `json:"netns"`
	Segment    int          `json:"segment"`
	UnderlayIP netip.Addr   `json:"underlayIP"`
	Dir        string       `json:"dir"`
	AgentPID   int          `json:"agentPID"`
	AgentLog   string       `json:"agentLog"`
	Subnet     netip.Prefix `json:"subnet,omitzero"`
	Pods       []*PodState  `json:"pods"`
	NextPod    int          `json:"nextPod"`
}

// PodState is one pod: a namespace attached by the CNI plugin.
type PodState struct {
	Name        string     `json:"name"`
	Netns       string     `json:"netns"`
	ContainerID string     `json:"containerID"`
	IP          netip.Addr `json:"ip"`
}

// DataDir is the node's data directory; RunDir and CNIConfDir are its run
// and CNI config directories: the directories its agent is told about.
func (n *NodeState) DataDir() string    { return filepath.Join(n.Dir, "data") }
func (n *NodeState) RunDir() string     { return filepath.Join(n.Dir, "run") }
func (n *NodeState) CNIConfDir() string { return filepath.Join(n.Dir, "net.d") }
func (n *NodeState) cacheDir() string   { return filepath.Join(n.Dir, "cni-cache") }

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if _, err := atomicfile.Write(filepath.Join(s.Dir, stateFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save lab state: %w", err)
	}
	return nil
}

// ErrNoLab means no lab of that name is recorded.
var ErrNoLab = errors.New("no such lab")

func loadState(name string) (*State, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(Dir(name), stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("lab %q: %w (nothing under %s)", name, ErrNoLab, Dir(name))
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse lab state %s: %w", filepath.Join(Dir(name), stateFile), err)
	}
	return &s, nil
}

// Node returns the named node.
func (s *State) Node(name string) (*NodeState, error) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("lab %s has no node %q", s.Name, name)
}

// Pods lists every pod of every node, in node order.
func (s *State) Pods() []*PodState {
	var ps []*PodState
	for _, n := range s.Nodes {
		ps = append(ps, n.Pods...)
	}
	return ps
}
