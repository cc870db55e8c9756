package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

const (
	leasesFile = "leases.json"
	spareFile  = ".leases.json.spare"
	lockFile   = "lock"
	// badFile keeps the last lease file that could not be read, for
	// whoever wants to see what a crash left.
	badFile = "leases.json.unreadable"
)

// Dir is where the store of the CNI network named network lives under a
// node's Weft data directory. The plugin, the agent's metrics and doctor
// all find the leases here.
func Dir(dataDir, network string) string {
	return filepath.Join(dataDir, "ipam", network)
}

// Store is the lease file of one network on one node.
type Store struct {
	dir    string
	subnet netip.Prefix
	rec    Recovery
	now    func() time.Time
}

// state is the lease file's content.
type state struct {
	// Last is the most recently allocated address: allocation goes on
	// after it, so a released address is not handed out again at once
	// (neighbours may still have the old pod's MAC for it).
	Last   netip.Addr `json:"last,omitzero"`
	Leases []Lease    `json:"leases"`
}

// Open returns the store kept in dir for subnet. Nothing is created until
// the first allocation.
func Open(dir string, subnet netip.Prefix) (*Store, error) {
	if err := CheckSubnet(subnet); err != nil {
		return nil, err
	}
	return &Store{dir: dir, subnet: subnet, now: time.Now}, nil
}

// OpenForRelease returns the store kept in dir for releasing and reading
// leases only: DEL and GC must work before the node's subnet is known and
// after it changed.
func OpenForRelease(dir string) *Store { return &Store{dir: dir, now: time.Now} }

var errNoSubnet = errors.New("ipam store opened for release only cannot allocate")

// Allocate returns the attachment's lease, making one if it has none. The
// same attachment always gets the same address back, so a retried ADD is
// answered exactly as the first one. existed reports that the lease was
// already there.
func (s *Store) Allocate(id, ifname string) (l Lease, existed bool, err error) {
	if !s.subnet.IsValid() {
		return l, false, errNoSubnet
	}
	err = s.update(func(st *state) (bool, error) {
		for i, old := range st.Leases {
			if s.owns(old, id, ifname) && s.subnet.Contains(old.Addr) {
				if old.Veth == "" {
					l, existed = old, true
					return false, nil
				}
				// A lease recovered from the attachment's veth alone
				// gets its owner back.
				old.ContainerID, old.IfName, old.Veth = id, ifname, ""
				st.Leases[i] = old
				l, existed = old, true
				return true, nil
			}
		}
		// A lease of this attachment outside the subnet is from a subnet
		// the node no longer has: it can never be used again.
		st.Leases = slices.DeleteFunc(st.Leases, func(old Lease) bool {
			return s.owns(old, id, ifname)
		})
		a, ok := s.free(st)
		if !ok {
			return false, fmt.Errorf("subnet %s: %w (%d leases)", s.subnet, ErrFull, len(st.Leases))
		}
		l = Lease{Addr: a, ContainerID: id, IfName: ifname, Since: s.now().UTC().Truncate(time.Second)}
		st.Leases = append(st.Leases, l)
		st.Last = a
		return true, nil
	})
	return l, existed, err
}

// free finds the next unleased address after st.Last, wrapping around.
func (s *Store) free(st *state) (netip.Addr, bool) {
	first, last := span(s.subnet)
	used := make(map[uint32]bool, len(st.Leases))
	for _, l := range st.Leases {
		if l.Addr.Is4() {
			used[u32(l.Addr)] = true
		}
	}
	start := first
	if st.Last.Is4() && s.subnet.Contains(st.Last) && u32(st.Last) >= first && u32(st.Last) < last {
		start = u32(st.Last) + 1
	}
	n := last - first + 1
	for i := uint32(0); i < n; i++ {
		v := first + (start-first+i)%n
		if !used[v] {
			return addr(v), true
		}
	}
	return netip.Addr{}, false
}

