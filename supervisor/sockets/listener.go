package sockets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/filekind"
	"github.com/sockvisor/sockvisor/internal/osuser"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// KeepName is the hidden hard link that keeps socket name reachable: a
// backend may unlink the path, and the link restores it.
func KeepName(name string) string { return "." + name + ".keep" }

func keepPath(path string) string {
	return filepath.Join(filepath.Dir(path), KeepName(filepath.Base(path)))
}

// Listener is one listening socket in socket_dir, held as a raw descriptor so
// that closing it never unlinks the file. sockvisor never accepts on it.
type Listener struct {
	spec config.Socket
	keep string
	f    *os.File
	// sockIno is the socket's own inode (fstat of f), for sock_diag lookups.
	sockIno uint64
	// dev and ino identify the file both the path and the keep link name.
	dev, ino uint64
	// dirDev and dirIno identify socket_dir: later repairs (EnsurePath,
	// Remove) reopen it without following symlinks and check it is the
	// same directory.
	dirDev, dirIno uint64
	log            hclog.Logger

	mu     sync.Mutex // serialises EnsurePath, Repair, Close and Remove
	closed bool       // guarded by mu
	// onReplace is told about the new socket when Repair replaces f (see
	// replace.go); guarded by mu, as are f, sockIno, dev and ino.
	onReplace func(*os.File)
}

// Create makes the listening socket spec with socket_owner, socket_group, the
// backend's socket_mode and the SELinux type, removing a stale socket at the
// path first. A live socket or a non-socket file at the path is an error and
// left untouched. Call it with LockDir held, after PrepareDir. It opens
// socket_dir without following symlinks and works inside it as Dir.Create.
func Create(cfg *config.Config, spec config.Socket, log hclog.Logger) (*Listener, error) {
	d, err := openHeld(cfg.SocketDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Create(cfg, spec, log)
}

// Create is the package-level Create inside the held directory: the socket
// is bound, checked, chowned, chmodded and linked relative to it.
func (d *Dir) Create(cfg *config.Config, spec config.Socket, log hclog.Logger) (*Listener, error) {
	b, err := backendOf(cfg, spec)
	if err != nil {
		return nil, err
	}
	if d.path != cfg.SocketDir {
		return nil, fmt.Errorf("sockets: socket %s is not inside the held directory %s", spec.Path, d.path)
	}
	log = log.With("socket", spec.Path)
	name, keepName := spec.Name, KeepName(spec.Name)
	keep := keepPath(spec.Path)
	for _, n := range []string{name, keepName} {
		if err := d.clearStale(n, log); err != nil {
			return nil, err
		}
	}

	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sockets: create socket for %s: %w", spec.Path, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	private, err := d.bind(fd, name)
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, fail(ErrInUse, err, spec.Path, "socket %s appeared while sockvisor was creating it; is another sockvisor using socket_dir %s?", spec.Path, cfg.SocketDir)
	}
	if errors.Is(err, ErrUnsafe) {
		return nil, err // it landed outside socket_dir; the error says so
	}
	if err != nil {
		return nil, fail(nil, err, spec.Path, "cannot bind socket %s: %v; check that socket_dir %s exists and sockvisor runs as root", spec.Path, err, cfg.SocketDir)
	}
	if !private {
		log.Debug("bound under the process umask; this thread may not unshare its umask")
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("sockets: lstat %s after bind: %w", spec.Path, err)
	}
	defer func() {
		if !ok {
			unlinkSameAt(d.fd, name, &st)
		}
	}()
	if err := fixFileAt(d.fd, name, spec.Path, &st, cfg.SocketUID, cfg.SocketGID, uint32(b.SocketMode), cfg.SELinuxType); err != nil {
		return nil, err
	}
	backlog := cfg.Backlog
	if backlog == 0 {
		backlog = somaxconn()
	}
	// Only now can anybody connect: owner, group, mode and label are final.
	if err := unix.Listen(fd, backlog); err != nil {
		return nil, fmt.Errorf("sockets: listen on %s: %w", spec.Path, err)
	}
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return nil, fmt.Errorf("sockets: fstat socket %s: %w", spec.Path, err)
	}
	// linkat without AT_SYMLINK_FOLLOW links the entry itself.
	if err := unix.Linkat(d.fd, name, d.fd, keepName, 0); err != nil {
		return nil, fail(ErrInUse, err, keep, "cannot create the keep link %s for socket %s: %v; remove %s if it is a leftover", keep, spec.Path, err, keep)
	}
	ok = true
	log.Info("created socket", "owner", osuser.User(uint32(cfg.SocketUID)), "group", osuser.Group(uint32(cfg.SocketGID)),
		"mode", b.SocketMode.String(), "backlog", backlog)
	return &Listener{
		spec:    spec,
		keep:    keep,
		f:       os.NewFile(uintptr(fd), spec.Path),
		sockIno: fst.Ino,
		dev:     st.Dev,
		ino:     st.Ino,
		dirDev:  d.dev,
		dirIno:  d.ino,
		log:     log,
	}, nil
}

