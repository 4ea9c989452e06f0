package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

func init() {
	commands["start"] = &command{
		summary: "start an on-demand backend now, without waiting for a connection",
		usage:   " BACKEND",
		help: `For a backend with start = "on-demand": starts its process at once and
waits until it is ready (exit 1 with its exit status and last output lines
if it fails). It then stops again after idle_timeout without connections.
A backend that already runs is left alone (exit 0, and it says so); an
eager backend is refused.`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run:   runStartStop(true),
	}
	commands["stop"] = &command{
		summary: "put an on-demand backend back to idle",
		usage:   " BACKEND",
		help: `For a backend with start = "on-demand": stops its processes gracefully
(stop_signal, then SIGKILL after stop_timeout) and watches its socket
again; the next connection starts it. Requests that arrive meanwhile wait
in the socket's backlog and are served by the next process. An eager
backend is refused: remove it from the config and reload to stop it.`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run:   runStartStop(false),
	}
}

func runStartStop(start bool) func(e *env, fs *flag.FlagSet, args []string) (int, error) {
	call := (*control.Client).Stop
	if start {
		call = (*control.Client).Start
	}
	return func(e *env, fs *flag.FlagSet, args []string) (int, error) {
		msg, code, err := callBackend(fs, args, call)
		if err != nil {
			return code, err
		}
		fmt.Fprintln(e.stdout, msg)
		return ExitOK, nil
	}
}

// writeIdle names, under the status table, when each idle backend last ran.
func writeIdle(e *env, st *daemon.StatusReport) {
	for _, b := range st.Backends {
		if b.State != backend.StateIdle {
			continue
		}
		if b.LastRunAt == nil {
			fmt.Fprintf(e.stdout, "%s: idle (on demand), not started yet\n", b.Name)
		} else {
			fmt.Fprintf(e.stdout, "%s: idle (on demand), last ran until %s (%s ago)\n", b.Name, b.LastRunAt.Format(time.RFC3339), time.Since(*b.LastRunAt).Round(time.Second))
		}
	}
}
