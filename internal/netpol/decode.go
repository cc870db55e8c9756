package netpol

import (
	"fmt"
	"net/netip"
	"strconv"
)

// The decoders read the unstructured form of API objects (what the
// dynamic client's informers deliver: map[string]any from JSON, numbers
// as int64 or float64) into the compiler's types. They check what the
// API server checks that the compiler relies on, and say where it failed.

// DecodePolicy reads a networking.k8s.io/v1 NetworkPolicy.
func DecodePolicy(obj map[string]any) (Policy, error) {
	ns, name := meta(obj)
	p := Policy{Namespace: ns, Name: name}
	fail := func(err error) (Policy, error) {
		return Policy{}, fmt.Errorf("networkpolicy %s/%s: %w", ns, name, err)
	}
	spec := mapAt(obj, "spec")
	sel, err := decodeSelector(mapAt(spec, "podSelector"))
	if err != nil {
		return fail(fmt.Errorf("podSelector: %w", err))
	}
	p.PodSelector = *sel
	ingress, egress := listAt(spec, "ingress"), listAt(spec, "egress")
	if types, ok := spec["policyTypes"].([]any); ok && len(types) > 0 {
		for _, t := range types {
			switch t {
			case "Ingress":
				p.IngressIsolates = true
			case "Egress":
				p.EgressIsolates = true
			default:
				return fail(fmt.Errorf("unknown policyType %v", t))
			}
		}
	} else {
		// The API's default: Ingress always, Egress when egress rules exist.
		p.IngressIsolates = true
		p.EgressIsolates = len(egress) > 0
	}
	for i, r := range ingress {
		rule, err := decodeRule(asMap(r), "from")
		if err != nil {
			return fail(fmt.Errorf("ingress[%d]: %w", i, err))
		}
		p.Ingress = append(p.Ingress, rule)
	}
	for i, r := range egress {
		rule, err := decodeRule(asMap(r), "to")
		if err != nil {
			return fail(fmt.Errorf("egress[%d]: %w", i, err))
		}
		p.Egress = append(p.Egress, rule)
	}
	return p, nil
}

func decodeRule(m map[string]any, peersKey string) (Rule, error) {
	var r Rule
	for i, x := range listAt(m, peersKey) {
		pm := asMap(x)
		var pe Peer
		if b := mapAt(pm, "ipBlock"); b != nil {
			blk, err := decodeBlock(b)
			if err != nil {
				return r, fmt.Errorf("%s[%d].ipBlock: %w", peersKey, i, err)
			}
			pe.IPBlock = &blk
		}
		var err error
		if s, ok := pm["podSelector"].(map[string]any); ok {
			if pe.PodSelector, err = decodeSelector(s); err != nil {
				return r, fmt.Errorf("%s[%d].podSelector: %w", peersKey, i, err)
			}
		}
		if s, ok := pm["namespaceSelector"].(map[string]any); ok {
			if pe.NamespaceSelector, err = decodeSelector(s); err != nil {
				return r, fmt.Errorf("%s[%d].namespaceSelector: %w", peersKey, i, err)
			}
		}
		if pe.IPBlock != nil && (pe.PodSelector != nil || pe.NamespaceSelector != nil) {
			return r, fmt.Errorf("%s[%d]: ipBlock cannot be combined with selectors", peersKey, i)
		}
		if pe.IPBlock == nil && pe.PodSelector == nil && pe.NamespaceSelector == nil {
			return r, fmt.Errorf("%s[%d]: a peer needs a podSelector, namespaceSelector or ipBlock", peersKey, i)
		}
		r.Peers = append(r.Peers, pe)
	}
	for i, x := range listAt(m, "ports") {
		pt, err := decodePort(asMap(x))
		if err != nil {
			return r, fmt.Errorf("ports[%d]: %w", i, err)
		}
		r.Ports = append(r.Ports, pt)
	}
	return r, nil
}

func decodeBlock(m map[string]any) (IPBlock, error) {
	s, _ := m["cidr"].(string)
	cidr, err := netip.ParsePrefix(s)
	if err != nil {
		return IPBlock{}, fmt.Errorf("cidr: %w", err)
	}
	b := IPBlock{CIDR: cidr.Masked()}
	for _, x := range listAt(m, "except") {
		s, _ := x.(string)
		e, err := netip.ParsePrefix(s)
		if err != nil {
			return IPBlock{}, fmt.Errorf("except: %w", err)
		}
		b.Except = append(b.Except, e.Masked())
	}
	return b, nil
}