// Adopt takes over f, a listening socket inherited from systemd's fd store,
// as spec. It checks that f is a listening AF_UNIX stream socket bound to
// spec.Path, restores the path or keep link if one is gone, and re-applies
// owner, group, mode and label. If both names are gone it returns ErrLost:
// the socket can no longer be reached and the caller should Create a new one.
// On error f is left open and owned by the caller.
func Adopt(cfg *config.Config, spec config.Socket, f *os.File, log hclog.Logger) (*Listener, error) {
	b, err := backendOf(cfg, spec)
	if err != nil {
		return nil, err
	}
	log = log.With("socket", spec.Path)
	var (
		dom, typ, acc int
		name          string
		fst           unix.Stat_t
		inspectErr    error
	)
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) {
			s := int(fd)
			dom, inspectErr = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_DOMAIN)
			if inspectErr != nil {
				return
			}
			typ, _ = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TYPE)
			acc, _ = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
			if sa, err := unix.Getsockname(s); err == nil {
				if ua, ok := sa.(*unix.SockaddrUnix); ok {
					name = ua.Name
				}
			}
			inspectErr = unix.Fstat(s, &fst)
		})
	}
	if err == nil {
		err = inspectErr
	}
	if err != nil || dom != unix.AF_UNIX || typ != unix.SOCK_STREAM || acc != 1 {
		return nil, fail(ErrMismatch, err, spec.Path, "inherited descriptor %q for %s is not a listening unix stream socket; clear the fd store (systemctl stop sockvisor) and start again", f.Name(), spec.Path)
	}
	// A socket Repair replaced was bound under its temporary name.
	if name != spec.Path && name != replacementPath(spec.Path) {
		return nil, fail(ErrMismatch, nil, spec.Path, "inherited socket is bound to %q, not %s; clear the fd store (systemctl stop sockvisor) and start again", name, spec.Path)
	}

	d, err := openHeld(cfg.SocketDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	l := &Listener{spec: spec, keep: keepPath(spec.Path), f: f, sockIno: fst.Ino, dirDev: d.dev, dirIno: d.ino, log: log}
	if err := l.identify(d); err != nil {
		return nil, err
	}
	l.mu.Lock()
	// The fd store hands back a socket a backend shut down as readily as
	// a live one: replace it before anything is started on it.
	if _, err = l.repairLocked(); err == nil {
		_, err = l.ensureLocked(d)
	}
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	st := unix.Stat_t{Dev: l.dev, Ino: l.ino}
	if err := fixFileAt(d.fd, spec.Name, spec.Path, &st, cfg.SocketUID, cfg.SocketGID, uint32(b.SocketMode), cfg.SELinuxType); err != nil {
		return nil, err
	}
	log.Info("adopted socket from the fd store")
	return l, nil
}

