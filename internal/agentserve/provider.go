package agentserve

import (
	"context"
	"fmt"
	"time"

	"github.com/weftnet/weft/internal/agentapi"
	"github.com/weftnet/weft/internal/netpol"
	"github.com/weftnet/weft/internal/probe"
	"github.com/weftnet/weft/internal/version"
)

// provider answers the local API from the agent's status and the probes.
type provider struct{ o *Server }

func (p provider) probes() (map[string]probe.Result, error) {
	p.o.mu.Lock()
	pr, perr := p.o.prober, p.o.probeErr
	p.o.mu.Unlock()
	out := map[string]probe.Result{}
	if pr != nil {
		for _, r := range pr.Results() {
			out[r.Name] = r
		}
	}
	return out, perr
}

func (p provider) Status(context.Context) (agentapi.Status, error) {
	o := p.o
	st := o.agent.Status()
	s := agentapi.Status{
		Node: st.Node, ClusterCIDR: o.cfg.ClusterCIDR, Backend: st.Backend, MTU: st.MTU, UnderlayIP: st.UnderlayIP,
		Datastore: agentapi.Datastore{Kind: o.cfg.DatastoreKind, Endpoint: o.cfg.DatastoreEndpoint,
			Healthy: st.DatastoreError == "", Error: st.DatastoreError, LastContact: st.DatastoreContact},
		Peers: len(st.Peers), Version: version.Version, StartedAt: st.StartTime, Degraded: []string{},
		Dirs: o.cfg.Dirs,
	}
	if err := o.agent.Ready(); err != nil {
		s.Degraded = append(s.Degraded, "not ready: "+err.Error())
	}
	if st.DatastoreError != "" {
		s.Degraded = append(s.Degraded, "datastore: "+st.DatastoreError)
	}
	for _, c := range st.Conflicts {
		s.Degraded = append(s.Degraded, "datastore conflict: "+c.Detail)
	}
	if st.LastReconcileError != "" {
		s.Degraded = append(s.Degraded, "last datapath reconcile failed: "+st.LastReconcileError)
	}
	if st.PolicyError != "" {
		s.Degraded = append(s.Degraded, "NetworkPolicy: "+st.PolicyError)
	}
	if st.Lease != nil {
		s.Subnet = st.Lease.Subnet
		used, free, err := o.addresses(st.Lease.Subnet)
		if err != nil {
			s.Degraded = append(s.Degraded, "IPAM: "+err.Error())
		} else {
			s.Pods, s.AddressesUsed, s.AddressesFree = used, used, free
			if free == 0 {
				s.Degraded = append(s.Degraded, fmt.Sprintf("subnet %s is full: no pod can start here", st.Lease.Subnet))
			}
		}
	}
	results, perr := p.probes()
	if perr != nil {
		s.Degraded = append(s.Degraded, "peer probes not running: "+perr.Error())
	}
	for _, peer := range st.Peers {
		if peer.Refused != "" {
			s.Refused++
			s.Degraded = append(s.Degraded, fmt.Sprintf("peer %s: record refused (%s): %s", peer.Name, peer.Refused, peer.Reason))
		}
		if r, ok := results[peer.Name]; ok && r.Down {
			s.Unreachable++
			s.Degraded = append(s.Degraded, fmt.Sprintf("peer %s: pods unreachable for %s (%s)",
				peer.Name, time.Since(r.Since).Round(time.Second), r.LastError))
		}
	}
	return s, nil
}

func (p provider) Peers(context.Context) ([]agentapi.Peer, error) {
	st := p.o.agent.Status()
	results, _ := p.probes()
	out := make([]agentapi.Peer, 0, len(st.Peers))
	for _, peer := range st.Peers {
		ap := agentapi.Peer{Name: peer.Name, UnderlayIP: peer.UnderlayIP, Subnet: peer.Subnet,
			Path: peer.Path, PathReason: peer.Reason, Refused: peer.Refused, VTEPMAC: peer.VTEPMAC,
			Device: peer.Device, State: agentapi.Unknown}
		if r, ok := results[peer.Name]; ok {
			ap.SetProbe(r)
		}
		out = append(out, ap)
	}
	return out, nil
}

func (p provider) Policy(_ context.Context, namespace, name string) (netpol.Explanation, error) {
	if p.o.cfg.Policy == nil {
		return netpol.Explanation{}, agentapi.ErrNoPolicy
	}
	return p.o.cfg.Policy(namespace, name)
}
