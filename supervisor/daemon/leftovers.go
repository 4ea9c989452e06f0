package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"

	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// A crashed sockvisor leaves its backends running (under systemd because the
// unit has KillMode=process; without systemd they are reparented to init):
// they keep serving on its sockets, which systemd's fd store kept or which
// takeBackSockets (statefile.go) copies back from them. The next sockvisor
// finds them by the sockets they hold, starts fresh backends, and only then
// stops the leftovers gracefully, so their in-flight requests finish.

// leftover is a process a previous sockvisor started.
type leftover struct {
	pid    int
	start  uint64 // starttime from /proc/PID/stat, against PID reuse
	leader bool   // a process group leader: a backend's main process
	// backend is the configured backend whose socket it holds.
	backend *config.Backend
}

// serviceCgroupProcs returns the cgroup.procs file of this process's systemd
// service cgroup, or "" unless sockvisor is that service's main process.
// INVOCATION_ID and the cgroup are inherited by anything a service starts
// (a CI runner running the tests, say), so the main-process test matters:
// only then is everything else in the cgroup sockvisor's own.
func serviceCgroupProcs() string {
	if os.Getenv("INVOCATION_ID") == "" || os.Getenv("NOTIFY_SOCKET") == "" || os.Getppid() != 1 {
		return ""
	}
	path, err := procfs.SelfCgroup()
	if err != nil {
		return ""
	}
	if !strings.HasSuffix(path, ".service") {
		return ""
	}
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		p := filepath.Join(root, path, "cgroup.procs")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// findLeftovers lists the processes, other than ourselves, that hold one of
// our backend sockets; it runs before we start any backend. Under systemd it
// looks only in our service cgroup (nothing else ever is in it). Without
// systemd it scans all of /proc: a process holding the very listening
// socket we hold can only have got it from a previous sockvisor's backend
// (takeBackSockets took it from one after a crash), and a socket we just
// created is held by nobody else. Both need CAP_SYS_PTRACE to read the fds
// of backends running as other users.
func findLeftovers(cfg *config.Config, listeners map[string]*sockets.Listener) []leftover {
	byInode := map[uint64]*config.Backend{}
	links := map[string]bool{}
	for _, b := range cfg.Backends {
		for _, s := range b.Sockets {
			if l := listeners[s.Name]; l != nil {
				// Inode, not File().Fd(): Fd would clear O_NONBLOCK on the
				// description the backends share.
				byInode[l.Inode()] = b
				links[procfs.SocketLink(l.Inode())] = true
			}
		}
	}
	var holders []procfs.Holder
	if procs := serviceCgroupProcs(); procs != "" {
		pids, err := procfs.ReadPIDs(procs)
		if err != nil {
			return nil
		}
		holders = procfs.HoldersIn(pids, links)
	} else {
		holders = procfs.Holders(links)
	}
	self := os.Getpid()
	var out []leftover
	seen := map[int]bool{}
	for _, h := range holders {
		// PID 1 (systemd's fd store) holds the sockets too and is never a
		// leftover: signalling "its group" would be kill(-1).
		if h.PID == self || h.PID <= 1 || seen[h.PID] {
			continue
		}
		seen[h.PID] = true
		st, err := procfs.ReadStat(h.PID)
		if err != nil || st.Zombie() {
			continue
		}
		out = append(out, leftover{pid: h.PID, start: st.StartTime, leader: st.PGID == h.PID, backend: byInode[h.Inode()]})
	}
	return out
}

// alive reports whether the leftover is still the same process.
func (l leftover) alive() bool {
	st, err := procfs.ReadStat(l.pid)
	return err == nil && !st.Zombie() && st.StartTime == l.start
}

// retireLeftovers stops leftovers the way their backend is stopped: the
// stop signal to each backend's main process (the group leader holding its
// socket, which drains its own workers), a wait of the longest stop_timeout,
// then SIGKILL to whatever is still there.
func (d *Daemon) retireLeftovers(ctx context.Context, ls []leftover) {
	if len(ls) == 0 {
		return
	}
	d.log.Info("stopping backends a previous sockvisor left running", "processes", len(ls))
	var timeout time.Duration
	for _, l := range ls {
		if !l.leader || !l.alive() {
			continue
		}
		if l.backend.StopTimeout > timeout {
			timeout = l.backend.StopTimeout
		}
		d.log.Info("stopping leftover backend process", "backend", l.backend.Name, "pid", l.pid, "signal", unix.SignalName(l.backend.StopSignal))
		if err := syscall.Kill(l.pid, l.backend.StopSignal); err != nil && !errors.Is(err, syscall.ESRCH) {
			d.log.Warn("signalling leftover", "pid", l.pid, "error", err)
		}
	}
	if timeout == 0 {
		timeout = 10 * time.Second // only workers whose master is gone
	}
	deadline := time.Now().Add(timeout)
	var wg sync.WaitGroup
	for _, l := range ls {
		if !l.leader {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
			if l.alive() {
				// The whole group: a master may have forked workers since
				// the leftovers were listed.
				d.log.Warn("leftover did not stop in time; killing its process group", "pid", l.pid)
				syscall.Kill(-l.pid, syscall.SIGKILL)
			}
		}()
	}
	wg.Wait()
	// Workers whose master was already gone.
	for _, l := range ls {
		if !l.leader && l.alive() {
			syscall.Kill(l.pid, syscall.SIGKILL)
		}
	}
}