// identify finds which file the adopted socket is bound to, clearing stale
// sockets that took its names, and sets l.dev and l.ino.
func (l *Listener) identify(d *Dir) error {
	diag, err := sockdiag.Lookup(l.sockIno)
	known := err == nil
	if err != nil && !errors.Is(err, sockdiag.ErrUnsupported) {
		return fmt.Errorf("sockets: identify inherited socket %s: %w", l.spec.Path, err)
	}
	if !known {
		l.log.Warn("sock_diag unavailable; trusting that the socket file at the path is the inherited socket")
	}
	found := false
	for _, n := range []string{l.spec.Name, KeepName(l.spec.Name)} {
		p := d.join(n)
		var st unix.Stat_t
		err := unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sockets: lstat %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK && (!known || diag.Names(st.Dev, st.Ino)) {
			if !found {
				l.dev, l.ino, found = st.Dev, st.Ino, true
				continue
			}
			if st.Dev == l.dev && st.Ino == l.ino {
				continue
			}
		}
		// Something else took the name: only a stale socket may be cleared.
		if err := d.clearStale(n, l.log); err != nil {
			return err
		}
	}
	if !found {
		return fail(ErrLost, nil, l.spec.Path, "inherited socket %s has no file left (both %s and %s are gone), so it cannot be reached; sockvisor must create a new socket", l.spec.Path, l.spec.Path, l.keep)
	}
	return nil
}

// File returns the listening socket. It stays owned by the Listener, and
// changes when Repair replaces a dead socket.
func (l *Listener) File() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// Path returns the socket's path.
func (l *Listener) Path() string { return l.spec.Path }

// Spec returns the configured socket.
func (l *Listener) Spec() config.Socket { return l.spec }

// Diag returns the kernel's view of the socket: accept queue and backlog.
func (l *Listener) Diag() (sockdiag.Stat, error) { return sockdiag.Lookup(l.Inode()) }

// SetBlocking clears O_NONBLOCK on the socket's open file description, which
// backends share and which Go and several servers set. Call it before every
// backend start: PHP-FPM workers spin on EAGAIN from a non-blocking listener.
func (l *Listener) SetBlocking() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	rc, err := l.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockets: %s: %w", l.spec.Path, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), false) }); err != nil {
		return fmt.Errorf("sockets: %s: %w", l.spec.Path, err)
	}
	if serr != nil {
		return fmt.Errorf("sockets: clear O_NONBLOCK on %s: %w", l.spec.Path, serr)
	}
	return nil
}

// EnsurePath restores the socket's path from its keep link if a backend
// deleted it (restored is then true), and recreates the keep link if it is
// missing. Both name the same inode, so clients reach the same listener. A
// different file at either name is an error and left alone. First, a
// listener a backend shut down is replaced by a new one (Repair).
func (l *Listener) EnsurePath() (restored bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	if _, err := l.repairLocked(); err != nil {
		return false, err
	}
	d, err := l.openDir()
	if err != nil {
		return false, err
	}
	defer d.Close()
	return l.ensureLocked(d)
}

// openDir reopens socket_dir without following symlinks and checks it is
// the directory the socket was made in.
func (l *Listener) openDir() (*Dir, error) {
	d, err := openHeld(filepath.Dir(l.spec.Path))
	if err != nil {
		return nil, err
	}
	if d.dev != l.dirDev || d.ino != l.dirIno {
		d.Close()
		return nil, fail(ErrUnsafe, nil, l.spec.Path, "socket_dir %s is no longer the directory socket %s was made in; someone replaced it: check who can write its parent", d.path, l.spec.Path)
	}
	return d, nil
}

