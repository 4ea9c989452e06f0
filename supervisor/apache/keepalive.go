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
// uvicorn under wrk -c8 through Apache 2.4, 10 restarts in 15 s: 4-10
// non-2xx and 61 socket errors with reuse, 0-1 and 6-14 without (the rest
// is uvicorn dropping connections it accepted but had not read). The price
// is throughput where nothing restarts: uvicorn served 3700-4240 req/s
// instead of 4890-6280 (three interleaved runs each). Gunicorn's sync
// workers close every connection anyway, so they lose nothing. See
// TestRestartsUnderWrkKeepalive.
//
// fcgi and uwsgi workers do not reuse connections unless asked to, so
// they need nothing.
func keepaliveLines(be *config.Backend) []string {
	if be.Protocol != config.ProtocolHTTP || be.Proxy.Keepalive {
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
