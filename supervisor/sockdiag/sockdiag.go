// Package sockdiag asks the kernel about AF_UNIX sockets through netlink
// NETLINK_SOCK_DIAG, the interface behind `ss -x`.
//
// Invariant: every figure comes from one kernel answer, never from connecting
// to a socket, so reading it cannot disturb a backend. For a listening socket
// Queue is the number of connections waiting for accept(2) and Backlog is the
// listen(2) backlog (ss -xl's Recv-Q and Send-Q). Only sockets in the caller's
// network namespace are visible.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Kernel ABI of include/uapi/linux/unix_diag.h; x/sys/unix does not carry it.
const (
	showName  = 0x01 // UDIAG_SHOW_NAME
	showVFS   = 0x02 // UDIAG_SHOW_VFS
	showPeer  = 0x04 // UDIAG_SHOW_PEER
	showIcons = 0x08 // UDIAG_SHOW_ICONS
	showRQLen = 0x10 // UDIAG_SHOW_RQLEN

	attrName     = 0 // UNIX_DIAG_NAME
	attrVFS      = 1 // UNIX_DIAG_VFS
	attrPeer     = 2 // UNIX_DIAG_PEER
	attrIcons    = 3 // UNIX_DIAG_ICONS
	attrRQLen    = 4 // UNIX_DIAG_RQLEN
	attrShutdown = 6 // UNIX_DIAG_SHUTDOWN

	basicShow = showName | showVFS | showRQLen

	reqLen = 24 // sizeof(struct unix_diag_req)
	msgLen = 16 // sizeof(struct unix_diag_msg)
)

// Socket states as the kernel reports them (the TCP numbering).
const (
	StateEstablished = 1  // connected
	StateClose       = 7  // bound or unbound, neither listening nor connected
	StateListen      = 10 // listening
)

var allStates = ^uint32(0)

// Sentinel errors; test with errors.Is.
var (
	// ErrUnsupported means the kernel refused the request, e.g. because
	// unix_diag is not built in and the module cannot be loaded here.
	ErrUnsupported = errors.New("sockdiag: unix socket diagnostics unavailable")
	// ErrNotFound means no socket has the requested inode.
	ErrNotFound = errors.New("sockdiag: no such socket")
)

// Stat describes one AF_UNIX socket.
type Stat struct {
	// Path is the name the socket was bound to ("" if unbound or abstract);
	// it may since have been unlinked or renamed, see VFSInode.
	Path string
	// Inode is the socket's own inode, as in /proc/PID/fd/N -> socket:[Inode].
	Inode uint64
	Type  int // unix.SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET
	State int // StateListen, StateEstablished, StateClose
	// Queue is, for a listening socket, the connections waiting for accept;
	// otherwise the bytes in the receive queue.
	Queue uint32
	// Backlog is, for a listening socket, its listen(2) backlog; otherwise the
	// bytes in the send queue.
	Backlog uint32
	// VFSDev and VFSInode identify the file the socket is bound to: VFSDev as
	// lstat(2) reports st_dev, VFSInode as st_ino truncated to the 32 bits the
	// kernel ABI carries. Both are 0 for an unbound or abstract socket.
	VFSDev   uint64
	VFSInode uint32
	// Peer is the inode of the other end of a connected socket (only from
	// Connection). It is 0 while that end has no file: a connection still
	// waiting in a listener's queue, or one its acceptor has closed.
	Peer uint64
	// Shutdown holds the socket's shutdown bits (1 receive, 2 send; only
	// from Connection); the kernel sets both once the peer has closed.
	Shutdown uint8
}

// Names reports whether s is bound to the file with the given lstat st_dev
// and st_ino.
func (s Stat) Names(dev, ino uint64) bool {
	return s.VFSInode != 0 && s.VFSInode == uint32(ino) && s.VFSDev == dev
}

// Listening returns every listening AF_UNIX socket bound to a path, keyed by
// that path. When several claim one path, the one the path names now wins.
func Listening() (map[string]Stat, error) {
	all, err := dump(1 << StateListen)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Stat, len(all))
	for _, s := range all {
		if s.Path == "" || s.Path[0] == '@' {
			continue
		}
		if prev, ok := out[s.Path]; ok && currentlyNamed(prev) {
			continue
		}
		out[s.Path] = s
	}
	return out, nil
}

