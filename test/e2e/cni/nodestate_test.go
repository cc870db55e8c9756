package cni_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"
	"github.com/weftnet/weft/internal/cnievents"
	"github.com/weftnet/weft/internal/nodestate"
)

func (n *node) status(list *libcni.NetworkConfigList) error {
	return n.do(func() error { return n.cni.GetStatusNetworkList(context.Background(), list) })
}

// Without a subnet in the config the plugin takes subnet, MTU and bridge
// from the node state the agent writes; before that file exists ADD says
// "try again later" (11) and STATUS "not available" (50).
func TestSubnetFromNodeState(t *testing.T) {
	n := newNode(t)
	confBytes := n.netConf("1.1.0", "", nil)
	list, err := libcniList(confBytes)
	if err != nil {
		t.Fatal(err)
	}
	conf := n.conf("1.1.0", "", nil)
	pod := newPod(t)
	if _, err := n.add(conf, rt("early", pod, "eth0")); cniCode(err) != 11 {
		t.Fatalf("ADD before the agent ran: %v", err)
	}
	if err := n.status(list); cniCode(err) != 50 {
		t.Fatalf("STATUS before the agent ran: %v", err)
	}
	assertNothingLeft(t, n)

	bridge := randName(t)
	if _, err := nodestate.Write(n.dataDir, nodestate.State{
		Node: "node-a", Subnet: netip.MustParsePrefix("10.99.40.0/24"), MTU: 1450, Bridge: bridge,
	}); err != nil {
		t.Fatal(err)
	}
	if err := n.status(list); err != nil {
		t.Fatalf("STATUS with node state: %v", err)
	}
	res := n.mustAdd(conf, rt("late", pod, "eth0"))
	assertAttached(t, n, res, pod, bridge, 1450, netip.MustParsePrefix("10.99.40.0/24"))
	if err := n.del(conf, rt("late", pod, "eth0")); err != nil {
		t.Fatal(err)
	}
}

// STATUS is ready only while an ADD could allocate.
func TestStatusFollowsFreeAddresses(t *testing.T) {
	n := newNode(t)
	confBytes := n.netConf("1.1.0", "10.99.41.0/30", nil)
	list, _ := libcniList(confBytes)
	if err := n.status(list); err != nil {
		t.Fatalf("STATUS of an empty subnet: %v", err)
	}
	pod := newPod(t)
	conf := n.conf("1.1.0", "10.99.41.0/30", nil)
	n.mustAdd(conf, rt("only", pod, "eth0"))
	if err := n.status(list); cniCode(err) != 50 {
		t.Fatalf("STATUS of a full subnet: %v", err)
	}
	if err := n.del(conf, rt("only", pod, "eth0")); err != nil {
		t.Fatal(err)
	}
	if err := n.status(list); err != nil {
		t.Fatalf("STATUS after DEL: %v", err)
	}
}

// With "eventsSocket" the plugin reports each verb to the agent; without a
// listener it still works.
func TestEventsSocket(t *testing.T) {
	n := newNode(t)
	path := filepath.Join(t.TempDir(), "cni-events.sock")
	conf := n.conf("1.1.0", "10.99.42.0/24", map[string]any{"eventsSocket": path})
	pod := newPod(t)
	// No listener yet: ADD and DEL must not care.
	n.mustAdd(conf, rt("ev", pod, "eth0"))
	if err := n.del(conf, rt("ev", pod, "eth0")); err != nil {
		t.Fatal(err)
	}

	l, err := cnievents.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n.mustAdd(conf, rt("ev", pod, "eth0"))
	if _, err := n.add(conf, rt("ev2", "/run/netns/wtc-missing", "eth0")); err == nil {
		t.Fatal("ADD into a missing netns succeeded")
	}
	want := []cnievents.Event{{Verb: "ADD", OK: true}, {Verb: "ADD", OK: false}}
	for _, w := range want {
		select {
		case ev := <-l.Events():
			if ev.Verb != w.Verb || ev.OK != w.OK || ev.Seconds <= 0 || ev.Seconds > 60 {
				t.Fatalf("event %+v, want %+v with its duration", ev, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event %+v", w)
		}
	}
}

// The host veth's name is ≤ 15 bytes and stable for the attachment.
func TestHostVethNameIsStable(t *testing.T) {
	n := newNode(t)
	conf := n.conf("1.1.0", "10.99.43.0/24", nil)
	pod := newPod(t)
	first := n.mustAdd(conf, rt("stable", pod, "eth0")).Interfaces[1].Name
	if err := n.del(conf, rt("stable", pod, "eth0")); err != nil {
		t.Fatal(err)
	}
	again := n.mustAdd(conf, rt("stable", pod, "eth0")).Interfaces[1].Name
	if first != again || len(first) > 15 {
		t.Fatalf("host veth %q then %q", first, again)
	}
	var l netlink.Link
	n.do(func() (err error) { l, err = netlink.LinkByName(again); return err })
	if l == nil {
		t.Fatalf("%s not in the node", again)
	}
}
