package shim

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeExtraFDs makes every descriptor above 2+keep close at exec, so the
// backend gets fds 0-2, the keep descriptors handed off from fd 3, and
// nothing else. Without it, every fd sockvisor itself inherited without
// close-on-exec (a shell's `exec 7>>/root/secret.log`) reached the backend,
// running as another user, open as it was.
//
// It marks the fds close-on-exec rather than closing them: the Go runtime
// may hold descriptors of its own (the netpoller's epoll and wakeup fds,
// already close-on-exec) that it uses until execve, and closing them under
// it would crash the shim. execve then drops every marked fd atomically.
// close_range(2) with CLOSE_RANGE_CLOEXEC needs Linux 5.11; before that the
// fds listed in /proc/self/fd are marked one by one.
func closeExtraFDs(keep int) error { return CloseOnExecFrom(3 + keep) }

// CloseOnExecFrom marks every descriptor from first up close-on-exec.
// `sockvisor run` calls it for fd 3 up at start, so that nothing it
// inherited reaches any child it starts (apachectl, a shim) either; the fds
// stay open in sockvisor itself (systemd's fd store sockets among them).
func CloseOnExecFrom(first int) error {
	err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("close_range(%d, ~0, CLOSE_RANGE_CLOEXEC): %w", first, err)
	}
	return markCloexecFrom(first)
}

// markCloexecFrom sets FD_CLOEXEC on every open fd >= first, as listed in
// /proc/self/fd.
func markCloexecFrom(first int) error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing open descriptors: %w; mount /proc", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("listing open descriptors: %w", err)
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < first {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("marking fd %d close-on-exec: %w", fd, err) // EBADF: the listing's own fd, closed
		}
	}
	return nil
}
