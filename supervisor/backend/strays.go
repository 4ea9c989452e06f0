package backend

import (
	"errors"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

// A process of a backend that calls setsid(2) (a daemonizing grandchild, a
// "nohup ... &" in a wrapper script) leaves the process group, so neither
// the group signals nor groupMembers see it; yet it keeps the listening
// socket (fd 3) and the output pipes, serves after the backend stopped,
// outlives sockvisor and keeps the socket busy for the next start. Such
// strays are found by what they hold: the socket inode of one of the
// backend's instances or the pipe inode of one of its output pipes, read
// from /proc/*/fd. When Run has seen every group it started end, it stops
// them the way a group is stopped: stop_signal, then SIGKILL after
// stop_timeout, and names each pid in the log.
//
// Choice: a cgroup per backend would catch strays without a /proc scan, but
// needs a delegated subtree (systemd Delegate=yes, or cgroupfs write
// access), which the shipped unit does not grant and which does not exist
// without systemd; the scan works in both cases. Holders of the socket
// that belong to a live group led by one of sockvisor's children (another
// generation of this backend after a reload, sharing the socket) are not
// strays and are left alone.

// strayTracker holds the output pipes of the backend's processes that are
// still open.
type strayTracker struct {
	mu    sync.Mutex
	pipes map[string]int // "pipe:[ino]" -> open forwarders
}

// track records f, the read end of an output pipe, until the returned
// function is called (when the forwarder reaches EOF).
func (s *strayTracker) track(f *os.File) func() {
	fi, err := f.Stat()
	if err != nil {
		return func() {}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return func() {}
	}
	link := procfs.PipeLink(st.Ino)
	s.mu.Lock()
	if s.pipes == nil {
		s.pipes = map[string]int{}
	}
	s.pipes[link]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pipes[link]--; s.pipes[link] <= 0 {
			delete(s.pipes, link)
		}
	}
}

// stray is one escaped process and what gave it away.
type stray struct {
	pid   int
	start uint64
	holds string // "socket:[...]" or "pipe:[...]"
}

// findStrays lists the processes outside every live group of ours that
// hold one of the backend's sockets or output pipes, from a /proc scan that
// began after since (shared with other backends stopping at the same time).
func (b *Backend) findStrays(since time.Time) []stray {
	links := map[string]bool{}
	b.strays.mu.Lock()
	for l := range b.strays.pipes {
		links[l] = true
	}
	b.strays.mu.Unlock()
	for _, in := range b.insts {
		if in.sock == nil {
			continue
		}
		if ino, ok := socketInode(in.sock.File()); ok {
			links[procfs.SocketLink(ino)] = true
		}
	}
	self := os.Getpid()
	seen := map[int]bool{}
	var out []stray
	for _, h := range procfs.HoldersSince(since, links) {
		// PID 1 holds every socket sockvisor put in systemd's fd store
		// (FDSTORE=1): it is never a stray, and as its own group leader
		// "its group" would be kill(-1), every process on the machine.
		// Measured on the test node: a reload whose new backend never got
		// ready took down journald, dbus, Apache and the backends.
		if h.PID == self || h.PID <= 1 || seen[h.PID] {
			continue
		}
		seen[h.PID] = true
		st, err := procfs.ReadStat(h.PID)
		if err != nil || st.Zombie() || ourGroup(st, self) {
			continue
		}
		out = append(out, stray{pid: h.PID, start: st.StartTime, holds: h.Link})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// ourGroup reports whether a process belongs to a live group one of our
// children leads: a running backend process, not a stray.
func ourGroup(st procfs.Stat, self int) bool {
	if st.PPID == self {
		return true
	}
	leader, err := procfs.ReadStat(st.PGID)
	return err == nil && !leader.Zombie() && leader.PPID == self
}

// socketInode is f's inode, read without (*os.File).Fd, which would clear
// O_NONBLOCK on the description the backend's processes share.
func socketInode(f *os.File) (uint64, bool) {
	if f == nil {
		return 0, false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return 0, false
	}
	return st.Ino, true
}

// strayPIDs lists the pids of the strays, for log messages.
func (b *Backend) strayPIDs() []int {
	var out []int
	for _, s := range b.findStrays(time.Now()) {
		out = append(out, s.pid)
	}
	return out
}

// stopStrays stops every stray: stop_signal to it (to its group if it
// leads one, as a setsid process does), SIGKILL after stop_timeout, then a
// bounded wait (killWait); strays that survive even that are logged. Owner
// goroutine only, once every group it started is gone.
func (b *Backend) stopStrays() {
	ss := b.findStrays(time.Now())
	if len(ss) == 0 {
		return
	}
	alive := func(s stray) bool {
		st, err := procfs.ReadStat(s.pid)
		return err == nil && !st.Zombie() && st.StartTime == s.start
	}
	signal := func(s stray, sig syscall.Signal) {
		target := s.pid
		if st, err := procfs.ReadStat(s.pid); err == nil && st.PGID == s.pid {
			target = -s.pid
		}
		if !safeKillTarget(target) {
			return
		}
		if err := syscall.Kill(target, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			b.log.Error("signalling a process that escaped the backend's process group", "pid", s.pid, "error", err)
		}
	}
	for _, s := range ss {
		b.log.Warn("stopping a process that left the backend's process group but still holds its socket or output", "pid", s.pid, "holds", s.holds, "signal", unix.SignalName(b.cfg.StopSignal))
		signal(s, b.cfg.StopSignal)
	}
	wait := func(d time.Duration) []stray {
		deadline := time.Now().Add(d)
		for {
			var left []stray
			for _, s := range ss {
				if alive(s) {
					left = append(left, s)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				return left
			}
			time.Sleep(pollGroup)
		}
	}
	left := wait(b.cfg.StopTimeout)
	if len(left) == 0 {
		return
	}
	for _, s := range left {
		b.log.Warn("stop timeout expired; killing a process that escaped the backend's process group", "pid", s.pid)
		signal(s, syscall.SIGKILL)
	}
	ss = left
	if left = wait(killWait); len(left) > 0 {
		var pids []int
		for _, s := range left {
			pids = append(pids, s.pid)
		}
		b.log.Error("processes that escaped the backend's process group survived SIGKILL", "pids", pids)
	}
}

// safeKillTarget reports whether kill(2) on target can only reach one
// process or one process group other than init's: 0 is the caller's own
// group, -1 every process, and 1 or -1 init.
func safeKillTarget(target int) bool {
	return target > 1 || target < -1
}
