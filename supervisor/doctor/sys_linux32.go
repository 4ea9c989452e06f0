//go:build 386 || arm

package doctor

import "golang.org/x/sys/unix"

// On 32-bit x86 and ARM the plain calls take 16-bit ids; use the 32 variants.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetresuid = unix.SYS_SETRESUID32
)
