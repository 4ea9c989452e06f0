package sockets

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// shutdownAs has an unprivileged process shut down the listener it got as
// fd 3, as issue [K] item 3 did: socket.socket(fileno=3).shutdown(SHUT_RDWR).
func shutdownAs(t *testing.T, l *Listener, uid, gid uint32) {
	t.Helper()
	testutil.NeedBinary(t, "/usr/bin/python3")
	fd, err := unix.FcntlInt(l.File().Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	dup := os.NewFile(uintptr(fd), "dup")
	defer dup.Close()
	cmd := exec.Command("/usr/bin/python3", "-c", "import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RDWR)")
	cmd.ExtraFiles = []*os.File{dup}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("shutdown helper: %v", err)
	}
}

// A backend that shuts down its inherited listener kills it for everyone;
// EnsurePath (called after every backend exit) replaces it at the same path
// with the same owner, group and mode, and the replacement serves.
func TestEnsurePathReplacesShutDownListener(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	l := create(t, cfg, spec)
	keep := filepath.Join(cfg.SocketDir, KeepName(spec.Name))
	before := lstat(t, spec.Path)
	var stored *os.File
	l.OnReplace(func(f *os.File) { stored = f })

	if why := l.Dead(); why != "" {
		t.Fatalf("a fresh listener is dead: %s", why)
	}
	shutdownAs(t, l, 33, 33)
	if _, err := dial(spec.Path); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connect after shutdown = %v; want ECONNREFUSED (the bug)", err)
	}
	if why := l.Dead(); why == "" {
		t.Fatal("Dead() does not notice a listener that was shut down")
	}
	oldIno := l.Inode()

	if restored, err := l.EnsurePath(); err != nil || restored {
		t.Fatalf("EnsurePath = %v, %v", restored, err)
	}
	if why := l.Dead(); why != "" {
		t.Fatalf("still dead after EnsurePath: %s", why)
	}
	if l.Inode() == oldIno {
		t.Fatal("the socket was not replaced")
	}
	if stored != l.File() {
		t.Error("OnReplace was not told about the new socket")
	}
	after := lstat(t, spec.Path)
	if after.Ino == before.Ino {
		t.Error("the path still names the dead socket's file")
	}
	if after.Uid != before.Uid || after.Gid != before.Gid || after.Mode != before.Mode {
		t.Errorf("replacement is %d:%d %o; the dead socket was %d:%d %o", after.Uid, after.Gid, after.Mode, before.Uid, before.Gid, before.Mode)
	}
	if lstat(t, keep).Ino != after.Ino {
		t.Error("the keep link does not name the replacement")
	}
	for _, tmp := range []string{"." + spec.Name + ".new", "." + spec.Name + ".keep.new"} {
		if exists(filepath.Join(cfg.SocketDir, tmp)) {
			t.Errorf("temporary name %s left behind", tmp)
		}
	}
	c, err := dial(spec.Path)
	if err != nil {
		t.Fatalf("connect to the replacement: %v", err)
	}
	defer unix.Close(c)
	unix.Close(acceptOne(t, l))
	// A healthy listener is left alone.
	if ok, err := l.Repair(); ok || err != nil {
		t.Errorf("Repair of a live listener = %v, %v", ok, err)
	}
}

// The fd store hands back a shut-down socket after a restart; Adopt
// replaces it rather than serving a dead listener.
func TestAdoptReplacesShutDownListener(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	l := create(t, cfg, spec)
	shutdownAs(t, l, 33, 33)
	f := inherit(t, l)
	log, _ := testLog()
	a, err := Adopt(cfg, spec, f, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.File() == f {
		t.Fatal("Adopt kept the dead socket")
	}
	c, err := dial(spec.Path)
	if err != nil {
		t.Fatalf("connect after Adopt: %v", err)
	}
	defer unix.Close(c)
	unix.Close(acceptOne(t, a))
}

// TestAdoptRepairedSocket: a repaired socket keeps the temporary name it
// was bound under (getsockname), and it is what the fd store hands back
// after the next `systemctl restart`: Adopt must take it, not refuse it
// as a socket bound elsewhere.
func TestAdoptRepairedSocket(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	l := create(t, cfg, spec)
	shutdownAs(t, l, 33, 33)
	if restored, err := l.EnsurePath(); err != nil || restored {
		t.Fatalf("EnsurePath on a dead socket = %v, %v; want a repair", restored, err)
	}
	if l.Dead() != "" {
		t.Fatal("the socket is still dead after EnsurePath")
	}
	f := inherit(t, l)
	l.Close()
	log, _ := testLog()
	a, err := Adopt(cfg, spec, f, log)
	if err != nil {
		t.Fatalf("Adopt of a repaired socket: %v", err)
	}
	defer a.Close()
	c, err := dial(spec.Path)
	if err != nil {
		t.Fatalf("connect after Adopt: %v", err)
	}
	defer unix.Close(c)
	unix.Close(acceptOne(t, a))
}
