package sockets

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// setup prepares socket_dir under a fresh short directory.
func setup(t *testing.T, instances int, extra string) *config.Config {
	t.Helper()
	testutil.NeedRoot(t)
	cfg := testConfig(t, filepath.Join(testutil.ShortDir(t), "s"), instances, extra)
	log, _ := testLog()
	if err := PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func create(t *testing.T, cfg *config.Config, spec config.Socket) *Listener {
	t.Helper()
	log, _ := testLog()
	l, err := Create(cfg, spec, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// acceptOne accepts one pending connection on l within a second.
func acceptOne(t *testing.T, l *Listener) int {
	t.Helper()
	fd := int(l.File().Fd())
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 1000); err != nil || n != 1 {
		t.Fatalf("no connection pending on %s (poll: %d, %v)", l.Path(), n, err)
	}
	nfd, _, err := unix.Accept(fd)
	if err != nil {
		t.Fatal(err)
	}
	return nfd
}

func TestCreate(t *testing.T) {
	cfg := setup(t, 1, "backlog = 16")
	spec := cfg.Backends[0].Sockets[0]
	l := create(t, cfg, spec)

	st := lstat(t, spec.Path)
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		t.Fatalf("%s is not a socket", spec.Path)
	}
	if st.Uid != uidDaemon || st.Gid != gidWWW || st.Mode&0o7777 != 0o660 {
		t.Errorf("socket is %d:%d %04o; want %d:%d 0660", st.Uid, st.Gid, st.Mode&0o7777, uidDaemon, gidWWW)
	}
	keep := lstat(t, filepath.Join(cfg.SocketDir, "."+spec.Name+".keep"))
	if keep.Ino != st.Ino {
		t.Errorf("keep link has inode %d; the socket %d", keep.Ino, st.Ino)
	}
	if l.Path() != spec.Path || l.Spec() != spec {
		t.Errorf("Path, Spec = %s, %+v", l.Path(), l.Spec())
	}

	// Apache's group can connect; a user outside it cannot.
	if err := dialAs(t, spec.Path, 33, gidWWW); err != nil {
		t.Errorf("www-data cannot connect: %v", err)
	}
	if err := dialAs(t, spec.Path, uidNobody, gidNobody); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("nobody connecting = %v; want permission denied", err)
	}

	d, err := l.Diag()
	if err != nil {
		t.Fatal(err)
	}
	if d.Backlog != 16 || d.State != sockdiag.StateListen || d.Path != spec.Path {
		t.Errorf("kernel sees %+v; want listening on %s with backlog 16", d, spec.Path)
	}

	// Close keeps the file: a later sockvisor adopts or sweeps it.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if !exists(spec.Path) {
		t.Fatal("Close unlinked the socket")
	}
	if _, err := dial(spec.Path); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("connect after Close = %v; want ECONNREFUSED", err)
	}
	if _, err := l.EnsurePath(); !errors.Is(err, ErrClosed) {
		t.Errorf("EnsurePath after Close = %v; want ErrClosed", err)
	}
}

func TestCreateDefaultBacklogIsSomaxconn(t *testing.T) {
	cfg := setup(t, 1, "")
	l := create(t, cfg, cfg.Backends[0].Sockets[0])
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatalf("reading the kernel's somaxconn: %v", err)
	}
	want, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	d, err := l.Diag()
	if err != nil {
		t.Fatal(err)
	}
	if int(d.Backlog) != want {
		t.Errorf("backlog = %d; want somaxconn %d", d.Backlog, want)
	}
}

func TestBindPrivateUmask(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	old := unix.Umask(0)
	defer unix.Umask(old)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	path := filepath.Join(dir, "u.sock")
	if err := bindPrivate(fd, path); err != nil {
		t.Fatal(err)
	}
	if m := lstat(t, path).Mode & 0o777; m != 0o600 {
		t.Errorf("socket bound with mode %04o; want 0600 whatever the process umask", m)
	}
	if got := unix.Umask(0); got != 0 {
		t.Errorf("process umask changed to %04o", got)
	}
}

func TestSetBlocking(t *testing.T) {
	cfg := setup(t, 1, "")
	l := create(t, cfg, cfg.Backends[0].Sockets[0])
	fd := int(l.File().Fd())
	flags := func() int {
		f, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if flags()&unix.O_NONBLOCK != 0 {
		t.Fatal("a new socket is non-blocking")
	}
	// A backend (gunicorn, uWSGI, Node) sets O_NONBLOCK on the shared file
	// description; a duplicate, as a child's fd 3 is, shares it.
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dup)
	if err := unix.SetNonblock(dup, true); err != nil {
		t.Fatal(err)
	}
	if flags()&unix.O_NONBLOCK == 0 {
		t.Fatal("O_NONBLOCK set through a dup is not shared; test is wrong")
	}
	if err := l.SetBlocking(); err != nil {
		t.Fatal(err)
	}
	if flags()&unix.O_NONBLOCK != 0 {
		t.Error("SetBlocking left O_NONBLOCK set")
	}
}