// Bound returns every AF_UNIX socket, in any state, that is bound to a file.
func Bound() ([]Stat, error) {
	all, err := dump(allStates)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, s := range all {
		if s.VFSInode != 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

// Lookup returns the socket whose own inode is ino (fstat(2) of its fd).
func Lookup(ino uint64) (Stat, error) {
	return lookup(ino, basicShow)
}

// Connection is Lookup plus Peer and Shutdown: for a client socket, whether
// its connection is still queued (Peer 0, Shutdown 0), accepted (Peer is the
// accepted socket's inode, as in /proc/PID/fd/N -> socket:[Peer]) or closed
// by the other end (Shutdown non-zero).
func Connection(ino uint64) (Stat, error) {
	return lookup(ino, basicShow|showPeer)
}

// Pending returns, for the listening socket with inode ino, the connections
// waiting in its queue (UNIX_DIAG_ICONS), in queue order, each as the inode
// of its client socket (the connecting side; 0 once that side is closed).
// A caller finds its own queued connection by the inode of its socket.
func Pending(ino uint64) ([]uint64, error) {
	e, err := lookupEntry(ino, basicShow|showIcons)
	return e.icons, err
}

func lookup(ino uint64, show uint32) (Stat, error) {
	e, err := lookupEntry(ino, show)
	return e.Stat, err
}

func lookupEntry(ino uint64, show uint32) (entry, error) {
	if ino > uint64(^uint32(0)) {
		return entry{}, fmt.Errorf("%w: inode %d", ErrNotFound, ino)
	}
	got, err := request(unix.NLM_F_REQUEST, allStates, uint32(ino), show)
	if errors.Is(err, unix.ENOENT) {
		return entry{}, fmt.Errorf("%w: inode %d", ErrNotFound, ino)
	}
	if err != nil {
		return entry{}, err
	}
	if len(got) != 1 {
		return entry{}, fmt.Errorf("%w: inode %d", ErrNotFound, ino)
	}
	return got[0], nil
}

// entry is one answer: the Stat and, when asked for, the pending icons.
type entry struct {
	Stat
	icons []uint64
}

func currentlyNamed(s Stat) bool {
	var st unix.Stat_t
	return unix.Lstat(s.Path, &st) == nil && s.Names(st.Dev, st.Ino)
}

func dump(states uint32) ([]Stat, error) {
	for range 3 {
		got, err := request(unix.NLM_F_REQUEST|unix.NLM_F_DUMP, states, 0, basicShow)
		if errors.Is(err, errInterrupted) {
			continue // the socket table changed mid-dump; ask again
		}
		if err != nil {
			return nil, err
		}
		out := make([]Stat, len(got))
		for i, e := range got {
			out[i] = e.Stat
		}
		return out, nil
	}
	return nil, fmt.Errorf("sockdiag: dump kept being interrupted: %w", errInterrupted)
}

var (
	errInterrupted = errors.New("dump interrupted")
	seq            atomic.Uint32
)

func request(flags uint16, states, ino, show uint32) ([]entry, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("%w: netlink socket: %w", ErrUnsupported, err)
	}
	defer unix.Close(fd)
	// Never hang a caller (status, metrics) on a kernel that does not answer.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("sockdiag: set receive timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("%w: netlink bind: %w", ErrUnsupported, err)
	}

	s := seq.Add(1)
	msg := make([]byte, unix.SizeofNlMsghdr+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], flags)
	ne.PutUint32(msg[8:], s)
	req := msg[unix.SizeofNlMsghdr:]
	req[0] = unix.AF_UNIX
	ne.PutUint32(req[4:], states)
	ne.PutUint32(req[8:], ino)
	ne.PutUint32(req[12:], show)
	// INET_DIAG_NOCOOKIE: an exact lookup by inode without a cookie.
	ne.PutUint32(req[16:], ^uint32(0))
	ne.PutUint32(req[20:], ^uint32(0))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("%w: netlink send: %w", ErrUnsupported, err)
	}

	isDump := flags&unix.NLM_F_DUMP != 0
	var out []entry
	buf := make([]byte, 1<<16)
	for {
		n, _, rflags, from, err := unix.Recvmsg(fd, buf, nil, 0)
		if err != nil {
			return nil, fmt.Errorf("sockdiag: netlink receive: %w", err)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return nil, errors.New("sockdiag: netlink answer truncated")
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // not from the kernel
		}
		msgs, err := splitMessages(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != s {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				return nil, errInterrupted
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if e := errnoIn(m.Data); e != 0 {
					return nil, fmt.Errorf("sockdiag: dump failed: %w", e)
				}
				return out, nil
			case unix.NLMSG_ERROR:
				e := errnoIn(m.Data)
				if e == 0 {
					return out, nil // an ack
				}
				if e == unix.ENOENT && !isDump {
					return nil, e
				}
				return nil, fmt.Errorf("%w: kernel answered %w", ErrUnsupported, e)
			case unix.SOCK_DIAG_BY_FAMILY:
				st, ok := parse(m.Data)
				if ok {
					out = append(out, st)
				}
				if !isDump {
					return out, nil
				}
			}
		}
	}
}

