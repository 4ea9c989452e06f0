// Package config loads and validates sockvisor.hcl.
//
// Invariant: a *Config returned by Load or Parse is fully defaulted and
// validated, every user and group name is resolved, and every socket path fits
// both the kernel's and Apache's budgets. Nothing downstream re-defaults or
// re-checks it. Parsing has no side effects besides reading the file and the
// user and group databases.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sockvisor/sockvisor/internal/errmark"
)

// DefaultPath is where Load looks when neither --config nor SOCKVISOR_CONFIG is set.
const DefaultPath = "/etc/sockvisor/sockvisor.hcl"

// EnvPath names the environment variable that overrides DefaultPath.
const EnvPath = "SOCKVISOR_CONFIG"

// Path budgets, in bytes, without the terminating NUL.
const (
	// MaxSocketPath is the longest path Go (and portable C) can bind or connect:
	// sun_path holds 108 bytes including the NUL.
	MaxSocketPath = 107
	// MaxApachePath is the longest socket path Apache 2.4 accepts in ProxyPass,
	// BalancerMember and <Proxy> (uds_path[96] including the NUL).
	MaxApachePath = 95
)

// Sentinel errors. Load wraps them, so callers test with errors.Is.
var (
	// ErrNotFound means the config file does not exist.
	ErrNotFound = errors.New("config: file not found")
	// ErrInvalid means the file exists but its content is wrong.
	ErrInvalid = errors.New("config: invalid")
)

// Mode is a permission mode as written in the config: an octal string such as
// "2750". It keeps the setuid, setgid and sticky bits in their Unix positions,
// so it can be passed straight to chmod(2).
type Mode uint32

// String formats the mode the way the config writes it.
func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

// Config is the whole validated configuration.
type Config struct {
	// File is the path the config was read from.
	File string

	SocketDir     string
	SocketDirMode Mode
	SocketOwner   string
	SocketGroup   string
	// SocketUID and SocketGID are SocketOwner and SocketGroup resolved.
	SocketUID int
	SocketGID int
	// SELinuxType is applied to socket_dir and the sockets where SELinux is enabled.
	SELinuxType   string
	ControlSocket string
	// Backlog is the listen(2) backlog of every backend socket; 0 means the
	// kernel's net.core.somaxconn.
	Backlog int
	// MetricsListen is an optional TCP address serving Prometheus metrics.
	MetricsListen string
	LogLevel      string
	LogFormat     string

	Apache Apache
	// Sites are the virtual hosts sockvisor renders, in config order.
	Sites    []*Site
	Backends []*Backend
}

// Apache says how sockvisor renders Apache's config and reloads it.
type Apache struct {
	Flavor     string // auto | debian | rhel
	ConfigFile string // "" means the flavor's default
	Unit       string // "" means the flavor's default
	Reload     string // dbus | apachectl | none
	// Apachectl is the argv prefix that runs Apache's -t, -M and -k graceful;
	// nil means the flavor's (apache2ctl or httpd).
	Apachectl []string
}

