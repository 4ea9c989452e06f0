package sockets

import (
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// Holders returns the processes that hold the listening socket bound to the
// file at path, group leaders first (a Gunicorn master before its workers).
// SO_PEERCRED cannot tell: on a listener it names whoever called listen(2),
// often a supervisor that has since died. It asks sock_diag which socket is
// bound to the file, then scans /proc/*/fd for that socket's inode; it is
// nil when sock_diag is unavailable or the fds of the holders are not
// readable (another user's processes, without CAP_SYS_PTRACE).
func Holders(path string) []int {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil
	}
	socks, err := sockdiag.Bound()
	if err != nil {
		return nil
	}
	links := map[string]bool{}
	for _, s := range socks {
		if s.Names(st.Dev, st.Ino) && s.State == sockdiag.StateListen {
			links[procfs.SocketLink(s.Inode)] = true
		}
	}
	pids := procfs.PIDs(procfs.Holders(links))
	var leaders, others []int
	for _, pid := range pids {
		if ps, err := procfs.ReadStat(pid); err == nil && ps.PGID == pid {
			leaders = append(leaders, pid)
		} else {
			others = append(others, pid)
		}
	}
	return append(leaders, others...)
}

// listenerHolder is the first of Holders, or 0.
func listenerHolder(path string) int {
	if hs := Holders(path); len(hs) > 0 {
		return hs[0]
	}
	return 0
}
