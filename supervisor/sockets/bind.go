package sockets

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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

// bindSocket binds under bindUmask if it can and under the process umask
// otherwise, which is still safe: the socket does not listen until its
// owner and mode are set. private reports which happened.
func bindSocket(fd int, path string) (private bool, err error) {
	err = bindPrivate(fd, path)
	if errors.Is(err, errNoPrivateUmask) {
		return false, unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	}
	return true, err
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
