package apache

import (
	"context"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

// alive reports whether pid is a running process. A zombie counts as dead:
// Apache's parent lingers as one until its parent reaps it.
func alive(pid int) bool { return procfs.Alive(pid) }

// procExists reports whether any process pid exists, a zombie included: what
// Apache's `-k start` takes for a running server.
func procExists(pid int) bool { return procfs.Exists(pid) }

// children returns the pids whose parent is pid, as a set.
func children(pid int) map[int]bool {
	out := map[int]bool{}
	for _, c := range procfs.Children(pid) {
		out[c] = true
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