// Release drops the attachment's lease. Releasing what is not leased is
// not an error (DEL is idempotent); released reports whether there was one.
func (s *Store) Release(id, ifname string) (released bool, err error) {
	if !s.exists() {
		return false, nil
	}
	err = s.update(func(st *state) (bool, error) {
		n := len(st.Leases)
		st.Leases = slices.DeleteFunc(st.Leases, func(l Lease) bool {
			return s.owns(l, id, ifname)
		})
		released = len(st.Leases) != n
		return released, nil
	})
	return released, err
}

// Retain keeps only the leases valid accepts and returns the ones it
// released (GC). A lease recovered from a veth alone has an empty Key and
// its Veth set: valid decides by the veth's name.
func (s *Store) Retain(valid func(Lease) bool) (released []Lease, err error) {
	if !s.exists() {
		return nil, nil
	}
	err = s.update(func(st *state) (bool, error) {
		st.Leases = slices.DeleteFunc(st.Leases, func(l Lease) bool {
			if valid(l) {
				return false
			}
			released = append(released, l)
			return true
		})
		return len(released) > 0, nil
	})
	return released, err
}

// Get returns the attachment's lease, if it has one.
func (s *Store) Get(id, ifname string) (Lease, bool, error) {
	st, err := s.readLocked()
	if err != nil {
		return Lease{}, false, err
	}
	for _, l := range st.Leases {
		if s.owns(l, id, ifname) {
			return l, true, nil
		}
	}
	return Lease{}, false, nil
}

// Leases returns every lease.
func (s *Store) Leases() ([]Lease, error) {
	st, err := s.readLocked()
	return st.Leases, err
}

// Ready reports whether an ADD could allocate now: the store can be
// locked and written, and the subnet has a free address.
func (s *Store) Ready() error {
	if !s.subnet.IsValid() {
		return errNoSubnet
	}
	return s.update(func(st *state) (bool, error) {
		if _, ok := s.free(st); !ok {
			return false, fmt.Errorf("subnet %s: %w (%d leases)", s.subnet, ErrFull, len(st.Leases))
		}
		return false, nil
	})
}

// exists reports whether anything was ever leased here, so that releasing
// on a node that never allocated creates no files. A spare without a
// lease file is a store a crash damaged, not an empty one.
func (s *Store) exists() bool {
	for _, name := range []string{leasesFile, spareFile} {
		if _, err := os.Stat(filepath.Join(s.dir, name)); err == nil {
			return true
		}
	}
	return false
}

// update runs change on the current state under the lock and writes the
// result when change reports a modification. A damaged lease file is
// recovered first, and the recovered state written even if change
// changes nothing.
func (s *Store) update(change func(*state) (bool, error)) error {
	written, err := s.updateLocked(change)
	if err != nil || !written {
		return err
	}
	// Synced after the lock is released, so that concurrent writers'
	// directory syncs share the filesystem's journal commits instead of
	// queueing one by one. Only then may the caller report the change: a
	// crash before it can lose the swap, never the content (synced
	// before the swap).
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("ipam store: sync %s: %w", s.dir, err)
	}
	return nil
}