func (l *Listener) ensureLocked(d *Dir) (restored bool, err error) {
	name, keepName := l.spec.Name, KeepName(l.spec.Name)
	pathOurs, err := l.ownsLocked(d, name)
	if err != nil {
		return false, err
	}
	keepOurs, err := l.ownsLocked(d, keepName)
	if err != nil {
		return false, err
	}
	switch {
	case pathOurs && keepOurs:
		return false, nil
	case pathOurs:
		if err := unix.Linkat(d.fd, name, d.fd, keepName, 0); err != nil {
			return false, fail(ErrLost, err, l.keep, "cannot recreate keep link %s for socket %s: %v", l.keep, l.spec.Path, err)
		}
		l.log.Info("recreated the keep link", "keep", l.keep)
		return false, nil
	case keepOurs:
		// link(2) fails rather than replace a file that appeared meanwhile.
		if err := unix.Linkat(d.fd, keepName, d.fd, name, 0); err != nil {
			return false, fail(ErrLost, err, l.spec.Path, "cannot restore deleted socket path %s from %s: %v", l.spec.Path, l.keep, err)
		}
		l.log.Info("restored deleted socket path from its keep link")
		return true, nil
	default:
		return false, fail(ErrLost, nil, l.spec.Path, "socket %s and its keep link %s are both gone, so the socket cannot be reached; restart the backend's socket with sockvisor reload or restart sockvisor", l.spec.Path, l.keep)
	}
}

// ownsLocked reports whether name in d names this socket's file; false if
// it is missing; an error if another file sits there.
func (l *Listener) ownsLocked(d *Dir, name string) (bool, error) {
	p := d.join(name)
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sockets: lstat %s: %w", p, err)
	case st.Dev == l.dev && st.Ino == l.ino:
		return true, nil
	}
	return false, fail(ErrInUse, nil, p, "%s is now %s other than sockvisor's socket (inode %d, expected %d); something re-created it: remove it and restart the backend", p, filekind.OfStat(st.Mode), st.Ino, l.ino)
}

// Close closes the descriptor and leaves both files in place: a later
// sockvisor can adopt or re-create them. It is safe to call twice.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closeLocked()
}

func (l *Listener) closeLocked() error {
	if l.closed {
		return nil
	}
	l.closed = true
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("sockets: close %s: %w", l.spec.Path, err)
	}
	return nil
}

// Remove closes the socket and unlinks its path and keep link, each only if
// it still names this socket's file.
func (l *Listener) Remove() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	errs := []error{l.closeLocked()}
	want := unix.Stat_t{Dev: l.dev, Ino: l.ino}
	d, err := l.openDir()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer d.Close()
	for _, n := range []string{l.spec.Name, KeepName(l.spec.Name)} {
		if _, err := unlinkSameAt(d.fd, n, &want); err != nil {
			errs = append(errs, fmt.Errorf("sockets: remove %s: %w", d.join(n), err))
		}
	}
	l.log.Info("removed socket")
	return errors.Join(errs...)
}

// FixSocketFile sets owner, group, mode and label on a socket a backend
// bound itself (handoff "self").
func FixSocketFile(cfg *config.Config, spec config.Socket) error {
	b, err := backendOf(cfg, spec)
	if err != nil {
		return err
	}
	d, err := openHeld(cfg.SocketDir)
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, spec.Name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail(ErrLost, err, spec.Path, "socket %s does not exist (%v); check that backend %q binds exactly this path", spec.Path, err, spec.Backend)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fail(ErrNotSocket, nil, spec.Path, "%s is %s, not a socket; check that backend %q binds exactly this path", spec.Path, filekind.OfStat(st.Mode), spec.Backend)
	}
	return fixFileAt(d.fd, spec.Name, spec.Path, &st, cfg.SocketUID, cfg.SocketGID, uint32(b.SocketMode), cfg.SELinuxType)
}

// ClearStale makes room at p: nothing there is fine, a stale socket is
// removed, anything else is an error naming what holds the path. It opens
// p's directory once and works relative to it, so the file it judges is the
// file it removes.
func ClearStale(p string, log hclog.Logger) error {
	dir := filepath.Dir(p)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // no directory, so nothing at p
		}
		return fmt.Errorf("sockets: open %s: %w", dir, err)
	}
	d, err := newDir(fd, dir)
	if err != nil {
		unix.Close(fd)
		return err
	}
	defer d.Close()
	return d.clearStale(filepath.Base(p), log)
}

