package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/notify"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// Issue [K] item 3: one unprivileged shutdown(2) of the shared listener by
// a backend used to kill the socket for good (Gunicorn crash-looped in
// accept, clients were refused). Now the next backend exit replaces the
// socket at the same path and serving resumes within a restart back-off.
func TestShutDownSocketIsReplaced(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/python3")
	h := newHarness(t, backendHCL("app", "/app/", "restart {\n min_delay = \"100ms\"\n max_delay = \"1s\"\n }"))
	h.get("/app/")
	h.d.mu.Lock()
	var l interface{ File() *os.File }
	for _, s := range h.d.socks {
		l = s
	}
	h.d.mu.Unlock()
	fd, err := unix.FcntlInt(l.File().Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	dup := os.NewFile(uintptr(fd), "dup")
	cmd := exec.Command("/usr/bin/python3", "-c", "import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RDWR)")
	cmd.ExtraFiles = []*os.File{dup}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 33, Gid: 33, Groups: []uint32{}}}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	dup.Close()
	if err != nil {
		t.Fatalf("shutdown helper: %v %s", err, out)
	}
	shut := time.Now()
	deadline := shut.Add(30 * time.Second)
	for {
		code, body, err := h.apache.Get("/app/")
		if err == nil && code == 200 && strings.Contains(body, "hello") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not serving 30 s after the socket was shut down: %d %v\n%s", code, err, h.apache.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("serving again %v after the shutdown", time.Since(shut).Round(time.Millisecond))
}

// A replaced socket replaces its fd store entry too, both when a running
// listener is repaired and when the fd store handed back a dead one, so a
// systemctl restart never brings a shut-down socket back.
func TestReplacedSocketSwapsFdStoreEntry(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	nsPath := filepath.Join(dir, "notify")
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	t.Setenv("NOTIFY_SOCKET", nsPath)
	src := fmt.Sprintf("socket_dir = %q\nbackend \"app\" {\n  preset = \"generic\"\n  command = [\"/bin/true\"]\n  mount = \"\"\n}\n", filepath.Join(dir, "s"))
	cfg, err := config.Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: testutil.Logger("sockvisor", hclog.Info), notify: notify.New(), socks: map[string]*sockets.Listener{}, cfg: cfg}
	// stored reads the datagrams until one stores name; it returns the
	// inode of the socket that came with it and whether a removal came first.
	stored := func(name string) (ino uint64, removed bool) {
		t.Helper()
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			ns.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, oobn, _, _, err := ns.ReadMsgUnix(buf, oob)
			if err != nil {
				t.Fatalf("no FDSTORE for %s: %v", name, err)
			}
			msg := string(buf[:n])
			if strings.Contains(msg, "FDSTOREREMOVE=1") && strings.Contains(msg, "FDNAME="+name) {
				removed = true
			}
			if !strings.Contains(msg, "FDSTORE=1") || !strings.Contains(msg, "FDNAME="+name) {
				continue
			}
			cmsgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			fds, _ := unix.ParseUnixRights(&cmsgs[0])
			var st unix.Stat_t
			unix.Fstat(fds[0], &st)
			for _, fd := range fds {
				unix.Close(fd)
			}
			return st.Ino, removed
		}
	}
	kill := func(l *sockets.Listener) *os.File {
		t.Helper()
		fd, err := unix.FcntlInt(l.File().Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		unix.Shutdown(fd, unix.SHUT_RDWR)
		return os.NewFile(uintptr(fd), "dead")
	}

	if _, err := d.provisionSockets(t.Context(), cfg, inherited(cfg), map[string]*os.File{}, false); err != nil {
		t.Fatal(err)
	}
	l := d.socks["app.sock"]
	t.Cleanup(func() { l.Close() })
	if ino, _ := stored("app.sock"); ino != l.Inode() {
		t.Fatalf("fd store got inode %d; want %d", ino, l.Inode())
	}
	dead := kill(l)
	if _, err := l.EnsurePath(); err != nil {
		t.Fatal(err)
	}
	if ino, removed := stored("app.sock"); ino != l.Inode() || !removed {
		t.Errorf("after the repair the fd store got inode %d (removed first: %v); want the replacement %d", ino, removed, l.Inode())
	}

	// A restart: the fd store hands back the dead socket.
	l.Close()
	delete(d.socks, "app.sock")
	if _, err := d.provisionSockets(t.Context(), cfg, inherited(cfg), map[string]*os.File{"app.sock": dead}, false); err != nil {
		t.Fatal(err)
	}
	a := d.socks["app.sock"]
	t.Cleanup(func() { a.Close() })
	if a.Dead() != "" {
		t.Fatal("the dead socket from the fd store was adopted as it was")
	}
	if ino, removed := stored("app.sock"); ino != a.Inode() || !removed {
		t.Errorf("after adopting a dead socket the fd store got inode %d (removed first: %v); want the replacement %d", ino, removed, a.Inode())
	}
}

// `rm` of a socket path while its backend runs used to leave Apache
// answering 503 until the backend's next exit, and a restart failed
// because its probe dialed the missing path. Housekeeping puts the path
// back from its keep link within a round, and restart works after it.
func TestDeletedSocketPathIsRestored(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/app/", ""))
	h.get("/app/")
	sock := filepath.Join(h.dir, "s", "app.sock")
	before, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	for {
		fi, err := os.Lstat(sock)
		if err == nil {
			if !os.SameFile(fi, before) {
				t.Fatalf("%s came back as another file", sock)
			}
			break
		}
		if time.Since(removed) > 2*time.Second {
			t.Fatalf("socket path not restored 2 s after rm: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("socket path restored %v after rm", time.Since(removed).Round(time.Millisecond))
	if body := h.get("/app/"); !strings.Contains(body, "hello") {
		t.Fatalf("body after the restore = %q", body)
	}

	// Deleted right before a restart: the restart restores it itself.
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.client.Restart(ctx, "app"); err != nil {
		t.Fatalf("restart after rm of the socket path: %v", err)
	}
	h.get("/app/")
	if st := h.waitStatus(); !st.Backends[0].Ready {
		t.Errorf("status after the restart = %+v", st.Backends[0])
	}
}
