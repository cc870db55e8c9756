package netpol

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Compile computes the node's desired State from the cluster's policies,
// pods and namespaces. It never fails: inputs are checked where they are
// decoded.
func Compile(in Input) *State { return (&Compiler{}).Compile(in) }

// Compile is the package's Compile, with the Compiler's memory: the
// chains of a namespace whose local pods and policies did not change since
// the previous compile are taken as they were (see nsChains), and so are
// the sets whose inputs did not change.
func (k *Compiler) Compile(in Input) *State {
	c := newCompilation(in)
	c.prev = k
	// Sized as last time: growing maps of thousands of pods is most of
	// what an unchanged namespace costs.
	c.st.Ingress, c.st.Egress = make(map[netip.Addr]string, k.sizes[0]), make(map[netip.Addr]string, k.sizes[1])
	c.st.Known = make([]netip.Addr, 0, k.sizes[2])
	c.nextAddrs, c.nextTuples = map[string]cached[[]netip.Addr]{}, map[string]cached[[]Tuple]{}
	nextNS := map[string]*nsChains{}
	defer func() { k.addrs, k.tuples, k.ns = c.nextAddrs, c.nextTuples, nextNS }()
	st := c.st
	st.NodeCIDRs = slices.Clone(in.NodeCIDRs)
	st.Guarded = len(in.Policies) > 0

	// A policy only ever selects pods of its own namespace, and a chain
	// only holds what its pods' own namespace's policies say: so the
	// chains are made namespace by namespace, and a namespace is made
	// again only when its local pods or its policies changed.
	byNS := map[string][]*Policy{}
	for i := range in.Policies {
		p := &in.Policies[i]
		byNS[p.Namespace] = append(byNS[p.Namespace], p)
	}
	for _, ns := range sortedKeys(c.local) {
		pols := byNS[ns]
		sort.Slice(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
		fp := c.fpLocal[ns]
		for _, p := range pols {
			fp += mix(policyFP(p))
		}
		r, ok := k.ns[ns]
		if !ok || r.fp != fp {
			r = c.compileNS(c.local[ns], pols)
			r.fp = fp
		}
		nextNS[ns] = r
		c.merge(r)
		for _, pod := range c.local[ns] {
			st.Known = append(st.Known, pod.IP)
		}
	}
	sortAddrs4(st.Known)
	k.sizes = [3]int{len(st.Ingress), len(st.Egress), len(st.Known)}
	return st
}

// sortAddrs4 sorts IPv4 addresses as numbers, several times faster than
// by Compare on the thousands of a large node.
func sortAddrs4(as []netip.Addr) {
	ns := make([]uint32, len(as))
	for i, a := range as {
		b := a.As4()
		ns[i] = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	}
	slices.Sort(ns)
	for i, n := range ns {
		as[i] = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	}
}

// nsChains is what one namespace's policies make for its local pods: the
// pods' chains, the chains, the sets named by their content, and the
// requests for the sets whose members are pods (filled, or taken from the
// previous compile, at every compile: their members live in any
// namespace).
type nsChains struct {
	fp       uint64
	ingress  map[netip.Addr]string
	egress   map[netip.Addr]string
	chains   map[string]*Chain
	cidrSets map[string][]AddrRange
	portSets map[string][]PortRange
	addrReqs []addrReq
	tupleReq []tupleReq
}

// The requests name the policy's namespace, not the policy: a cached
// request outlives the Input it was made from.
type addrReq struct {
	ns string
	pe Peer
}

type tupleReq struct {
	ns    string
	peers []Peer
	pt    Port
}

// compileNS makes the chains of the local pods of one namespace under its
// policies (sorted by name).
func (c *compilation) compileNS(local []*Pod, pols []*Policy) *nsChains {
	r := &nsChains{ingress: map[netip.Addr]string{}, egress: map[netip.Addr]string{},
		chains: map[string]*Chain{}, cidrSets: map[string][]AddrRange{}, portSets: map[string][]PortRange{}}
	c.out = r
	defer func() { c.out = nil }()
	for _, pod := range local {
		var in, out []*Policy
		for _, p := range pols {
			if (!p.IngressIsolates && !p.EgressIsolates) || !p.PodSelector.Matches(pod.Labels) {
				continue
			}
			if p.IngressIsolates {
				in = append(in, p)
			}
			if p.EgressIsolates {
				out = append(out, p)
			}
		}
		if len(in) > 0 {
			r.ingress[pod.IP] = c.chain(In, pod, in)
		}
		if len(out) > 0 {
			r.egress[pod.IP] = c.chain(Out, pod, out)
		}
	}
	return r
}

// merge adds a namespace's chains to the State and fills the pod sets
// they use.
func (c *compilation) merge(r *nsChains) {
	st := c.st
	for a, ch := range r.ingress {
		st.Ingress[a] = ch
	}
	for a, ch := range r.egress {
		st.Egress[a] = ch
	}
	for name, ch := range r.chains {
		st.Chains[name] = ch
	}
	for name, v := range r.cidrSets {
		st.CIDRSets[name] = v
	}
	for name, v := range r.portSets {
		st.PortSets[name] = v
	}
	for _, q := range r.addrReqs {
		c.podPeerSet(q.ns, q.pe)
	}
	for _, q := range r.tupleReq {
		c.namedPortSet(q.ns, q.peers, q.pt)
	}
}

// compilation is one compile: its input indexed for the questions
// policies ask (pods by namespace, namespaces' labels, fingerprints), the
// State it builds, and memos of what it made, so that identical rules,
// chains and sets are made once. A Compiler runs one per Compile and
// hands it the sets of the previous one.
type compilation struct {
	in     Input
	st     *State
	nsLbl  map[string]map[string]string
	byNS   map[string][]*Pod // every selectable pod, by namespace
	all    []*Pod
	local  map[string][]*Pod // this node's selectable pods, by namespace
	peers  map[string][]*Pod // pod peer key → its pods
	chains map[string]string // chain content key → name
	rules  map[ruleMemo][]VRule
	// byPolicies maps the policies (and named-port numbers) a pod's
	// chain comes from to the chain's name.
	byPolicies map[string]string

	// Fingerprints of the inputs that sets are computed from: the
	// selectable pods of each namespace, of all namespaces, and the
	// namespaces' labels. prev's sets with the same fingerprint are
	// reused; next collects this compile's sets for the next one.
	nsNames              []string            // namespaces with selectable pods, sorted
	nsMatch              map[string][]string // namespace selector → matching nsNames
	fpNS                 map[string]uint64
	fpLocal              map[string]uint64 // this node's selectable pods, by namespace
	fpPods, fpNamespaces uint64
	prev                 *Compiler
	nextAddrs            map[string]cached[[]netip.Addr]
	nextTuples           map[string]cached[[]Tuple]
	// out collects what the namespace being compiled makes.
	out *nsChains
}

// ruleMemo identifies a compiled rule: the same for every pod a policy
// selects, except that ingress named ports resolve to each pod's numbers.
type ruleMemo struct {
	p     *Policy
	dir   Direction
	index int
	named string
}

// ruleFor is rule, computed once per policy rule and named-port numbers.
func (c *compilation) ruleFor(dir Direction, pod *Pod, p *Policy, index int, r Rule) []VRule {
	key := ruleMemo{p: p, dir: dir, index: index}
	if dir == In {
		for _, pt := range r.Ports {
			if pt.Name != "" {
				n, _ := pod.port(pt.Name, pt.Protocol)
				key.named += pt.Name + "=" + strconv.Itoa(int(n)) + ","
			}
		}
	}
	if vr, ok := c.rules[key]; ok {
		return vr
	}
	vr := c.rule(dir, pod, p, r)
	c.rules[key] = vr
	return vr
}

func newCompilation(in Input) *compilation {
	c := &compilation{in: in, nsLbl: map[string]map[string]string{},
		byNS: map[string][]*Pod{}, local: map[string][]*Pod{}, fpNS: map[string]uint64{}, fpLocal: map[string]uint64{}, nsMatch: map[string][]string{},
		peers: map[string][]*Pod{}, chains: map[string]string{}, rules: map[ruleMemo][]VRule{}, byPolicies: map[string]string{},
		st: &State{AddrSets: map[string][]netip.Addr{}, CIDRSets: map[string][]AddrRange{},
			TupleSets: map[string][]Tuple{}, PortSets: map[string][]PortRange{},
			Chains: map[string]*Chain{}, Ingress: map[netip.Addr]string{}, Egress: map[netip.Addr]string{}}}
	for _, ns := range in.Namespaces {
		c.nsLbl[ns.Name] = ns.Labels
		c.fpNamespaces += fingerprint(ns.Name, ns.Labels, nil, netip.Addr{})
	}
	for i := range in.Pods {
		p := &in.Pods[i]
		// Only pods with an IPv4 address of their own take part: Weft's
		// pod network is IPv4, and host-network pods are not selectable.
		if p.HostNetwork || !p.IP.Is4() {
			continue
		}
		c.byNS[p.Namespace] = append(c.byNS[p.Namespace], p)
		c.all = append(c.all, p)
		fp := fingerprint(p.Namespace+"/"+p.Name, p.Labels, p.Ports, p.IP)
		c.fpNS[p.Namespace] += fp
		c.fpPods += fp
		if p.Node == in.Node && inAny(in.NodeCIDRs, p.IP) {
			c.local[p.Namespace] = append(c.local[p.Namespace], p)
			c.fpLocal[p.Namespace] += mix(fp)
		}
	}
	c.nsNames = sortedKeys(c.byNS)
	return c
}

// nsLabels returns a namespace's labels. A namespace the informer has not
// delivered yet still carries the label the API server puts on every
// namespace, so that selectors on the name work from the start.
func (c *compilation) nsLabels(name string) map[string]string {
	if l, ok := c.nsLbl[name]; ok {
		return l
	}
	return map[string]string{"kubernetes.io/metadata.name": name}
}

// chain returns the name of the chain that holds pod's verdicts for dir
// under the given policies, making it when no pod needed it before. Pods
// with the same rules (and policies) share one chain.
func (c *compilation) chain(dir Direction, pod *Pod, pols []*Policy) string {
	// Pods selected by the same policies, whose named ports (if any rule
	// names one) resolve alike, get the same chain: found without
	// compiling their rules again.
	var mk strings.Builder
	mk.WriteByte(byte('0' + dir))
	for _, p := range pols {
		mk.WriteString("|" + p.ID())
		if dir != In {
			continue
		}
		for _, r := range p.Ingress {
			for _, pt := range r.Ports {
				if pt.Name != "" {
					n, _ := pod.port(pt.Name, pt.Protocol)
					mk.WriteString("," + strconv.Itoa(int(n)))
				}
			}
		}
	}
	if name, ok := c.byPolicies[mk.String()]; ok {
		return name
	}
	name := c.compileChain(dir, pod, pols)
	c.byPolicies[mk.String()] = name
	return name
}

func (c *compilation) compileChain(dir Direction, pod *Pod, pols []*Policy) string {
	seen := map[string]bool{}
	var rules []VRule
	ids := make([]string, len(pols))
	for i, p := range pols {
		ids[i] = p.ID()
		rs := p.Ingress
		if dir == Out {
			rs = p.Egress
		}
		for i := range rs {
			for _, vr := range c.ruleFor(dir, pod, p, i, rs[i]) {
				if k := vr.Key(); !seen[k] {
					seen[k] = true
					rules = append(rules, vr)
				}
			}
		}
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].Key() < rules[j].Key() })
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(dir)))
	for _, id := range ids {
		b.WriteString("|" + id)
	}
	for _, r := range rules {
		b.WriteString("|" + r.Key())
	}
	key := b.String()
	if name, ok := c.chains[key]; ok {
		return name
	}
	prefix := "in-"
	if dir == Out {
		prefix = "eg-"
	}
	name := prefix + hash(key)
	c.chains[key] = name
	c.out.chains[name] = &Chain{Dir: dir, Policies: ids, Rules: rules}
	return name
}

