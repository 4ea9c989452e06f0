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

// Dir is the root of a proc filesystem: Proc, or a copy a test builds.
type Dir string

// Proc is the system's /proc; the package-level functions read it.
const Proc Dir = "/proc"

func (d Dir) file(pid int, name string) string {
	return string(d) + "/" + strconv.Itoa(pid) + "/" + name
}

// Stat is a process's name, state, parent, process group and start time.
type Stat struct {
	Comm      string // the executable's name, at most 15 bytes
	State     byte   // R, S, D, Z, X, ...
	PPID      int    // parent process
	PGID      int    // process group
	StartTime uint64 // clock ticks after boot; guards against PID reuse
}

// Zombie reports whether the process has exited but not been reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) { return Proc.Stat(pid) }

// Stat reads PID/stat.
func (d Dir) Stat(pid int) (Stat, error) {
	b, err := os.ReadFile(d.file(pid, "stat"))
	if err != nil {
		return Stat{}, err
	}
	// "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	j := strings.IndexByte(s, '(')
	if i < 0 || j < 0 || j > i {
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
	return Stat{Comm: s[j+1 : i], State: f[0][0], PPID: ppid, PGID: pgid, StartTime: start}, nil
}

// Cmdline returns the process's argv, or nil for a kernel thread, a zombie
// or a process that is gone.
func (d Dir) Cmdline(pid int) []string {
	b, err := os.ReadFile(d.file(pid, "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// Getenv returns key's value in the environment the process was started
// with, or "".
func (d Dir) Getenv(pid int, key string) string {
	b, err := os.ReadFile(d.file(pid, "environ"))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// Exe returns the path of the process's executable (without the kernel's
// " (deleted)" after an upgrade replaced it), or "".
func (d Dir) Exe(pid int) string {
	exe, _ := os.Readlink(d.file(pid, "exe"))
	return strings.TrimSuffix(exe, " (deleted)")
}