func (s *Store) updateLocked(change func(*state) (bool, error)) (written bool, err error) {
	unlock, err := s.lock(unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	defer unlock()
	st, damaged, err := s.read()
	if err != nil {
		return false, err
	}
	if damaged {
		if st, err = s.recover(st); err != nil {
			return false, err
		}
	}
	changed, err := change(&st)
	if err != nil || !(changed || damaged) {
		return false, err
	}
	if err := s.write(st); err != nil {
		return false, err
	}
	if damaged {
		return true, s.setAside()
	}
	return true, nil
}

// readLocked reads under a shared lock: a writer reuses the previous
// lease file's inode as its next spare, so an unlocked reader could see it
// rewritten under its feet.
func (s *Store) readLocked() (state, error) {
	if !s.exists() {
		return state{}, nil
	}
	unlock, err := s.lock(unix.LOCK_SH)
	if err != nil {
		return state{}, err
	}
	st, damaged, err := s.read()
	unlock()
	if err != nil || !damaged {
		return st, err
	}
	if s.rec.InUse == nil {
		// A reader that cannot recover (doctor) sees the last good copy
		// and changes nothing.
		return st, nil
	}
	// Recovery writes: it needs the exclusive lock, and then reads again
	// in case another process recovered first.
	if err := s.update(func(*state) (bool, error) { return false, nil }); err != nil {
		return state{}, err
	}
	unlock, err = s.lock(unix.LOCK_SH)
	if err != nil {
		return state{}, err
	}
	defer unlock()
	st, _, err = s.read()
	return st, err
}

func (s *Store) lock(how int) (func(), error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam store: %w", err)
	}
	path := filepath.Join(s.dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ipam store: open lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ipam store: lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// read returns the lease file's content. damaged reports a lease file
// that is missing beside its spare, empty, or not valid JSON (what a
// crash can leave): st is then the spare's content, the last good version
// but one, or nothing when the spare is unreadable too, and the caller
// must recover before trusting it.
func (s *Store) read() (st state, damaged bool, err error) {
	st, err = readState(filepath.Join(s.dir, leasesFile))
	if err == nil {
		return st, false, nil
	}
	var bad *damagedError
	switch {
	case errors.Is(err, os.ErrNotExist) && !s.exists():
		return state{}, false, nil
	case errors.As(err, &bad), errors.Is(err, os.ErrNotExist):
	default:
		return st, false, fmt.Errorf("ipam store: %w", err)
	}
	spare, err := readState(filepath.Join(s.dir, spareFile))
	if err != nil {
		spare = state{}
	}
	return spare, true, nil
}

// damagedError is a lease file that exists but does not parse.
type damagedError struct {
	path string
	err  error
}

func (e *damagedError) Error() string { return fmt.Sprintf("%s is damaged: %v", e.path, e.err) }

func readState(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if len(b) == 0 {
		return st, &damagedError{path, errors.New("empty")}
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, &damagedError{path, err}
	}
	for _, l := range st.Leases {
		if !l.Addr.Is4() {
			return st, &damagedError{path, fmt.Errorf("lease %+v has no IPv4 address", l)}
		}
	}
	return st, nil
}

// overwrite puts data into the file at path in place. Unlike O_TRUNC it
// frees no blocks unless the file shrinks by one, and freed blocks are
// what makes a filesystem mounted with "discard" wait for the disk.
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		f.Close()
		return err
	}
	// The content must be on disk before the swap makes it the lease
	// file: otherwise a power loss can leave an empty or torn lease file
	// behind a completed rename.
	// fdatasync is enough (the size is part of what it flushes) and
	// spares the journal commit an fsync of the times would cost.
	if err := fsync(f, true); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fsync syncs f, only its data and size when dataOnly. It is a variable
// so that a test can see that every write is synced.
var fsync = func(f *os.File, dataOnly bool) error {
	if dataOnly {
		return unix.Fdatasync(int(f.Fd()))
	}
	return f.Sync()
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return fsync(d, false)
}

// write replaces the lease file with st. The new content goes into the
// spare file, is synced, and then trades places with the lease file in
// one renameat2(RENAME_EXCHANGE): readers see the old or the new file,
// never half of one, and the old one becomes the spare, the copy that
// recovery starts from if the lease file is ever found damaged. Swapping two files
// instead of creating a temporary one per write matters: on ext4 every
// new inode costs a search past the recently deleted ones, which made
// the write the most expensive part of an ADD. The lock makes the fixed
// spare name safe.
func (s *Store) write(st state) error {
	slices.SortFunc(st.Leases, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("ipam store: %w", err)
	}
	path := filepath.Join(s.dir, leasesFile)
	spare := filepath.Join(s.dir, spareFile)
	if err := overwrite(spare, append(b, '\n')); err != nil {
		return fmt.Errorf("ipam store: %w", err)
	}
	err = unix.Renameat2(unix.AT_FDCWD, spare, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) {
		// The first write: there is no lease file to trade places with.
		err = os.Rename(spare, path)
	}
	if err != nil {
		return fmt.Errorf("ipam store: replace %s: %w", path, err)
	}
	return nil
}
