package notify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// listen plays systemd: a datagram socket that receives notifications.
func listen(t *testing.T) (*net.UnixConn, string) {
	path := filepath.Join(testutil.ShortDir(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A datagram that never comes fails the test instead of hanging it.
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c, path
}

func TestDisabledIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New()
	if n.Enabled() || n.Ready("x") != nil || n.Store("a", os.Stdin) != nil {
		t.Fatal("notifier without NOTIFY_SOCKET did something")
	}
}

func TestMessagesAndFDStore(t *testing.T) {
	c, path := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	n := New()
	buf, oob := make([]byte, 512), make([]byte, 128)

	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:k])
	usec, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	if _, err := strconv.ParseUint(usec, 10, 64); !ok || err != nil {
		t.Errorf("reloading datagram = %q; want RELOADING=1 and a MONOTONIC_USEC number in one datagram", got)
	}

	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if err := n.Store("app.sock", w); err != nil {
		t.Fatal(err)
	}
	k, noob, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	if got = string(buf[:k]); got != "FDSTORE=1\nFDNAME=app.sock" {
		t.Errorf("fdstore datagram = %q", got)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:noob])
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("control messages = %d", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) != 1 {
		t.Fatalf("fds = %v", fds)
	}
	defer syscall.Close(fds[0])
	// The received fd is the same pipe: a write to it reaches r.
	if _, err := syscall.Write(fds[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := r.Read(one); err != nil || one[0] != 'x' {
		t.Fatalf("passed fd is not the stored file: %v", err)
	}
}

// Storing a socket leaves its file description's O_NONBLOCK alone, however
// its *os.File was made. The description is shared with the backends
// serving on it, and a server that set the flag (gunicorn, uWSGI, Go)
// blocks inside accept(2) once it is cleared, as (*os.File).Fd clears it
// for a file from package net (the "net" case failed while Store called
// Fd).
func TestStoreKeepsNonblock(t *testing.T) {
	c, path := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	// Each returns the file to store and another descriptor of the same
	// description, as a backend holds it.
	cases := map[string]func() (*os.File, int){
		"os.NewFile": func() (*os.File, int) {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			other, err := unix.Dup(fd)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unix.Close(other) })
			return os.NewFile(uintptr(fd), "listener"), other
		},
		"net": func() (*os.File, int) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(testutil.ShortDir(t), "l"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			f, err := l.File()
			if err != nil {
				t.Fatal(err)
			}
			rc, err := l.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			other := -1
			rc.Control(func(fd uintptr) { other = int(fd) })
			return f, other
		},
	}
	buf, oob := make([]byte, 512), make([]byte, 128)
	for name, open := range cases {
		f, other := open()
		if err := New().Store("app.sock", f); err != nil {
			t.Fatal(err)
		}
		f.Close()
		// Drain the datagram and close the descriptor it carried.
		_, noob, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		if msgs, err := unix.ParseSocketControlMessage(oob[:noob]); err == nil && len(msgs) == 1 {
			if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
		fl, err := unix.FcntlInt(uintptr(other), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fl&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: Store cleared O_NONBLOCK on the socket's file description", name)
		}
	}
}
