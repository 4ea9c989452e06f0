package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/atomicfile"
	"github.com/sockvisor/sockvisor/internal/errmark"
	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// Without systemd nothing keeps sockvisor's sockets across a crash except
// the backends it left running, and nothing marks those backends as its
// own. The state file does: sockvisor rewrites it atomically whenever its
// sockets or backend processes change, naming itself (pid and start time),
// each socket's inode and each backend process. After a crash (its writer
// is gone, or its start time no longer matches), the next sockvisor takes
// each listening socket back from a process that holds it (pidfd_getfd(2),
// Linux 5.6+; needs ptrace access to that process, which root has with
// CAP_SYS_PTRACE), starts fresh backends on it, and retires the old ones
// gracefully (findLeftovers, retireLeftovers). No request fails: the
// listening socket never closes, so connections queue in its backlog and
// the old and new backends both accept until the old ones stop.

// stateVersion is bumped on incompatible changes; other versions are ignored.
const stateVersion = 1

// runState is the state file's content.
type runState struct {
	Version   int           `json:"version"`
	PID       int           `json:"pid"`
	StartTime uint64        `json:"start_time"` // /proc/PID/stat field 22
	SocketDir string        `json:"socket_dir"`
	Sockets   []stateSocket `json:"sockets"`
	Processes []stateProc   `json:"processes"`
}

type stateSocket struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Inode uint64 `json:"inode"` // the socket's own inode: socket:[Inode]
}

type stateProc struct {
	Backend   string `json:"backend"`
	Instance  int    `json:"instance"`
	PID       int    `json:"pid"`
	PGID      int    `json:"pgid"`
	StartTime uint64 `json:"start_time"`
}

// statePath is the state file of the sockvisor owning socketDir: one per
// socket_dir, so two sockvisors on different configs never share one. Its
// name holds a dot, which backend names (StateDir/<name>) cannot.
func statePath(stateDir, socketDir string) string {
	h := fnv.New64a()
	h.Write([]byte(filepath.Clean(socketDir)))
	return filepath.Join(stateDir, fmt.Sprintf("sockvisor-%016x.json", h.Sum64()))
}

// currentState describes this sockvisor now. It reads /proc only for
// processes w has not seen yet, so that checking for a change twice a
// second costs next to nothing with hundreds of backends.
func (d *Daemon) currentState(w *stateWriter) (runState, error) {
	if w.selfStart == 0 {
		self, err := procfs.ReadStat(os.Getpid())
		if err != nil {
			return runState{}, fmt.Errorf("reading sockvisor's own start time: %w", err)
		}
		w.selfStart = self.StartTime
	}
	if w.procs == nil {
		w.procs = map[int]procfs.Stat{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := runState{Version: stateVersion, PID: os.Getpid(), StartTime: w.selfStart, SocketDir: d.cfg.SocketDir}
	for name, l := range d.socks {
		st.Sockets = append(st.Sockets, stateSocket{Name: name, Path: l.Path(), Inode: l.Inode()})
	}
	sort.Slice(st.Sockets, func(i, j int) bool { return st.Sockets[i].Name < st.Sockets[j].Name })
	seen := map[int]bool{}
	for name, sv := range d.backends {
		for _, in := range sv.sup.Status().Instances {
			if in.PID == 0 {
				continue
			}
			ps, ok := w.procs[in.PID]
			if !ok {
				var err error
				if ps, err = procfs.ReadStat(in.PID); err != nil {
					continue
				}
				w.procs[in.PID] = ps
			}
			seen[in.PID] = true
			st.Processes = append(st.Processes, stateProc{Backend: name, Instance: in.Instance, PID: in.PID, PGID: ps.PGID, StartTime: ps.StartTime})
		}
	}
	for pid := range w.procs {
		if !seen[pid] {
			delete(w.procs, pid)
		}
	}
	sort.Slice(st.Processes, func(i, j int) bool {
		a, b := st.Processes[i], st.Processes[j]
		return a.Backend < b.Backend || a.Backend == b.Backend && a.Instance < b.Instance
	})
	return st, nil
}

// stateWriter rewrites the state file when its content changes.
type stateWriter struct {
	path    string
	last    []byte
	lastErr string
	// selfStart and procs cache /proc reads across calls of currentState.
	selfStart uint64
	procs     map[int]procfs.Stat
}

func (w *stateWriter) write(st runState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if bytes.Equal(b, w.last) {
		// Unchanged, but rewritten if someone deleted it: one lstat.
		if _, err := os.Lstat(w.path); !errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if err := writeAtomic(w.path, b); err != nil {
		return err
	}
	w.last = b
	return nil
}

// writeAtomic replaces path with data, mode 0600; a crash leaves the old
// file or the new one, never a torn or empty one (atomicfile).
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create state directory %s: %w", dir, err)
	}
	err := atomicfile.Write(path, data, atomicfile.Options{Mode: 0o600})
	if errors.Is(err, atomicfile.ErrNotRegular) {
		return errmark.Mark(fmt.Errorf("state file %s is not a regular file; remove it so sockvisor can write its state there", path), atomicfile.ErrNotRegular)
	}
	if err != nil {
		return fmt.Errorf("cannot write the state file: %w", err)
	}
	return nil
}

// readState reads a state file; a missing one is (nil, nil). The file
// decides which processes get their sockets taken and are then stopped, so
// it must be a regular file of our own user that nobody else can write.
func readState(path string) (*runState, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open state file %s (%w); remove it if it is not a regular file", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || !ok || int(sys.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("state file %s is not a regular file owned by uid %d and writable only by it (mode %v); remove it", path, os.Geteuid(), fi.Mode())
	}
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading state file %s: %w", path, err)
	}
	var st runState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s is not valid JSON, so it is ignored; remove it if no sockvisor is running: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, nil
	}
	return &st, nil
}

