//go:build !386 && !arm

package doctor

import "golang.org/x/sys/unix"

// Credential syscalls taking 32-bit ids.
const (
	sysSetgroups = unix.SYS_SETGROUPS
	sysSetresgid = unix.SYS_SETRESGID
	sysSetresuid = unix.SYS_SETRESUID
)
