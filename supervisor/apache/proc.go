package apache

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat returns the state letter and parent pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) S ppid ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed stat")
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

// alive reports whether pid is a running process. A zombie counts as dead:
// Apache's parent lingers as one until its parent reaps it.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	state, _, err := procStat(pid)
	switch {
	case err == nil:
		return state != 'Z' && state != 'X'
	case errors.Is(err, os.ErrNotExist):
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// children returns the pids whose parent is pid.
func children(pid int) map[int]bool {
	out := map[int]bool{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, err := procStat(n); err == nil && ppid == pid {
			out[n] = true
		}
	}
	return out
}

// minSettle is the shortest watch after a reload. Measured: a parent that
// cannot reopen its logs exits about 100 ms after the signal.
const minSettle = 250 * time.Millisecond

// settle watches Apache's main process after a graceful restart. The parent
// re-reads its config and reopens its logs before it forks the new
// generation, so a child that was not there before means it got past the
// point where a config that passed configtest can still kill it. It returns
// ErrApacheDied if pid dies first, and nil once limit passes with pid alive
// (for example while old children still hold every slot). It waits at least
// minSettle, in case a child forked for load just before the signal.
func settle(ctx context.Context, pid int, before map[int]bool, limit time.Duration) error {
	if pid <= 0 {
		// No main PID to watch (systemd may not know it): only wait.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(minSettle, limit)):
			return nil
		}
	}
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if !alive(pid) {
			return ErrApacheDied
		}
		waited := time.Since(start)
		if waited >= limit {
			return nil
		}
		if waited >= minSettle {
			for c := range children(pid) {
				if !before[c] {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