func TestEnsurePathRestoresSameListener(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	l := create(t, cfg, spec)
	keep := filepath.Join(cfg.SocketDir, KeepName(spec.Name))
	ino := lstat(t, spec.Path).Ino

	if restored, err := l.EnsurePath(); err != nil || restored {
		t.Fatalf("EnsurePath on an intact socket = %v, %v", restored, err)
	}

	// A backend such as PHP-FPM unlinks the path when it exits.
	if err := os.Remove(spec.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(spec.Path); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("connect to deleted path = %v", err)
	}
	restored, err := l.EnsurePath()
	if err != nil || !restored {
		t.Fatalf("EnsurePath = %v, %v; want restored", restored, err)
	}
	st := lstat(t, spec.Path)
	if st.Ino != ino || st.Uid != uidDaemon || st.Gid != gidWWW || st.Mode&0o777 != 0o660 {
		t.Errorf("restored path: inode %d (want %d), %d:%d %04o", st.Ino, ino, st.Uid, st.Gid, st.Mode&0o777)
	}
	// A client reaches the very listener sockvisor holds.
	c, err := dial(spec.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	if _, err := unix.Write(c, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	s := acceptOne(t, l)
	defer unix.Close(s)
	buf := make([]byte, 8)
	if n, err := unix.Read(s, buf); err != nil || string(buf[:n]) != "ping" {
		t.Errorf("accepted connection read %q, %v", buf[:n], err)
	}

	// A missing keep link is recreated, not reported as a restore.
	if err := os.Remove(keep); err != nil {
		t.Fatal(err)
	}
	if restored, err := l.EnsurePath(); err != nil || restored {
		t.Fatalf("EnsurePath with keep gone = %v, %v", restored, err)
	}
	if lstat(t, keep).Ino != ino {
		t.Error("keep link not recreated on the socket's inode")
	}

	// Someone else's file at the path is reported and left alone.
	os.Remove(spec.Path)
	write(t, spec.Path, "theirs")
	if _, err := l.EnsurePath(); !errors.Is(err, ErrInUse) {
		t.Errorf("EnsurePath over a foreign file = %v; want ErrInUse", err)
	}
	if b, _ := os.ReadFile(spec.Path); string(b) != "theirs" {
		t.Error("EnsurePath touched a foreign file")
	}

	// With both names gone the socket cannot be reached any more.
	os.Remove(spec.Path)
	os.Remove(keep)
	if _, err := l.EnsurePath(); !errors.Is(err, ErrLost) {
		t.Errorf("EnsurePath with both names gone = %v; want ErrLost", err)
	}
}

func TestCreateRefusesLiveSocket(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	c := startChild(t, "listen", spec.Path, true)
	ino := lstat(t, spec.Path).Ino

	log, _ := testLog()
	_, err := Create(cfg, spec, log)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("Create over a live socket = %v; want ErrInUse", err)
	}
	if want := "pid " + strconv.Itoa(c.pid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
	oneSentence(t, err, spec.Path)
	if lstat(t, spec.Path).Ino != ino {
		t.Error("the live socket was replaced")
	}
}

func TestCreateRefusesBoundSocket(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	startChild(t, "bound", spec.Path, true) // bound, not listening: refuses connections
	log, _ := testLog()
	_, err := Create(cfg, spec, log)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "not listening") {
		t.Fatalf("Create over a bound socket = %v; want ErrInUse about not listening", err)
	}
	if !exists(spec.Path) {
		t.Error("a bound socket was removed")
	}
}

func TestCreateRefusesRegularFile(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	write(t, spec.Path, "precious")
	log, _ := testLog()
	_, err := Create(cfg, spec, log)
	if !errors.Is(err, ErrNotSocket) {
		t.Fatalf("Create over a regular file = %v; want ErrNotSocket", err)
	}
	oneSentence(t, err, spec.Path)
	if b, _ := os.ReadFile(spec.Path); string(b) != "precious" {
		t.Error("the regular file was changed")
	}
}

func TestCreateReplacesStaleSocket(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	staleSocket(t, spec.Path)
	staleSocket(t, filepath.Join(cfg.SocketDir, KeepName(spec.Name)))
	log, buf := testLog()
	l, err := Create(cfg, spec, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n := strings.Count(buf.String(), "removed stale socket"); n != 2 {
		t.Errorf("logged %d stale removals; want 2 (path and keep):\n%s", n, buf)
	}
	c, err := dial(spec.Path)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(c)
}

func TestRemove(t *testing.T) {
	cfg := setup(t, 2, "")
	a, b := cfg.Backends[0].Sockets[0], cfg.Backends[0].Sockets[1]
	la := create(t, cfg, a)
	lb := create(t, cfg, b)

	if err := la.Remove(); err != nil {
		t.Fatal(err)
	}
	if exists(a.Path) || exists(filepath.Join(cfg.SocketDir, KeepName(a.Name))) {
		t.Error("Remove left the path or the keep link")
	}

	// A path that no longer names this socket is not Remove's to delete.
	os.Remove(b.Path)
	write(t, b.Path, "other")
	if err := lb.Remove(); err != nil {
		t.Fatal(err)
	}
	if !exists(b.Path) {
		t.Error("Remove deleted a file that was not its socket")
	}
	if exists(filepath.Join(cfg.SocketDir, KeepName(b.Name))) {
		t.Error("Remove left the keep link")
	}
}

// inherit returns a duplicate of l's descriptor, as systemd's fd store
// would hand it back, and closes l.
func inherit(t *testing.T, l *Listener) *os.File {
	t.Helper()
	fd, err := unix.FcntlInt(l.File().Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "stored")
	t.Cleanup(func() { f.Close() })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAdopt(t *testing.T) {
	cfg := setup(t, 2, "")
	spec := cfg.Backends[0].Sockets[0]
	f := inherit(t, create(t, cfg, spec))
	ino := lstat(t, spec.Path).Ino

	// While sockvisor was down, the path vanished and the mode drifted.
	if err := os.Remove(spec.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(cfg.SocketDir, KeepName(spec.Name)), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := testLog()
	l, err := Adopt(cfg, spec, f, log)
	if err != nil {
		t.Fatal(err)
	}
	st := lstat(t, spec.Path)
	if st.Ino != ino || st.Mode&0o777 != 0o660 || st.Uid != uidDaemon || st.Gid != gidWWW {
		t.Errorf("adopted path: inode %d (want %d), %d:%d %04o", st.Ino, ino, st.Uid, st.Gid, st.Mode&0o777)
	}
	c, err := dial(spec.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	unix.Close(acceptOne(t, l))

	// A socket bound elsewhere is not adopted under another name.
	other := cfg.Backends[0].Sockets[1]
	if _, err := Adopt(cfg, other, f, log); !errors.Is(err, ErrMismatch) {
		t.Errorf("Adopt under the wrong name = %v; want ErrMismatch", err)
	}
	// Neither is a socket that does not listen.
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	nl := os.NewFile(uintptr(fd), "not-listening")
	defer nl.Close()
	if _, err := Adopt(cfg, spec, nl, log); !errors.Is(err, ErrMismatch) {
		t.Errorf("Adopt of a non-listening socket = %v; want ErrMismatch", err)
	}
}

func TestAdoptLost(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	f := inherit(t, create(t, cfg, spec))
	os.Remove(spec.Path)
	os.Remove(filepath.Join(cfg.SocketDir, KeepName(spec.Name)))
	staleSocket(t, spec.Path) // someone else's leftover takes the name

	log, _ := testLog()
	if _, err := Adopt(cfg, spec, f, log); !errors.Is(err, ErrLost) {
		t.Fatalf("Adopt with both names gone = %v; want ErrLost", err)
	}
	// The caller now creates a fresh socket in its place.
	l, err := Create(cfg, spec, log)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// FixSocketFile gives a socket that a "self" backend bound itself the
// configured owner, group and mode.
func TestFixSocketFile(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	startChild(t, "listen", spec.Path, false)
	testutil.WaitSocket(t, spec.Path, 10*time.Second)
	if err := FixSocketFile(cfg, spec); err != nil {
		t.Fatal(err)
	}
	st := lstat(t, spec.Path)
	if st.Uid != uidDaemon || st.Gid != gidWWW || st.Mode&0o7777 != 0o660 {
		t.Errorf("fixed socket is %d:%d %04o", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if err := dialAs(t, spec.Path, 33, gidWWW); err != nil {
		t.Errorf("www-data cannot connect after FixSocketFile: %v", err)
	}

	os.Remove(spec.Path)
	write(t, spec.Path, "x")
	if err := FixSocketFile(cfg, spec); !errors.Is(err, ErrNotSocket) {
		t.Errorf("FixSocketFile on a regular file = %v", err)
	}
}
