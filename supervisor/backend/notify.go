package backend

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

// notifySocket is a private sd_notify socket for one backend. The kernel
// stamps every datagram with the sender's pid (SO_PASSCRED), so a READY=1
// is credited to the exact process that sent it, never to a forged one.
// It lives in the abstract namespace: no file, no permissions to manage,
// gone when closed.
type notifySocket struct {
	conn *net.UnixConn
	addr string // NOTIFY_SOCKET value, "@..."
}

func listenNotify(name string) (*notifySocket, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	if len(name) > 40 {
		name = name[:40]
	}
	addr := "@sockvisor/" + name + "/" + hex.EncodeToString(r[:])
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("creating the notify socket: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		conn.Close()
		return nil, fmt.Errorf("enabling SO_PASSCRED on the notify socket: %w", errors.Join(err, serr))
	}
	return &notifySocket{conn: conn, addr: addr}, nil
}

// read delivers each datagram's sender pid and its variables until the
// socket is closed.
func (n *notifySocket) read(deliver func(pid int, vars map[string]string)) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed by Run; nothing else fails on a bound datagram socket
		}
		pid := 0
		if msgs, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil {
			for _, m := range msgs {
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					pid = int(cred.Pid)
				}
			}
		}
		if pid == 0 {
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

func (n *notifySocket) Close() error { return n.conn.Close() }
