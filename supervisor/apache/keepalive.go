package apache

import "github.com/sockvisor/sockvisor/supervisor/config"

// noKeepalivePresets are the servers whose graceful stop breaks requests
// Apache sends on a pooled keep-alive connection, so each request gets a
// connection of its own (a Unix socket connect costs little):
//   - Puma 5.6 answers them 500 ("Read: IOError: stream closed in another
//     thread"): 1 and 2 in about 15,000 requests over 10 restarts; none in
//     3 runs of 23,000 without keep-alive, which also ran faster (test/apps).
//   - uvicorn 0.17 closes idle connections when it stops: 502, AH00898
//     "Error reading from remote server" (1 in 7,000 over 10 restarts, with
//     the preset's shutdown fix in place); with the fix and no keep-alive,
//     none in 6 runs of about 3,700 (test/apps), at a third of the rate.
var noKeepalivePresets = map[string]bool{"puma": true, "uvicorn": true}

// keepaliveSettings returns the <Proxy> lines that keep Apache from
// reusing connections to be, if its server needs that.
func keepaliveSettings(be *config.Backend) []string {
	if be.Protocol == "http" && noKeepalivePresets[be.Preset] {
		return []string{"SetEnv proxy-nokeepalive 1"}
	}
	return nil
}
