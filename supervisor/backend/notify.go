package backend

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// notifySocket is a private sd_notify socket for one backend: a datagram
// socket file in the backend's state directory (root:<backend group>
// 0750), so only root and the backend's own user and group can reach it.
// An abstract name would be visible to everyone in /proc/net/unix and
// reachable by anyone, and some sd_notify clients (Ruby's sd_notify gem)
// cannot send to one. The kernel stamps every datagram with the sender's
// credentials (SO_PASSCRED): a READY=1 is credited to the exact process
// that sent it, and datagrams from users other than root and the
// backend's are dropped before they are parsed.
type notifySocket struct {
	conn    *net.UnixConn
	addr    string // NOTIFY_SOCKET value: the socket's path
	uid     uint32 // the backend's user; root is always accepted
	log     hclog.Logger
	dropped atomic.Uint64
}

// notifyPrefix names notify sockets in the state directory; each Backend
// gets its own name, so a new generation never takes an old one's socket.
const notifyPrefix = "notify-"

func listenNotify(dir string, b *config.Backend, log hclog.Logger) (*notifySocket, error) {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	sweepNotify(dir)
	path := filepath.Join(dir, notifyPrefix+hex.EncodeToString(r[:])+".sock")
	if len(path) > config.MaxSocketPath {
		return nil, fmt.Errorf("the notify socket path %s is %d bytes, over the %d-byte limit; set a shorter state directory or backend name", path, len(path), config.MaxSocketPath)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("creating the notify socket: %w", err)
	}
	n := &notifySocket{conn: conn, addr: path, uid: uint32(b.UID), log: log}
	fail := func(err error) (*notifySocket, error) {
		n.Close()
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 0, b.GID); err != nil {
			return fail(fmt.Errorf("setting the group of the notify socket %s: %w", path, err))
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fail(fmt.Errorf("setting the mode of the notify socket %s: %w", path, err))
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		return fail(fmt.Errorf("enabling SO_PASSCRED on the notify socket: %w", errors.Join(err, serr)))
	}
	return n, nil
}

// sweepNotify removes notify sockets left in dir by a sockvisor that
// crashed: a datagram socket nobody reads refuses a connect.
func sweepNotify(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), notifyPrefix) || e.Type()&os.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		c, err := net.Dial("unixgram", path)
		if err == nil {
			c.Close() // another live Backend's
			continue
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(path)
		}
	}
}

// read delivers each accepted datagram's sender pid and its variables
// until the socket is closed.
func (n *notifySocket) read(deliver func(pid int, vars map[string]string)) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed by Run; nothing else fails on a bound datagram socket
		}
		pid, uid, ok := n.sender(oob[:noob])
		if !ok {
			if n.dropped.Add(1) == 1 {
				n.log.Warn("dropping notify datagrams from a user other than root and the backend's", "uid", uid, "pid", pid)
			}
			continue
		}
		vars := map[string]string{}
		for _, line := range strings.Split(string(buf[:nb]), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		deliver(pid, vars)
	}
}

// sender reads the credentials the kernel attached, without allocating,
// and accepts only root and the backend's user.
func (n *notifySocket) sender(oob []byte) (pid int, uid uint32, ok bool) {
	hdr, data, _, err := unix.ParseOneSocketControlMessage(oob)
	if err != nil || hdr.Level != unix.SOL_SOCKET || hdr.Type != unix.SCM_CREDENTIALS || len(data) < unix.SizeofUcred {
		return 0, 0, false
	}
	ne := binary.NativeEndian
	pid, uid = int(int32(ne.Uint32(data[0:]))), ne.Uint32(data[4:])
	return pid, uid, pid > 0 && (uid == 0 || uid == n.uid)
}

// Close closes the socket and removes its file.
func (n *notifySocket) Close() error {
	err := n.conn.Close()
	if rerr := os.Remove(n.addr); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}
