package doctor

import (
	"syscall"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// onDemand reports whether path is a socket of a sockvisor backend with
// start = "on-demand". The doctor never connects to one: a connection in
// its queue is what starts an idle backend, so probing would boot every
// idle site. An idle backend is healthy; liveness comes from sock_diag.
func (d *checkup) onDemand(path string) bool {
	c := d.opts.Sockvisor
	if c == nil {
		return false
	}
	for _, b := range c.Backends {
		if !b.OnDemand() {
			continue
		}
		for _, s := range b.Sockets {
			if s.Path == path {
				return true
			}
		}
	}
	return false
}

// onDemandLiveness fills s from sock_diag alone: a listener bound to the
// path is live (idle or running), none is a stale socket.
func (d *checkup) onDemandLiveness(path string, s *sockState) {
	if d.diag == nil {
		return // sock_diag unavailable: unknown, and not connected to
	}
	s.liveKnown, s.liveEv = true, "sock_diag (on-demand backend "+config.StartOnDemand+": not connected to, which would start it)"
	if _, ok := d.diag[path]; !ok {
		s.liveErr = syscall.ECONNREFUSED
	}
}
