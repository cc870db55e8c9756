package ipam

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Recovery tells a store what is in use when its lease file is found
// damaged. The spare copy is one write behind: it may miss the newest
// lease, which a pod may already hold, so the spare alone could hand one
// address to two pods.
type Recovery struct {
	// InUse lists what the kernel and the container runtime say holds an
	// address now. A lease with Veth set and no attachment is an address
	// seen on a pod's host veth whose owner is not known.
	InUse func() ([]Lease, error)
	// VethName names an attachment's host veth, to tell which attachment
	// a lease recovered from a veth alone belongs to.
	VethName func(containerID, ifname string) string
}

// WithRecovery makes the store recover with r when its lease file is
// damaged. Without it, a damaged store cannot be written and readers see
// the spare copy.
func (s *Store) WithRecovery(r Recovery) *Store {
	s.rec = r
	return s
}

var errNoRecovery = errors.New("the lease file is damaged and this reader cannot recover it")

// recover rebuilds the state from base (the spare copy) and what is in
// use. Evidence of use wins over the spare: an address in use is leased
// to whoever uses it now, and a lease the spare gives the same attachment
// at another address goes. Leases of the spare that nothing contradicts
// stay: an address kept too long is a leak GC clears, an address handed
// out twice is an outage.
func (s *Store) recover(base state) (state, error) {
	if s.rec.InUse == nil {
		return state{}, fmt.Errorf("ipam store %s: %w", s.dir, errNoRecovery)
	}
	inUse, err := s.rec.InUse()
	if err != nil {
		return state{}, fmt.Errorf("ipam store %s: the lease file is damaged and what is in use cannot be read: %w", s.dir, err)
	}
	st := base
	for _, u := range inUse {
		if !u.Addr.Is4() {
			continue
		}
		st.Leases = slices.DeleteFunc(st.Leases, func(l Lease) bool {
			return l.Addr == u.Addr || s.sameAttachment(l, u)
		})
		if u.Since.IsZero() {
			u.Since = s.now().UTC().Truncate(time.Second)
		}
		st.Leases = append(st.Leases, u)
	}
	return st, nil
}

// setAside keeps the damaged lease file for inspection once the recovered
// state is written: the swap made it the spare.
func (s *Store) setAside() error {
	spare := filepath.Join(s.dir, spareFile)
	if err := os.Rename(spare, filepath.Join(s.dir, badFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ipam store: set aside the damaged lease file: %w", err)
	}
	return nil
}

// owns reports whether l is the lease of attachment (id, ifname),
// including one recovered from its veth alone.
func (s *Store) owns(l Lease, id, ifname string) bool {
	if l.Veth != "" {
		return s.rec.VethName != nil && l.Veth == s.rec.VethName(id, ifname)
	}
	return l.ContainerID == id && l.IfName == ifname
}

// sameAttachment reports whether two leases belong to one attachment.
func (s *Store) sameAttachment(a, b Lease) bool {
	switch {
	case a.Veth == "" && b.Veth == "":
		return a.Key() == b.Key()
	case a.Veth != "" && b.Veth != "":
		return a.Veth == b.Veth
	case a.Veth != "":
		return s.owns(a, b.ContainerID, b.IfName)
	default:
		return s.owns(b, a.ContainerID, a.IfName)
	}
}