// rule compiles one from/to rule of p for pod: one VRule per peer and
// protocol. Ingress named ports are resolved on pod itself; egress named
// ports on each destination pod, which is why they become tuple sets.
func (c *compilation) rule(dir Direction, pod *Pod, p *Policy, r Rule) []VRule {
	type peerRef struct {
		kind PeerKind
		set  string
	}
	var refs []peerRef
	if len(r.Peers) == 0 {
		refs = []peerRef{{AnyPeer, ""}}
	}
	for _, pe := range r.Peers {
		if pe.IPBlock != nil {
			ranges := blockRanges(*pe.IPBlock)
			if ranges == nil {
				continue // an IPv6 block never matches an IPv4 pod's traffic
			}
			name := "cidr-" + hash(rangesKey(ranges))
			c.out.cidrSets[name] = ranges
			refs = append(refs, peerRef{CIDRPeer, name})
			continue
		}
		c.out.addrReqs = append(c.out.addrReqs, addrReq{p.Namespace, pe})
		refs = append(refs, peerRef{AddrPeer, "pods-" + hash(peerKey(p.Namespace, pe))})
	}

	// Numbered ports, grouped per protocol; a protocol with a port-less
	// entry allows all its ports.
	ranges := map[uint8][]PortRange{}
	allPorts := map[uint8]bool{}
	var named []Port
	for _, pt := range r.Ports {
		switch {
		case pt.Name != "" && dir == Out:
			named = append(named, pt)
		case pt.Name != "":
			if n, ok := pod.port(pt.Name, pt.Protocol); ok {
				ranges[pt.Protocol] = append(ranges[pt.Protocol], PortRange{n, n})
			}
		case pt.Port == 0:
			allPorts[pt.Protocol] = true
		default:
			last := pt.Port
			if pt.EndPort > pt.Port {
				last = pt.EndPort
			}
			ranges[pt.Protocol] = append(ranges[pt.Protocol], PortRange{pt.Port, last})
		}
	}
	var out []VRule
	for _, ref := range refs {
		if len(r.Ports) == 0 {
			out = append(out, VRule{Kind: ref.kind, Set: ref.set})
			continue
		}
		for _, proto := range []uint8{TCP, UDP, SCTP} {
			if allPorts[proto] {
				out = append(out, VRule{Kind: ref.kind, Set: ref.set, Proto: proto})
			} else if rs := ranges[proto]; len(rs) > 0 {
				rs = mergePorts(rs)
				name := "port-" + hash(portsKey(rs))
				c.out.portSets[name] = rs
				out = append(out, VRule{Kind: ref.kind, Set: ref.set, Proto: proto, Ports: name})
			}
		}
	}
	for _, pt := range named {
		c.out.tupleReq = append(c.out.tupleReq, tupleReq{p.Namespace, slices.Clone(r.Peers), pt})
		out = append(out, VRule{Kind: TuplePeer, Set: namedPortSetName(p.Namespace, r.Peers, pt)})
	}
	return out
}

