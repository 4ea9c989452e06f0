package sockets

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// DefaultProbeTimeout bounds one connect probe.
const DefaultProbeTimeout = 500 * time.Millisecond

type probeState int

const (
	probeLive    probeState = iota // connected
	probeFull                      // EAGAIN: listening, accept queue full
	probeRefused                   // ECONNREFUSED: nobody listening
	probeGone                      // ENOENT: the file vanished
	probeFailed                    // anything else, e.g. EACCES
)

type probeResult struct {
	state probeState
	// pid is a process holding the listening socket (probeLive): its
	// process group leader if one holds it, from /proc (holders.go); else
	// whoever last called listen(2) (SO_PEERCRED), which may be long gone.
	pid int
	err error
}

// probe connects to the socket at path without blocking. It never sends data.
func probe(path string, timeout time.Duration) probeResult {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return probeResult{state: probeFailed, err: err}
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
	if errors.Is(err, unix.EINPROGRESS) {
		// AF_UNIX stream connects finish at once on Linux; this is only a
		// guard so that a probe can never block longer than timeout.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, perr := unix.Poll(pfd, int(timeout/time.Millisecond))
		switch {
		case perr != nil:
			err = perr
		case n == 0:
			err = unix.ETIMEDOUT
		default:
			var soerr int
			soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr != 0 {
				err = unix.Errno(soerr)
			}
		}
	}
	switch {
	case err == nil:
		r := probeResult{state: probeLive, pid: listenerHolder(path)}
		if r.pid == 0 {
			if cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				r.pid = int(cred.Pid)
			}
		}
		return r
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ETIMEDOUT):
		return probeResult{state: probeFull, err: err}
	case errors.Is(err, unix.ECONNREFUSED):
		return probeResult{state: probeRefused, err: err}
	case errors.Is(err, unix.ENOENT):
		return probeResult{state: probeGone, err: err}
	default:
		return probeResult{state: probeFailed, err: err}
	}
}

// describe says why a socket that is not stale must be kept.
func (r probeResult) describe() string {
	switch r.state {
	case probeLive:
		if r.pid > 0 {
			return fmt.Sprintf("live: accepting connections, held by pid %d", r.pid)
		}
		return "live: accepting connections"
	case probeFull:
		return "live: accept queue full (" + r.err.Error() + ")"
	case probeGone:
		return "vanished while being checked"
	default:
		return fmt.Sprintf("cannot probe it (%v), so it is left alone", r.err)
	}
}

// boundSet answers "does any process have a socket bound to this file?" from
// one sock_diag dump. ok is false where sock_diag is unavailable; callers then
// rely on the connect probe alone.
type boundSet struct {
	socks []sockdiag.Stat
	ok    bool
}

func loadBound() (boundSet, error) {
	socks, err := sockdiag.Bound()
	if err != nil {
		return boundSet{}, err
	}
	return boundSet{socks: socks, ok: true}, nil
}

func (b boundSet) holds(st *unix.Stat_t) (sockdiag.Stat, bool) {
	for _, s := range b.socks {
		if s.Names(st.Dev, st.Ino) {
			return s, true
		}
	}
	return sockdiag.Stat{}, false
}

// judge decides, after a refused probe, whether the socket file st is truly
// stale. The dump must be taken after the probe: a socket that is bound but
// not yet listening also refuses connections, while a stale inode can never
// become live again, so a later dump cannot miss a binder.
func (b boundSet) judge(st *unix.Stat_t) (stale bool, why string) {
	if !b.ok {
		return true, "stale: connection refused (sock_diag unavailable, so not double-checked)"
	}
	if s, ok := b.holds(st); ok {
		if s.State == sockdiag.StateListen {
			return false, "live: listening, though it refused a connection"
		}
		return false, "bound by a process that is not listening (yet), so it is left alone"
	}
	return true, "stale: connection refused and no process has a socket bound to it"
}
