package sockdiag

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestActivityByPath pins what on-demand idle detection relies on, on this
// kernel: a connection waiting in the queue shows as Queue, an accepted
// one keeps the listener's name on its server end (Conns) while the
// client end stays unbound, and both vanish once closed.
func TestActivityByPath(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "a.sock")
	lfd := testutil.ListenUnix(t, path, 8)
	get := func() Activity {
		t.Helper()
		all, err := ActivityByPath()
		if err != nil {
			t.Fatal(err)
		}
		return all[path]
	}
	if a := get(); a != (Activity{}) {
		t.Fatalf("idle listener: %+v, want no connections and an empty queue", a)
	}
	cfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cfd)
	if err := unix.Connect(cfd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	a := get()
	if a.Queue != 1 {
		t.Fatalf("queued connection: %+v, want Queue 1", a)
	}
	t.Logf("queued connection: %+v (the embryo server end counts in Conns on this kernel if > 0)", a)
	sfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if a := get(); a.Queue != 0 || a.Conns != 1 {
		unix.Close(sfd)
		t.Fatalf("accepted connection: %+v, want Queue 0 and Conns 1", a)
	}
	unix.Close(sfd)
	unix.Close(cfd)
	if a := get(); a != (Activity{}) {
		t.Fatalf("after close: %+v, want nothing", a)
	}
}
