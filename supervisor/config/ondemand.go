package config

import (
	"fmt"
	"time"
)

// Values of a backend's start key.
const (
	// StartEager starts the backend with sockvisor and keeps it running.
	StartEager = "eager"
	// StartOnDemand starts the backend on the first connection to one of
	// its sockets and stops it after idle_timeout without connections.
	StartOnDemand = "on-demand"
)

// DefaultIdleTimeout is idle_timeout when an on-demand backend sets none.
const DefaultIdleTimeout = 10 * time.Minute

// OnDemand reports whether b starts on the first connection.
func (b *Backend) OnDemand() bool { return b.Start == StartOnDemand }

// startMode reads start and idle_timeout.
func (v *validator) startMode(b *Backend, fb *fileBackend) {
	key := "backend." + b.Name
	b.Start = str(fb.Start, StartEager)
	v.oneOf(key+".start", b.Start, StartEager, StartOnDemand)
	if b.OnDemand() && b.Handoff == HandoffSelf {
		v.at(key+".start", "start = %q needs a socket sockvisor holds, but backend %q binds its own (handoff = \"self\"); use a handoff that inherits the socket or start = %q", StartOnDemand, b.Name, StartEager)
	}
	if fb.IdleTimeout == nil {
		if b.OnDemand() {
			b.IdleTimeout = DefaultIdleTimeout
		}
		return
	}
	if !b.OnDemand() {
		v.at(key+".idle_timeout", "idle_timeout only applies to start = %q; remove it or set start = %q", StartOnDemand, StartOnDemand)
		return
	}
	b.IdleTimeout = v.duration(key+".idle_timeout", *fb.IdleTimeout, false)
}

// OnDemandNotes are check's warnings about on-demand backends: Apache waits
// up to proxy.timeout for the response to the request that starts one, so
// a boot that may take ready.timeout must fit in it.
func OnDemandNotes(c *Config) []string {
	var notes []string
	for _, b := range c.Backends {
		if b.OnDemand() && b.Mount != "" && b.Ready.Timeout > b.Proxy.Timeout {
			notes = append(notes, fmt.Sprintf("%s: warning: backend %q starts on demand and may take up to ready.timeout %s to boot, longer than proxy.timeout %s: the first request after an idle stop can time out in Apache; raise proxy.timeout or lower ready.timeout", b.Pos, b.Name, b.Ready.Timeout, b.Proxy.Timeout))
		}
	}
	return notes
}
