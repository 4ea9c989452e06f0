// Package notify speaks systemd's sd_notify protocol, including the file
// descriptor store. Invariant: without NOTIFY_SOCKET every call is a no-op
// that returns nil, so sockvisor runs the same with or without systemd.
package notify

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends state changes to systemd.
type Notifier struct {
	socket string // "" when not under systemd
}

// New reads NOTIFY_SOCKET once; children never see it (the backend package
// builds their environment from an allow-list).
func New() *Notifier { return &Notifier{socket: os.Getenv("NOTIFY_SOCKET")} }

// Enabled reports whether systemd is listening.
func (n *Notifier) Enabled() bool { return n.socket != "" }

// Send sends the newline-joined KEY=VALUE lines in one datagram.
func (n *Notifier) Send(lines ...string) error {
	return n.send(strings.Join(lines, "\n"), nil)
}

// Ready reports start-up or a reload as finished, with a status line.
func (n *Notifier) Ready(status string) error {
	return n.Send(daemon.SdNotifyReady, "STATUS="+status)
}

// Reloading reports a reload in progress. MONOTONIC_USEC goes in the same
// datagram, as Type=notify-reload requires (systemd ≥ 253; older ones ignore it).
func (n *Notifier) Reloading() error {
	// go-systemd ends the line with "\n" and gives "" when the clock fails;
	// systemd then times the reload from the datagram's arrival.
	return n.Send(daemon.SdNotifyReloading, strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Stopping reports shutdown.
func (n *Notifier) Stopping() error { return n.Send(daemon.SdNotifyStopping) }

// Status sets the one-line status shown by systemctl status.
func (n *Notifier) Status(s string) error { return n.Send("STATUS=" + s) }

// Watchdog pets the watchdog.
func (n *Notifier) Watchdog() error { return n.Send(daemon.SdNotifyWatchdog) }

// WatchdogInterval returns how often to pet the watchdog (half of
// WatchdogSec), or 0 when the watchdog is off or not meant for this process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// Store hands f to systemd's file descriptor store under name, so the socket
// outlives a crash of sockvisor. systemd drops it silently unless the unit
// sets FileDescriptorStoreMax. It reaches the descriptor through
// SyscallConn, not (*os.File).Fd, which clears O_NONBLOCK (for a file from
// package net) on the description the backends serving on the socket
// share.
func (n *Notifier) Store(name string, f *os.File) error {
	if n.socket == "" {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("sd_notify FDSTORE %s: %w", name, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = n.send("FDSTORE=1\nFDNAME="+name, []int{int(fd)})
	}); err != nil {
		return fmt.Errorf("sd_notify FDSTORE %s: %w", name, err)
	}
	return serr
}

// Forget removes name from the file descriptor store.
func (n *Notifier) Forget(name string) error {
	return n.Send("FDSTOREREMOVE=1", "FDNAME="+name)
}

func (n *Notifier) send(state string, fds []int) error {
	if n.socket == "" {
		return nil
	}
	name := n.socket
	if strings.HasPrefix(name, "@") {
		name = "\x00" + name[1:]
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer unix.Close(s)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(s, []byte(state), oob, &unix.SockaddrUnix{Name: name}, 0); err != nil {
		return fmt.Errorf("sd_notify %q to %s: %w", strings.SplitN(state, "\n", 2)[0], n.socket, err)
	}
	return nil
}
