// Package procfs is sockvisor's one reader of /proc: the few /proc/PID/stat
// fields it needs, who is alive, in a process group or below a parent
// (procs.go), the pid lists of cgroup.procs files, and which processes hold
// a socket or pipe (/proc/PID/fd, fds.go). Callers keep their own policy
// (how long to wait, what to signal); this package never decides.
// Invariant: it only reads (kill(pid, 0) at most); a missing or malformed
// entry is an error or a skipped process, never a zero value passed off as
// a process.
package procfs

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// ErrMalformed means /proc/PID/stat did not parse.
var ErrMalformed = errors.New("procfs: malformed stat")

// Stat is a process's state, parent, process group and start time.
type Stat struct {
	State     byte   // R, S, D, Z, X, ...
	PPID      int    // parent process
	PGID      int    // process group
	StartTime uint64 // clock ticks after boot; guards against PID reuse
}

// Zombie reports whether the process has exited but not been reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	// "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, ErrMalformed
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, ErrMalformed
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Stat{}, ErrMalformed
	}
	return Stat{State: f[0][0], PPID: ppid, PGID: pgid, StartTime: start}, nil
}
