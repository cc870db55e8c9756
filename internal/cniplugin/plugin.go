// Package cniplugin implements weft-cni's verbs (ADD, DEL, CHECK, GC,
// STATUS) for the CNI spec 1.1.0 and the older versions runtimes still
// send. It owns the pod's veth pair and its addresses and routes inside
// the pod; the bridge belongs to package bridge and the addresses' store
// to package ipam. It never talks to the datastore or the network: what it
// needs is in its config and the node state file.
package cniplugin

import (
	"encoding/json"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/weftnet/weft/internal/cnievents"
	wversion "github.com/weftnet/weft/internal/version"
)

// Versions are the CNI spec versions weft-cni accepts; it answers in the
// version of the config it is given (runtimes such as podman reject a
// result newer than they asked for).
var Versions = version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0")

// About is printed when the binary runs without CNI_COMMAND.
func About() string {
	return "weft-cni " + wversion.Version + ": Weft's CNI plugin (pods on the node bridge)"
}

// Funcs is the plugin's table of verbs for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{
		Add:    reported("ADD", cmdAdd),
		Del:    reported("DEL", cmdDel),
		Check:  reported("CHECK", cmdCheck),
		GC:     reported("GC", cmdGC),
		Status: reported("STATUS", cmdStatus),
	}
}

// started approximates the process's start: the plugin is one process per
// verb, so its run time is what a pod waits for.
var started = time.Now()

// reported sends the verb's outcome to the agent's events socket, when the
// config names one; for ADD and DEL, with the pod and the address given,
// so that the agent applies the pod's NetworkPolicy verdicts before the
// kubelet reports its address. Sending never waits (see cnievents).
func reported(verb string, fn func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		err := checkArgs(verb, args)
		if err == nil {
			err = fn(args)
		}
		var conf struct {
			EventsSocket string `json:"eventsSocket"`
		}
		pod := podOf(verb, args, err == nil)
		if json.Unmarshal(args.StdinData, &conf) == nil && conf.EventsSocket != "" {
			cnievents.Send(conf.EventsSocket, cnievents.Event{Verb: verb, OK: err == nil,
				Seconds: time.Since(started).Seconds(), Pod: pod})
		}
		return err
	}
}
