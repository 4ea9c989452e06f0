package config

// Preset names the application server a backend runs; it picks the
// server's flags, default protocol, handoff and signals (Presets).
type Preset string

const (
	PresetGunicorn Preset = "gunicorn"
	PresetUWSGI    Preset = "uwsgi"
	PresetPHPFPM   Preset = "php-fpm"
	PresetUvicorn  Preset = "uvicorn"
	PresetPuma     Preset = "puma"
	PresetGeneric  Preset = "generic"
)

// Protocol is what Apache speaks to a backend over its socket.
type Protocol string

const (
	ProtocolHTTP  Protocol = "http"
	ProtocolFCGI  Protocol = "fcgi"
	ProtocolUWSGI Protocol = "uwsgi"
)

// Handoff is how a backend's process gets its listening socket.
type Handoff string

const (
	// HandoffListenFDs passes the socket as fd 3 with LISTEN_FDS=1.
	HandoffListenFDs Handoff = "listen-fds"
	// HandoffFPM passes it as php-fpm's FPM_SOCKETS.
	HandoffFPM Handoff = "fpm"
	// HandoffStdin passes it as fd 0 (uWSGI, inetd style).
	HandoffStdin Handoff = "stdin"
	// HandoffSelf lets the server bind the path itself; nothing is inherited.
	HandoffSelf Handoff = "self"
)

// Handoffs lists every handoff, in the order the docs give them.
var Handoffs = []Handoff{HandoffListenFDs, HandoffFPM, HandoffStdin, HandoffSelf}