// podPeerSet names (and fills, once) the address set of the pods a
// selector peer of policy p chooses.
func (c *compilation) podPeerSet(ns string, pe Peer) string {
	name := "pods-" + hash(peerKey(ns, pe))
	if _, ok := c.st.AddrSets[name]; ok {
		return name
	}
	fp := c.peerFP(ns, pe)
	if old, ok := c.prev.addrs[name]; ok && old.fp == fp {
		c.st.AddrSets[name] = old.v
		c.nextAddrs[name] = old
		return name
	}
	pods := c.peerPods(ns, pe)
	addrs := make([]netip.Addr, 0, len(pods))
	for _, q := range pods {
		addrs = append(addrs, q.IP)
	}
	addrs = sortAddrs(addrs)
	c.st.AddrSets[name] = addrs
	c.nextAddrs[name] = cached[[]netip.Addr]{fp, addrs}
	return name
}

func peerKey(ns string, pe Peer) string {
	scope := "ns=" + ns
	if pe.NamespaceSelector != nil {
		scope = "nssel=" + pe.NamespaceSelector.canonical()
	}
	return scope + " pods=" + pe.PodSelector.canonical()
}

// peerPods lists the pods a selector peer chooses: podSelector alone
// within the policy's namespace, namespaceSelector alone all pods of the
// matching namespaces, both together the matching pods of those
// namespaces.
func (c *compilation) peerPods(ns string, pe Peer) []*Pod {
	key := peerKey(ns, pe)
	if pods, ok := c.peers[key]; ok {
		return pods
	}
	nss := []string{ns}
	if pe.NamespaceSelector != nil {
		nss = c.matchingNamespaces(pe.NamespaceSelector)
	}
	var pods []*Pod
	for _, ns := range nss {
		for _, q := range c.byNS[ns] {
			if pe.PodSelector == nil || pe.PodSelector.Matches(q.Labels) {
				pods = append(pods, q)
			}
		}
	}
	c.peers[key] = pods
	return pods
}

