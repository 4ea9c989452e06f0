package daemon

import (
	"fmt"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// HandoffChanges lists, one sentence each, the backends of cfg whose
// handoff switches between "self" and an inherited socket compared with
// the sockvisor running on cfg's socket_dir: `sockvisor reload` refuses
// those (see handoffChanges). It reads that sockvisor's state file in
// stateDir, so `sockvisor check` can say so before a reload; it returns nil
// when no sockvisor runs there or its state cannot be read.
func HandoffChanges(cfg *config.Config, stateDir string) []string {
	st, err := readState(statePath(stateDir, cfg.SocketDir))
	if err != nil || st == nil || !sameProcess(st.PID, st.StartTime) {
		return nil
	}
	held := map[string]bool{}
	for _, s := range st.Sockets {
		held[s.Name] = true
	}
	running := map[string]bool{}
	for _, p := range st.Processes {
		running[p.Backend] = true
	}
	var out []string
	for _, b := range cfg.Backends {
		if !running[b.Name] || len(b.Sockets) == 0 {
			continue
		}
		inheritedNow := held[b.Sockets[0].Name]
		var from string
		switch {
		case b.Handoff == config.HandoffSelf && inheritedNow:
			from = "an inherited socket"
		case b.Handoff != config.HandoffSelf && !inheritedNow:
			from = `handoff = "self"`
		default:
			continue
		}
		out = append(out, fmt.Sprintf("backend %q runs with %s in the running sockvisor, so `sockvisor reload` will refuse handoff = %q; give the backend a new name and socket file (Apache then moves over without a gap), or restart sockvisor", b.Name, from, b.Handoff))
	}
	return out
}
