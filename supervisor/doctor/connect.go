package doctor

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dial connects to path once without blocking, as Apache would but with
// EAGAIN for a full backlog instead of an endless wait, and closes at once.
// The error wraps the errno.
func dial(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("connect %s: %w", path, err)
	}
	return nil
}

// dialAs connects to path with Apache's credentials. Linux credentials
// belong to a thread, so a goroutine locks a thread, drops that thread
// alone to id with raw syscalls (Go's own Setuid would change every thread)
// and dials. It never unlocks: the runtime then discards the thread when
// the goroutine ends, so no other code ever runs with the lowered
// credentials. Needs root; SELinux still sees our own domain, not httpd_t.
func dialAs(path string, id Identity) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := dropThread(id); err != nil {
			errc <- err
			return
		}
		errc <- dial(path)
	}()
	return <-errc
}

func dropThread(id Identity) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("changing credentials: %w", unix.EPERM)
	}
	gids := make([]uint32, 0, len(id.Groups))
	gids = append(gids, id.Groups...)
	if len(gids) == 0 {
		gids = append(gids, uint32(id.GID))
	}
	if _, _, e := unix.RawSyscall(sysSetgroups, uintptr(len(gids)), uintptr(unsafe.Pointer(&gids[0])), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	keep := ^uintptr(0) // -1: leave unchanged
	if _, _, e := unix.RawSyscall(sysSetresgid, keep, uintptr(id.GID), keep); e != 0 {
		return fmt.Errorf("setresgid: %w", e)
	}
	if _, _, e := unix.RawSyscall(sysSetresuid, keep, uintptr(id.UID), keep); e != 0 {
		return fmt.Errorf("setresuid: %w", e)
	}
	return nil
}