// namedPortSet names (and fills) the set of destination address, protocol
// and port of every pod among peers (all pods when there are none) that
// declares the named port pt.
func (c *compilation) namedPortSet(ns string, peers []Peer, pt Port) string {
	name := namedPortSetName(ns, peers, pt)
	if _, ok := c.st.TupleSets[name]; ok {
		return name
	}
	var fp uint64
	if len(peers) == 0 {
		fp = c.fpPods
	}
	for _, pe := range peers {
		if pe.IPBlock != nil {
			fp += mix(c.fpPods + 1)
		} else {
			fp += mix(c.peerFP(ns, pe))
		}
	}
	if old, ok := c.prev.tuples[name]; ok && old.fp == fp {
		c.st.TupleSets[name] = old.v
		c.nextTuples[name] = old
		return name
	}
	var cands []*Pod
	if len(peers) == 0 {
		cands = c.all
	}
	for _, pe := range peers {
		if pe.IPBlock != nil {
			ranges := blockRanges(*pe.IPBlock)
			for _, q := range c.all {
				if inRanges(ranges, q.IP) {
					cands = append(cands, q)
				}
			}
			continue
		}
		cands = append(cands, c.peerPods(ns, pe)...)
	}
	seen := map[Tuple]bool{}
	var ts []Tuple
	for _, q := range cands {
		if n, ok := q.port(pt.Name, pt.Protocol); ok {
			t := Tuple{q.IP, pt.Protocol, n}
			if !seen[t] {
				seen[t] = true
				ts = append(ts, t)
			}
		}
	}
	sort.Slice(ts, func(i, j int) bool { return tupleLess(ts[i], ts[j]) })
	c.st.TupleSets[name] = ts
	c.nextTuples[name] = cached[[]Tuple]{fp, ts}
	return name
}

// namedPortSetName names the set of a named port pt among peers by its
// definition.
func namedPortSetName(ns string, peers []Peer, pt Port) string {
	var b strings.Builder
	b.WriteString(pt.Name + "/" + strconv.Itoa(int(pt.Protocol)))
	if len(peers) == 0 {
		b.WriteString(" any")
	}
	for _, pe := range peers {
		if pe.IPBlock != nil {
			b.WriteString(" block=" + rangesKey(blockRanges(*pe.IPBlock)))
		} else {
			b.WriteString(" " + peerKey(ns, pe))
		}
	}
	return "named-" + hash(b.String())
}

// port resolves a named containerPort of the pod for a protocol.
func (p *Pod) port(name string, proto uint8) (uint16, bool) {
	for _, np := range p.Ports {
		if np.Name == name && np.Protocol == proto {
			return np.Port, true
		}
	}
	return 0, false
}

func tupleLess(a, b Tuple) bool {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c < 0
	}
	if a.Proto != b.Proto {
		return a.Proto < b.Proto
	}
	return a.Port < b.Port
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortAddrs(a []netip.Addr) []netip.Addr {
	slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) })
	return slices.Compact(a)
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