func decodePort(m map[string]any) (Port, error) {
	var pt Port
	proto, err := decodeProtocol(m["protocol"])
	if err != nil {
		return pt, err
	}
	pt.Protocol = proto
	switch v := m["port"].(type) {
	case nil:
	case string:
		if n, err := strconv.Atoi(v); err == nil {
			// The API keeps an int-or-string; "80" as a string is still a
			// name, but no valid port name is all digits, so treat it as
			// the number a user meant.
			if n < 1 || n > 65535 {
				return pt, fmt.Errorf("port %d out of range", n)
			}
			pt.Port = uint16(n)
		} else {
			pt.Name = v
		}
	default:
		n, ok := number(v)
		if !ok || n < 1 || n > 65535 {
			return pt, fmt.Errorf("port %v out of range", v)
		}
		pt.Port = uint16(n)
	}
	if v, ok := m["endPort"]; ok && v != nil {
		n, ok := number(v)
		if !ok || n < 1 || n > 65535 {
			return pt, fmt.Errorf("endPort %v out of range", v)
		}
		if pt.Port == 0 || pt.Name != "" {
			return pt, fmt.Errorf("endPort needs a numbered port")
		}
		if uint16(n) < pt.Port {
			return pt, fmt.Errorf("endPort %d below port %d", n, pt.Port)
		}
		pt.EndPort = uint16(n)
	}
	return pt, nil
}

func decodeProtocol(v any) (uint8, error) {
	switch v {
	case nil, "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %v", v)
}

func decodeSelector(m map[string]any) (*Selector, error) {
	s := &Selector{}
	if ml := mapAt(m, "matchLabels"); len(ml) > 0 {
		s.MatchLabels = map[string]string{}
		for k, v := range ml {
			str, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("matchLabels %s: not a string", k)
			}
			s.MatchLabels[k] = str
		}
	}
	for _, x := range listAt(m, "matchExpressions") {
		em := asMap(x)
		r := Requirement{}
		r.Key, _ = em["key"].(string)
		r.Operator, _ = em["operator"].(string)
		for _, v := range listAt(em, "values") {
			str, _ := v.(string)
			r.Values = append(r.Values, str)
		}
		s.MatchExpressions = append(s.MatchExpressions, r)
	}
	return s, s.validate()
}

// DecodePod reads a v1 Pod. ok is false for a pod that holds no address
// for policy purposes any more (Succeeded or Failed: its IP may already
// belong to another pod).
func DecodePod(obj map[string]any) (pod Pod, ok bool, err error) {
	ns, name := meta(obj)
	pod = Pod{Namespace: ns, Name: name, Labels: labels(obj)}
	spec, status := mapAt(obj, "spec"), mapAt(obj, "status")
	pod.Node, _ = spec["nodeName"].(string)
	pod.HostNetwork, _ = spec["hostNetwork"].(bool)
	switch status["phase"] {
	case "Succeeded", "Failed":
		return pod, false, nil
	}
	if s, _ := status["podIP"].(string); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return pod, false, fmt.Errorf("pod %s/%s: status.podIP: %w", ns, name, err)
		}
		pod.IP = ip
	}
	for _, cs := range [][]any{listAt(spec, "initContainers"), listAt(spec, "containers")} {
		for _, c := range cs {
			for _, x := range listAt(asMap(c), "ports") {
				pm := asMap(x)
				pname, _ := pm["name"].(string)
				n, nok := number(pm["containerPort"])
				if pname == "" || !nok || n < 1 || n > 65535 {
					continue
				}
				proto, err := decodeProtocol(pm["protocol"])
				if err != nil {
					continue // a protocol policy cannot name is no port for it
				}
				pod.Ports = append(pod.Ports, NamedPort{Name: pname, Protocol: proto, Port: uint16(n)})
			}
		}
	}
	return pod, true, nil
}

// DecodeNamespace reads a v1 Namespace.
func DecodeNamespace(obj map[string]any) Namespace {
	_, name := meta(obj)
	return Namespace{Name: name, Labels: labels(obj)}
}

func meta(obj map[string]any) (ns, name string) {
	m := mapAt(obj, "metadata")
	ns, _ = m["namespace"].(string)
	name, _ = m["name"].(string)
	return ns, name
}

func labels(obj map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range mapAt(mapAt(obj, "metadata"), "labels") {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func mapAt(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	return v
}

func listAt(m map[string]any, key string) []any {
	v, _ := m[key].([]any)
	return v
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

func number(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		if n == float64(int64(n)) {
			return int64(n), true
		}
	}
	return 0, false
}
