package sockets

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// bindUmask is the umask a socket is bound under: the file starts as 0600,
// so until it is chowned and chmodded only root could use it.
const bindUmask = 0o177

var errNoPrivateUmask = errors.New("cannot give a thread its own umask")

// bindPrivate binds fd to path with bindUmask. umask(2) is per process, so it
// runs on a thread of its own that unshare(CLONE_FS) detached from the
// process's umask; other goroutines creating files meanwhile are unaffected.
// The thread is never unlocked, so it dies with the goroutine instead of
// running other code with the wrong umask. If unshare is not allowed (a
// seccomp filter), it returns errNoPrivateUmask without binding.
func bindPrivate(fd int, path string) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			runtime.UnlockOSThread() // nothing changed; the thread is reusable
			done <- errors.Join(errNoPrivateUmask, err)
			return
		}
		unix.Umask(bindUmask)
		done <- unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	}()
	return <-done
}

// bind binds fd to name inside the held directory, under bindUmask if it
// can and under the process umask otherwise, which is still safe: the
// socket does not listen until its owner and mode are set. private reports
// which happened.
//
// The address must be the socket's real path: getsockname(2) returns what
// was bound, and backends use it (Gunicorn logs it and unlinks it at exit,
// PHP-FPM matches FPM_SOCKETS against it), so binding a name relative to
// the held directory or through /proc/self/fd would break them. The path
// can resolve elsewhere if socket_dir was swapped meanwhile, so bind then
// checks with sock_diag that the socket's file is the entry in the held
// directory; if not, it removes the stray file and fails, before anything
// chowns, links or listens on it (until then it is a root-only 0600 socket
// nobody can connect to).
func (d *Dir) bind(fd int, name string) (private bool, err error) {
	path := d.join(name)
	err = bindPrivate(fd, path)
	private = !errors.Is(err, errNoPrivateUmask)
	if !private {
		err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	}
	if err != nil {
		return private, err
	}
	return private, d.boundHere(fd, name)
}

// boundHere checks that the socket fd is bound to the file name in d, and
// removes the file it is bound to otherwise.
func (d *Dir) boundHere(fd int, name string) error {
	var sst, st unix.Stat_t
	if err := unix.Fstat(fd, &sst); err != nil {
		return err
	}
	diag, derr := sockdiag.Lookup(sst.Ino)
	if errors.Is(derr, sockdiag.ErrUnsupported) {
		// Without sock_diag, settle for a socket at the name in the
		// held directory.
		if unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			return nil
		}
	}
	err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil && derr == nil && diag.Names(st.Dev, st.Ino) {
		return nil
	}
	path := d.join(name)
	if derr == nil {
		removeStray(path, diag)
	}
	return fail(ErrUnsafe, errors.Join(err, derr), path, "socket %s was bound outside socket_dir %s: the path was swapped while sockvisor bound it, so sockvisor removed it and stopped; check who else can write the parent of %s", path, d.path, d.path)
}

// removeStray unlinks the file the socket diag is bound to, which the path
// reached when the socket was bound but may not reach now (the swap may
// have been undone). It retries for up to 200ms while the path names some
// other file, and never unlinks a file that is not that socket's.
func removeStray(path string, diag sockdiag.Stat) {
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK && diag.Names(st.Dev, st.Ino) {
			if removed, _ := unlinkSameAt(unix.AT_FDCWD, path, &st); removed {
				return
			}
		}
		runtime.Gosched()
	}
}

// somaxconn is the kernel's cap on listen(2) backlogs, the default backlog.
func somaxconn() int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			return n
		}
	}
	return unix.SOMAXCONN
}
