package apache

import "github.com/sockvisor/sockvisor/supervisor/config"

// keepaliveLines returns the directives that go inside an http backend's
// <Proxy> section when proxy.keepalive is false: Apache then sends
// "Connection: close" and opens a fresh connection per request.
//
// Why off by default: a server that is being stopped (uvicorn, Puma,
// gunicorn's async workers) closes its idle keep-alive connections, and
// Apache may already have picked one of them from its pool for the next
// request; that request fails with 502 or a reset (AH01102). Measured with
// uvicorn under wrk -c8 through Apache 2.4, 10 restarts: see
// TestRestartsUnderWrkKeepalive and the README. A connect over a Unix
// socket is cheap, so the fresh connection costs little throughput.
//
// fcgi and uwsgi workers do not reuse connections unless asked to, so
// they need nothing.
func keepaliveLines(be *config.Backend) []string {
	if be.Protocol != "http" || be.Proxy.Keepalive {
		return nil
	}
	return []string{"SetEnv proxy-nokeepalive 1"}
}

// keepaliveModules are the modules keepaliveLines needs for be.
func keepaliveModules(be *config.Backend) []string {
	if len(keepaliveLines(be)) > 0 {
		return []string{"env"}
	}
	return nil
}