// sameProcess reports whether pid is still the process that started at
// start (not a zombie, not a reused pid).
func sameProcess(pid int, start uint64) bool {
	st, err := procfs.ReadStat(pid)
	return err == nil && !st.Zombie() && st.StartTime == start
}

// takeBackSockets adds to stored every socket of cfg that a crashed
// sockvisor's state file names and that a process it left running still
// holds, copied from that process with pidfd_getfd(2). Sockets already in
// stored (systemd's fd store) are left alone. It changes nothing else: the
// leftovers are retired by findLeftovers and retireLeftovers once the new
// backends are ready. Problems are logged; Create then reports who holds
// a socket that could not be taken back.
func (d *Daemon) takeBackSockets(cfg *config.Config, stored map[string]*os.File) {
	path := statePath(d.opts.StateDir, cfg.SocketDir)
	prev, err := readState(path)
	if err != nil {
		d.log.Warn("ignoring the state file of a previous sockvisor", "path", path, "error", err)
		return
	}
	if prev == nil || prev.SocketDir != cfg.SocketDir || prev.PID == os.Getpid() {
		return
	}
	if sameProcess(prev.PID, prev.StartTime) {
		// Still running: the control socket will have refused us already
		// unless it moved; never take sockets from a live sockvisor.
		d.log.Warn("the sockvisor that wrote the state file is still running; not taking its sockets", "pid", prev.PID, "path", path)
		return
	}
	want := map[string]config.Socket{}
	for _, s := range inherited(cfg) {
		want[s.Name] = s
	}
	known := map[int]bool{} // recorded backend processes, still the same
	for _, p := range prev.Processes {
		if sameProcess(p.PID, p.StartTime) {
			known[p.PID] = true
		}
	}
	for _, s := range prev.Sockets {
		spec, ok := want[s.Name]
		if !ok || stored[s.Name] != nil || spec.Path != s.Path {
			continue
		}
		f, from, err := takeSocket(s.Inode, known)
		if err != nil {
			d.log.Warn("cannot take the socket back from the backends a crashed sockvisor left running", "socket", s.Path, "error", err)
			continue
		}
		if f == nil {
			continue // nobody holds it: the socket died with its backends
		}
		d.log.Info("took the socket back from a backend a crashed sockvisor left running", "socket", s.Path, "pid", from, "previous_sockvisor", prev.PID)
		stored[s.Name] = f
		// Under systemd, whose fd store had lost it: keep it there again.
		d.notify.Forget(s.Name)
		if err := d.notify.Store(s.Name, f); err != nil {
			d.log.Warn("could not hand the socket to systemd's fd store", "socket", s.Name, "error", err)
		}
	}
}

// takeSocket copies socket inode ino from a process holding it, preferring
// the recorded backend processes in known; (nil, 0, nil) if nobody holds it.
func takeSocket(ino uint64, known map[int]bool) (*os.File, int, error) {
	hs := procfs.Holders(map[string]bool{procfs.SocketLink(ino): true})
	sort.SliceStable(hs, func(i, j int) bool { return known[hs[i].PID] && !known[hs[j].PID] })
	var errs []error
	for _, h := range hs {
		if h.PID == os.Getpid() {
			continue
		}
		f, err := getFD(h.PID, h.FD, ino)
		if err == nil {
			return f, h.PID, nil
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, 0, errors.Join(errs...)
	}
	return nil, 0, nil
}

// getFD duplicates fd of process pid into this process (pidfd_getfd(2)) and
// checks that it is still socket inode ino: the process may have exited, or
// closed and reused the fd number, since /proc was read.
func getFD(pid, fd int, ino uint64) (*os.File, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open(%d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if errors.Is(err, unix.ENOSYS) {
		return nil, fmt.Errorf("this kernel has no pidfd_getfd(2) (Linux 5.6+), so the socket cannot be taken back from pid %d: %w", pid, err)
	}
	if errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("not allowed to copy fd %d of pid %d (pidfd_getfd needs root with CAP_SYS_PTRACE): %w", fd, pid, err)
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd_getfd(pid %d, fd %d): %w", pid, fd, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(nfd, &st); err != nil || st.Ino != ino || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		unix.Close(nfd)
		return nil, fmt.Errorf("fd %d of pid %d is no longer socket %d", fd, pid, ino)
	}
	return os.NewFile(uintptr(nfd), procfs.SocketLink(ino)), nil
}