type nlMsg struct {
	Header unix.NlMsghdr
	Data   []byte
}

// splitMessages cuts one netlink datagram into its messages.
func splitMessages(b []byte) ([]nlMsg, error) {
	ne := binary.NativeEndian
	var out []nlMsg
	for len(b) >= unix.SizeofNlMsghdr {
		h := unix.NlMsghdr{
			Len:   ne.Uint32(b[0:]),
			Type:  ne.Uint16(b[4:]),
			Flags: ne.Uint16(b[6:]),
			Seq:   ne.Uint32(b[8:]),
			Pid:   ne.Uint32(b[12:]),
		}
		if h.Len < unix.SizeofNlMsghdr || int(h.Len) > len(b) {
			return nil, errors.New("sockdiag: malformed netlink answer")
		}
		out = append(out, nlMsg{Header: h, Data: b[unix.SizeofNlMsghdr:h.Len]})
		next := int((h.Len + 3) &^ 3)
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return out, nil
}

// errnoIn reads the negative errno that starts NLMSG_ERROR and NLMSG_DONE.
func errnoIn(b []byte) unix.Errno {
	if len(b) < 4 {
		return 0
	}
	return unix.Errno(-int32(binary.NativeEndian.Uint32(b)))
}

func parse(b []byte) (entry, bool) {
	if len(b) < msgLen || b[0] != unix.AF_UNIX {
		return entry{}, false
	}
	ne := binary.NativeEndian
	s := entry{Stat: Stat{Type: int(b[1]), State: int(b[2]), Inode: uint64(ne.Uint32(b[4:]))}}
	for a := b[msgLen:]; len(a) >= 4; {
		l := int(ne.Uint16(a[0:]))
		if l < 4 || l > len(a) {
			break
		}
		payload := a[4:l]
		switch ne.Uint16(a[2:]) {
		case attrName:
			if len(payload) > 0 && payload[0] == 0 {
				s.Path = "@" + string(payload[1:]) // abstract
			} else {
				s.Path = cString(payload)
			}
		case attrVFS:
			if len(payload) >= 8 {
				s.VFSInode = ne.Uint32(payload[0:])
				// The kernel sends its internal dev_t (major<<20 | minor).
				kdev := ne.Uint32(payload[4:])
				s.VFSDev = unix.Mkdev(kdev>>20, kdev&0xfffff)
			}
		case attrPeer:
			if len(payload) >= 4 {
				s.Peer = uint64(ne.Uint32(payload))
			}
		case attrIcons:
			s.icons = make([]uint64, 0, len(payload)/4)
			for p := payload; len(p) >= 4; p = p[4:] {
				s.icons = append(s.icons, uint64(ne.Uint32(p)))
			}
		case attrShutdown:
			if len(payload) >= 1 {
				s.Shutdown = payload[0]
			}
		case attrRQLen:
			if len(payload) >= 8 {
				s.Queue = ne.Uint32(payload[0:])
				s.Backlog = ne.Uint32(payload[4:])
			}
		}
		next := (l + 3) &^ 3 // attributes are 4-byte aligned
		if next > len(a) {
			break
		}
		a = a[next:]
	}
	return s, true
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
