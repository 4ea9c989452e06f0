package shim

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resetSignals gives the backend default dispositions and an empty signal
// mask, as systemd does for a service. Go keeps an inherited SIG_IGN for
// SIGHUP and SIGINT (say, sockvisor under nohup) and would pass it on
// through execve. The caller's thread must stay locked until exec.
func resetSignals() {
	runtime.LockOSThread()
	// All-zero struct sigaction: SIG_DFL, no flags, empty mask.
	var act [4]uintptr
	for sig := 1; sig < 32; sig++ {
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) {
			continue
		}
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	}
	var empty unix.Sigset_t
	unix.PthreadSigmask(unix.SIG_SETMASK, &empty, nil)
}