// clearStale is ClearStale for the entry name of d.
func (d *Dir) clearStale(name string, log hclog.Logger) error {
	p := d.join(name)
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sockets: lstat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fail(ErrNotSocket, nil, p, "%s exists and is %s, not a socket; sockvisor never removes it: move it away or choose another socket name", p, filekind.OfStat(st.Mode))
	}
	r := probe(d.addr(name), DefaultProbeTimeout)
	switch r.state {
	case probeGone:
		return nil
	case probeLive:
		if r.pid > 0 {
			err := fail(ErrInUse, nil, p, "socket %s is in use: pid %d is listening on it; stop that process or choose another socket name", p, r.pid)
			err.(*Error).PID = r.pid
			return err
		}
		return fail(ErrInUse, nil, p, "socket %s is in use by another process; stop it or choose another socket name", p)
	case probeFull:
		return fail(ErrInUse, r.err, p, "socket %s is in use by another process whose accept queue is full; stop it or choose another socket name", p)
	case probeFailed:
		return fail(ErrInUse, r.err, p, "cannot tell whether socket %s is in use (%v); remove it by hand if it is stale", p, r.err)
	}
	b, _ := loadBound()
	if _, held := b.holds(&st); held {
		return fail(ErrInUse, nil, p, "socket %s is bound by another process that is not listening on it (yet); stop that process or choose another socket name", p)
	}
	_, why := b.judge(&st)
	removed, err := unlinkSameAt(d.fd, name, &st)
	if err != nil {
		return fail(nil, err, p, "cannot remove stale socket %s: %v", p, err)
	}
	if removed {
		log.Info("removed stale socket", "path", p, "reason", why)
	}
	return nil
}

// fixFileAt sets owner, group, mode and SELinux type on the socket file
// name in the directory dirfd (path is for messages), which must still be
// the file want describes. It works through an O_PATH descriptor opened
// without following symlinks, so a file swapped in meanwhile is never
// changed.
func fixFileAt(dirfd int, name, path string, want *unix.Stat_t, uid, gid int, mode uint32, seType string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(ErrLost, err, path, "cannot open socket %s to set its permissions: %v", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("sockets: fstat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Dev != want.Dev || st.Ino != want.Ino {
		return fail(ErrUnsafe, nil, path, "%s changed while sockvisor was setting its permissions; check who else writes socket_dir", path)
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fail(nil, err, path, "cannot chown socket %s to %d:%d: %v; sockvisor must run as root to set socket_owner and socket_group", path, uid, gid, err)
		}
	}
	// fchmod(2) on a socket descriptor would change the socket, not the
	// file; chmod through the O_PATH link changes the file.
	if err := unix.Fchmodat(unix.AT_FDCWD, fdPath(fd), mode, 0); err != nil {
		return fail(nil, err, path, "cannot chmod socket %s to %04o: %v", path, mode, err)
	}
	if err := applyLabel(fdPath(fd), seType); err != nil {
		return fail(nil, err, path, "cannot label socket %s with SELinux type %s: %v; check selinux_type", path, seType, err)
	}
	return nil
}

func unlinkSameAt(dirfd int, name string, want *unix.Stat_t) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Dev != want.Dev || st.Ino != want.Ino {
		return false, nil
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // someone else removed it first
		}
		return false, err
	}
	return true, nil
}

func backendOf(cfg *config.Config, spec config.Socket) (*config.Backend, error) {
	b := cfg.Backend(spec.Backend)
	if b == nil {
		return nil, fmt.Errorf("sockets: socket %s belongs to backend %q, which is not in the config", spec.Path, spec.Backend)
	}
	if spec.Path != filepath.Join(cfg.SocketDir, spec.Name) {
		return nil, fmt.Errorf("sockets: socket %s is not %s inside socket_dir %s", spec.Path, spec.Name, cfg.SocketDir)
	}
	return b, nil
}
