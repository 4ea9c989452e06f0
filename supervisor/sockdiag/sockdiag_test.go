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
