package sockets

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// A backend shares the listening socket's open file description, so any of
// its processes can shutdown(2) it: one unprivileged
// socket.socket(fileno=3).shutdown(SHUT_RDWR) sets RCV_SHUTDOWN on the
// listener for good. Measured on Linux 6.18: the socket still reports
// TCP_LISTEN to sock_diag and SO_ACCEPTCONN stays 1 (so Adopt accepts it
// from the fd store), yet connect(2) is refused and accept(2) fails in
// every later process. Nothing can undo a shutdown; the only repair is a
// new socket at the same path. poll(2) tells: POLLRDHUP is set on a
// listener only after SHUT_RD (SHUT_WR alone leaves it working).

// Dead reports why the listener no longer accepts connections, or "" if it
// is fine: it was shut down (poll reports POLLRDHUP or POLLHUP on it). A
// listening socket cannot otherwise stop listening (sock_diag would not
// tell anyway, see above). It is one poll(2) with no timeout, cheap enough
// to run on every socket twice a second.
func (l *Listener) Dead() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ""
	}
	return l.deadLocked()
}

func (l *Listener) deadLocked() string {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return ""
	}
	var revents int16
	var perr error
	if err := rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		_, perr = unix.Poll(pfd, 0)
		revents = pfd[0].Revents
	}); err != nil || perr != nil {
		return ""
	}
	if revents&(unix.POLLRDHUP|unix.POLLHUP) != 0 {
		return "a process holding it called shutdown(2) on it, so it refuses every connection"
	}
	return ""
}

// OnReplace registers fn, called with the new socket (still owned by the
// Listener) each time Repair replaces a dead one: the daemon uses it to swap
// the entry in systemd's fd store.
func (l *Listener) OnReplace(fn func(*os.File)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onReplace = fn
}

// Inode is the listening socket's own inode, as /proc/PID/fd shows it
// (socket:[Inode]); it changes when Repair replaces the socket.
func (l *Listener) Inode() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sockIno
}

// Repair replaces a dead listener (see Dead) with a new socket at the same
// path, with the owner, group, mode and SELinux label of the file it
// replaces, and reports whether it did. The new socket is bound at a
// temporary name in socket_dir, made ready and listening there, and renamed
// over the path (and its keep link), so clients never see the path missing.
// Processes still holding the old socket keep it; the next process the
// backend starts gets File(), the new one. EnsurePath calls it after every
// backend exit.
func (l *Listener) Repair() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	return l.repairLocked()
}

func (l *Listener) repairLocked() (bool, error) {
	why := l.deadLocked()
	if why == "" {
		return false, nil
	}
	if err := l.replaceLocked(); err != nil {
		return false, fmt.Errorf("socket %s is dead (%s) and could not be replaced: %w", l.spec.Path, why, err)
	}
	l.log.Warn("listening socket was dead; replaced it with a new one at the same path", "reason", why, "inode", l.sockIno)
	return true, nil
}

// replacementPath is where Repair binds the replacement for the socket at
// path before renaming it into place. bind(2) fixes a socket's address, so
// getsockname on a repaired socket keeps reporting this name.
func replacementPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".new")
}

// replaceLocked does the swap for repairLocked.
func (l *Listener) replaceLocked() error {
	path := l.spec.Path
	dir, name := filepath.Dir(path), filepath.Base(path)
	tmp := replacementPath(path)
	tmpKeep := filepath.Join(dir, "."+name+".keep.new")

	// Copy what the old file had: Create's socket_owner, socket_group,
	// socket_mode and label, without needing the config here.
	var old unix.Stat_t
	if err := unix.Lstat(path, &old); err != nil || old.Dev != l.dev || old.Ino != l.ino {
		if err := unix.Lstat(l.keep, &old); err != nil || old.Dev != l.dev || old.Ino != l.ino {
			return fail(ErrLost, err, path, "neither %s nor %s names the dead socket any more, so its owner and mode are unknown; restart sockvisor", path, l.keep)
		}
	}
	label := fileLabel(path)
	backlog := somaxconn()
	if d, err := sockdiag.Lookup(l.sockIno); err == nil && d.Backlog > 0 {
		backlog = int(d.Backlog)
	}

	for _, p := range []string{tmp, tmpKeep} {
		if err := ClearStale(p, l.log); err != nil {
			return err
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sockets: create socket for %s: %w", path, err)
	}
	ok := false
	var st unix.Stat_t
	defer func() {
		if !ok {
			unix.Close(fd)
			unlinkSame(tmp, &st)
			unlinkSame(tmpKeep, &st)
		}
	}()
	if _, err := bindSocket(fd, tmp); err != nil {
		return fail(nil, err, tmp, "cannot bind a replacement socket at %s: %v; check that socket_dir %s is writable by sockvisor", tmp, err, dir)
	}
	if err := unix.Lstat(tmp, &st); err != nil {
		return fmt.Errorf("sockets: lstat %s after bind: %w", tmp, err)
	}
	if err := fixFile(tmp, &st, int(old.Uid), int(old.Gid), old.Mode&0o7777, ""); err != nil {
		return err
	}
	if label != "" {
		if err := unix.Lsetxattr(tmp, "security.selinux", []byte(label), 0); err != nil {
			return fail(nil, err, tmp, "cannot copy SELinux label %q to the replacement socket %s: %v", label, tmp, err)
		}
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fmt.Errorf("sockets: listen on %s: %w", tmp, err)
	}
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return fmt.Errorf("sockets: fstat socket %s: %w", tmp, err)
	}
	if err := unix.Link(tmp, tmpKeep); err != nil {
		return fail(nil, err, tmpKeep, "cannot link the replacement socket to %s: %v", tmpKeep, err)
	}
	// The atomic step: from here clients connect to the new socket.
	if err := unix.Rename(tmp, path); err != nil {
		return fail(nil, err, path, "cannot rename the replacement socket over %s: %v", path, err)
	}
	ok = true
	if err := unix.Rename(tmpKeep, l.keep); err != nil {
		// The path serves; EnsurePath recreates the keep link next time.
		l.log.Warn("could not move the keep link to the replacement socket", "keep", l.keep, "error", err)
		unix.Unlink(tmpKeep)
	}
	oldF := l.f
	l.f = os.NewFile(uintptr(fd), path)
	l.sockIno, l.dev, l.ino = fst.Ino, st.Dev, st.Ino
	if err := oldF.Close(); err != nil {
		l.log.Warn("closing the dead socket", "error", err)
	}
	if l.onReplace != nil {
		l.onReplace(l.f)
	}
	return nil
}

// fileLabel is the file's whole SELinux context, or "" without one.
func fileLabel(path string) string {
	if !selinuxEnabled() {
		return ""
	}
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, "security.selinux", buf)
	if err != nil || n <= 0 {
		return ""
	}
	b := buf[:n]
	if b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}
