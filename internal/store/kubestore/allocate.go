package kubestore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/weftnet/weft/internal/cluster"
	"github.com/weftnet/weft/internal/store"
)

// Self-allocation, for clusters without node IPAM. Nothing in the API
// server keeps two Nodes from having one podCIDR, so a subnet is first
// claimed with a coordination Lease named after it: creating an object
// whose name is taken fails, which makes the claim atomic across nodes.
// Only then is the subnet written as the Node's podCIDR, guarded by the
// Node's resourceVersion, so that a podCIDR set meanwhile by the
// controller-manager wins. A claim is stale, and taken over, when its
// holder Node is gone or has another podCIDR.

const claimLabel = AnnotationPrefix + "subnet-claim"

func claimName(sub netip.Prefix) string {
	return "weft-subnet-" + strings.NewReplacer(".", "-", "/", "-").Replace(sub.String())
}

func (s *Store) allocate(ctx context.Context, n nodeObj) (netip.Prefix, error) {
	octx, cancel := s.op(ctx)
	defer cancel()
	claimList, err := s.leases.List(octx, metav1.ListOptions{LabelSelector: claimLabel + "=true"})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list subnet claims in %s: %w", s.cfg.Namespace, err)
	}
	nodeList, err := s.nodes.List(octx, metav1.ListOptions{})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list nodes: %w", err)
	}
	podCIDRs := map[string]netip.Prefix{} // every node → its podCIDR, zero if none
	used := map[netip.Prefix]bool{}
	for i := range nodeList.Items {
		// A Node whose podCIDR cannot be read is skipped, as the
		// controller-manager would: it is no reason to allocate nothing.
		other, _ := nodeFrom(&nodeList.Items[i])
		sub, _, _ := podCIDR(other)
		podCIDRs[other.Name] = sub
		if sub.IsValid() {
			used[sub] = true
		}
	}
	byName := map[string]claim{}
	for i := range claimList.Items {
		c := claimFrom(&claimList.Items[i])
		byName[c.Name] = c
		if sub, err := netip.ParsePrefix(c.Subnet); err == nil && c.Holder == n.Name && !used[sub] {
			// Claimed before a restart, not yet recorded on the Node.
			return sub, s.recordPodCIDR(ctx, n, sub)
		}
	}
	for sub := range cluster.Subnets(s.cfg.ClusterCIDR, s.cfg.SubnetLen) {
		if used[sub] {
			continue
		}
		if c, ok := byName[claimName(sub)]; ok {
			if !staleClaim(c, sub, podCIDRs) {
				continue
			}
			uid := c.UID
			if err := s.leases.Delete(octx, c.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
				continue // someone else is taking it over
			}
		}
		if _, err := s.leases.Create(octx, newClaim(claimName(sub), sub.String(), n.Name), metav1.CreateOptions{FieldManager: "weft"}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return netip.Prefix{}, fmt.Errorf("claim subnet %s: %w", sub, err)
		}
		s.log.Info("claimed a subnet (the cluster does not allocate podCIDRs)", "node", n.Name, "subnet", sub)
		return sub, s.recordPodCIDR(ctx, n, sub)
	}
	return netip.Prefix{}, fmt.Errorf("node %s: %w (%s in /%d subnets)", n.Name, store.ErrCIDRExhausted, s.cfg.ClusterCIDR, s.cfg.SubnetLen)
}

// staleClaim: the holder no longer needs the subnet.
func staleClaim(c claim, sub netip.Prefix, podCIDRs map[string]netip.Prefix) bool {
	if c.Holder == "" {
		return true
	}
	// The holder read its own Node before claiming, and the claims were
	// listed before the Nodes: a holder missing from the Nodes was deleted.
	have, exists := podCIDRs[c.Holder]
	if !exists {
		return true
	}
	// A holder without a podCIDR is between claim and record (or will
	// resume its own claim when it restarts).
	return have.IsValid() && have != sub
}

// recordPodCIDR writes sub as the Node's podCIDR, only if the Node has not
// changed since it was read (in particular, got no podCIDR from anyone).
func (s *Store) recordPodCIDR(ctx context.Context, n nodeObj, sub netip.Prefix) error {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
		"spec":     map[string]any{"podCIDR": sub.String(), "podCIDRs": []string{sub.String()}},
	})
	if err != nil {
		return err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	if _, err := s.nodes.Patch(octx, n.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: "weft"}); err != nil {
		return fmt.Errorf("record subnet %s as node %s's podCIDR: %w", sub, n.Name, err)
	}
	return nil
}