// Backend is one supervised application server.
type Backend struct {
	Name     string
	Preset   Preset
	Command  []string
	Protocol Protocol
	// Websocket makes Apache forward Upgrade: websocket (protocol http only).
	Websocket bool
	Handoff   Handoff
	// SocketMode is the mode of every socket file of this backend.
	SocketMode Mode
	// Mount is the URL path Apache forwards; "" means no Apache config.
	Mount     string
	Instances int
	User      string
	Group     string
	// UID, GID and Groups are User, Group and User's supplementary groups, resolved.
	UID    int
	GID    int
	Groups []uint32
	Umask  Mode
	// Directory is the working directory; "" means the user's home or /.
	Directory   string
	Environment map[string]string
	// Notify gives the backend a private NOTIFY_SOCKET (true unless
	// notify = false, which leaves NOTIFY_SOCKET to Environment).
	Notify bool
	// DocumentRoot is where PHP-FPM resolves SCRIPT_FILENAME (protocol fcgi).
	DocumentRoot string
	StopSignal   syscall.Signal
	StopTimeout  time.Duration
	// ReloadSignal is sent for a reload unless ReloadReplace is set, in which
	// case a new process is started on the same sockets before the old stops.
	ReloadSignal  syscall.Signal
	ReloadReplace bool
	Ready         Ready
	Restart       Restart
	// Start is StartEager or StartOnDemand (see ondemand.go).
	Start string
	// IdleTimeout stops an on-demand backend after this long with no
	// connection on its sockets; 0 never stops it once started.
	IdleTimeout time.Duration
	Proxy       Proxy

	// Site names the site block whose virtual host holds this backend's
	// Apache rules; "" means the global server config.
	Site string
	// Index is Apache's DirectoryIndex for document_root (fcgi).
	Index []string
	// Fallback is the front controller, a URL path relative to the mount,
	// that Apache serves for paths that are not files (FallbackResource);
	// "" means none.
	Fallback string
	// Htaccess lets .htaccess files in document_root override everything
	// (AllowOverride All).
	Htaccess bool
	// Aliases are URL paths Apache serves from directories, never proxied;
	// longest URL first.
	Aliases []Alias
	// FCGIProxyAll sends every request under the mount to FastCGI, as
	// sockvisor did before document_root was served by Apache. It bypasses
	// <Directory> and .htaccess rules; check warns about it.
	FCGIProxyAll bool
	// FPM tunes the PHP-FPM pool (preset php-fpm only).
	FPM FPM

	// Sockets holds one socket per instance, instance 0 first.
	Sockets []Socket
	// Pos is where the backend block starts, as "file:line".
	Pos string
}

// Ready configures the readiness probe.
type Ready struct {
	Path    string
	Timeout time.Duration
}

// Restart bounds the crash back-off.
type Restart struct {
	MinDelay time.Duration
	MaxDelay time.Duration
}

// Proxy holds Apache worker parameters for the backend.
type Proxy struct {
	// Max is the worker's max connections; 0 leaves Apache's default.
	Max     int
	Timeout time.Duration
	Retry   time.Duration
	// Acquire bounds the wait for a free connection; 0 leaves Apache's default.
	Acquire      time.Duration
	PreserveHost bool
	// Keepalive lets Apache reuse its connections to the backend (http only).
	Keepalive bool
}

// Socket is one listening socket of a backend instance.
type Socket struct {
	Backend  string
	Instance int
	// Name is the file name inside socket_dir, also used as the fd-store name.
	Name string
	// Path is the absolute path: SocketDir/Name.
	Path string
}

// Equal reports whether two backends would run identically; Pos is ignored so
// moving a block in the file does not restart it.
func (b *Backend) Equal(o *Backend) bool {
	x, y := *b, *o
	x.Pos, y.Pos = "", ""
	// What only Apache reads never restarts a backend.
	for _, z := range []*Backend{&x, &y} {
		z.Site, z.Index, z.Fallback, z.Htaccess, z.Aliases, z.FCGIProxyAll = "", nil, "", false, nil, false
	}
	return fmt.Sprintf("%#v", x) == fmt.Sprintf("%#v", y)
}

// Backend returns the backend with the given name, or nil.
func (c *Config) Backend(name string) *Backend {
	for _, b := range c.Backends {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// AllSockets lists every socket of every backend, in config order.
func (c *Config) AllSockets() []Socket {
	var out []Socket
	for _, b := range c.Backends {
		out = append(out, b.Sockets...)
	}
	return out
}

// Path returns the config path to use: explicit wins, then SOCKVISOR_CONFIG,
// then DefaultPath.
func Path(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if env := os.Getenv(EnvPath); env != "" {
		return env
	}
	return DefaultPath
}

// Load reads and validates the file at path, which must be a regular file
// (a FIFO or device is refused without blocking) of at most MaxFileSize.
func Load(path string) (*Config, error) {
	src, err := readConfigFile(path, defaultLimits)
	if errors.Is(err, ErrNotRegular) {
		return nil, err
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, errmark.Mark(fmt.Errorf("config file not found: %s does not exist; create it (examples are in /usr/share/doc/sockvisor/examples/) or pass --config", path), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read config %s: %w; check its permissions (sockvisor runs as root)", path, err)
	}
	return Parse(src, path)
}

// Problem is one thing wrong with the config, with its position.
type Problem struct {
	Pos string // "file:line:col", or the file name alone
	Msg string
}

func (p Problem) String() string { return p.Pos + ": " + p.Msg }

// Problems is every problem found in one file. It wraps ErrInvalid.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (ps Problems) Unwrap() error { return ErrInvalid }
