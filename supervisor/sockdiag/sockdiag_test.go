package sockdiag

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

func dial(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
}

func TestListeningQueueAndBacklog(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "q.sock")
	const backlog, pending = 7, 3
	fd := testutil.ListenUnix(t, path, backlog)
	for range pending {
		dial(t, path)
	}

	all, err := Listening()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := all[path]
	if !ok {
		t.Fatalf("Listening() has no entry for %s: %v", path, all)
	}
	if got.Queue != pending || got.Backlog != backlog {
		t.Errorf("Queue, Backlog = %d, %d; want %d, %d", got.Queue, got.Backlog, pending, backlog)
	}
	if got.State != StateListen || got.Type != unix.SOCK_STREAM {
		t.Errorf("State, Type = %d, %d; want %d, %d", got.State, got.Type, StateListen, unix.SOCK_STREAM)
	}

	var fst, lst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(path, &lst); err != nil {
		t.Fatal(err)
	}
	if got.Inode != fst.Ino {
		t.Errorf("Inode = %d; fstat of the fd says %d", got.Inode, fst.Ino)
	}
	if !got.Names(lst.Dev, lst.Ino) {
		t.Errorf("VFS dev/ino = %d/%d; lstat of %s says %d/%d", got.VFSDev, got.VFSInode, path, lst.Dev, lst.Ino)
	}

	one, err := Lookup(fst.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if one != got {
		t.Errorf("Lookup = %+v; Listening had %+v", one, got)
	}

	// Cross-check with ss, which reads the same kernel interface.
	if _, err := exec.LookPath("ss"); err == nil {
		out, err := exec.Command("ss", "-xlnH").Output()
		if err != nil {
			t.Fatalf("ss -xlnH: %v", err)
		}
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 5 && f[4] == path {
				found = true
				if f[2] != strconv.Itoa(pending) || f[3] != strconv.Itoa(backlog) {
					t.Errorf("ss shows Recv-Q %s Send-Q %s; want %d %d", f[2], f[3], pending, backlog)
				}
			}
		}
		if !found {
			t.Errorf("ss -xl does not list %s:\n%s", path, out)
		}
	}
}

func TestBoundIncludesNonListening(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "b.sock")
	testutil.ListenUnix(t, path, -1) // bound, never listening
	var lst unix.Stat_t
	if err := unix.Lstat(path, &lst); err != nil {
		t.Fatal(err)
	}

	all, err := Listening()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all[path]; ok {
		t.Errorf("Listening() lists %s, which never called listen", path)
	}

	bound, err := Bound()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range bound {
		if s.Names(lst.Dev, lst.Ino) {
			found = true
			if s.State != StateClose || s.Path != path {
				t.Errorf("bound socket = %+v; want state %d, path %s", s, StateClose, path)
			}
		}
	}
	if !found {
		t.Errorf("Bound() has no socket named by %s", path)
	}
}

func TestLookupMissing(t *testing.T) {
	// A regular file's inode is never a socket inode in sockfs.
	_, err := Lookup(1)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup(1) = %v; want ErrNotFound", err)
	}
}

func fdInode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestConnectionLifecycle pins down what readiness relies on: a client's
// connection reads as queued (Peer 0, no shutdown) until accept(2), then
// names the accepted socket's inode, and shows shutdown once the acceptor
// closes it; Pending lists a queued connection by its client's inode.
func TestConnectionLifecycle(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "c.sock")
	lfd := testutil.ListenUnix(t, path, 8)
	cfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cfd)
	if err := unix.Connect(cfd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	cino := fdInode(t, cfd)
	q, err := Connection(cino)
	if err != nil {
		t.Fatal(err)
	}
	if q.Peer != 0 || q.Shutdown != 0 || q.State != StateEstablished {
		t.Errorf("queued connection: %+v; want Peer 0, Shutdown 0, established", q)
	}
	pend, err := Pending(fdInode(t, lfd))
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 1 || pend[0] != cino {
		t.Errorf("Pending = %v; want the one queued connection, client inode %d", pend, cino)
	}

	afd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Connection(cino)
	if err != nil {
		t.Fatal(err)
	}
	if want := fdInode(t, afd); a.Peer != want || a.Shutdown != 0 {
		t.Errorf("accepted connection: %+v; want Peer %d (the accepted socket), Shutdown 0", a, want)
	}
	if pend, err := Pending(fdInode(t, lfd)); err != nil || len(pend) != 0 {
		t.Errorf("Pending after accept = %v, %v; want none", pend, err)
	}

	unix.Close(afd)
	c, err := Connection(cino)
	if err != nil {
		t.Fatal(err)
	}
	if c.Shutdown == 0 {
		t.Errorf("connection closed by its acceptor: %+v; want Shutdown set", c)
	}
	t.Logf("queued %+v, accepted %+v, closed %+v, pending %v", q, a, c, pend)
}
