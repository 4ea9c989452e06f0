package config

import (
	"fmt"
	"net"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PresetDefaults is what a preset fills in when the backend leaves a key unset.
type PresetDefaults struct {
	Protocols []Protocol // allowed protocols; the first is the default
	Handoff   Handoff
	// Handoffs lists the handoffs the server can take; nil means any.
	Handoffs     []Handoff
	StopSignal   syscall.Signal
	ReloadSignal syscall.Signal // 0 means "replace"
}

// Presets lists every preset by name. The backend package adds each server's
// command-line flags; this table holds only what the config reports.
var Presets = map[Preset]PresetDefaults{
	PresetGunicorn: {Protocols: []Protocol{ProtocolHTTP}, Handoff: HandoffListenFDs, StopSignal: syscall.SIGTERM, ReloadSignal: syscall.SIGHUP},
	// uWSGI treats TERM as a brutal reload unless --die-on-term, which the preset adds.
	PresetUWSGI:   {Protocols: []Protocol{ProtocolUWSGI, ProtocolHTTP, ProtocolFCGI}, Handoff: HandoffListenFDs, StopSignal: syscall.SIGTERM, ReloadSignal: syscall.SIGHUP},
	PresetPHPFPM:  {Protocols: []Protocol{ProtocolFCGI}, Handoff: HandoffFPM, StopSignal: syscall.SIGQUIT, ReloadSignal: syscall.SIGUSR2},
	PresetGeneric: {Protocols: []Protocol{ProtocolHTTP, ProtocolFCGI, ProtocolUWSGI}, Handoff: HandoffListenFDs, StopSignal: syscall.SIGTERM},
	// uvicorn 0.17 takes the socket as --fd 3 and has no reload signal
	// (HUP kills a single process), so a reload replaces the process.
	PresetUvicorn: {Protocols: []Protocol{ProtocolHTTP}, Handoff: HandoffListenFDs, Handoffs: []Handoff{HandoffListenFDs, HandoffSelf}, StopSignal: syscall.SIGTERM},
	// Puma 5.6 adopts the socket through LISTEN_FDS. Its USR2 re-exec
	// would keep the pid, but replacing the process is what a restart
	// under load was measured with (0 failed).
	PresetPuma: {Protocols: []Protocol{ProtocolHTTP}, Handoff: HandoffListenFDs, Handoffs: []Handoff{HandoffListenFDs, HandoffSelf}, StopSignal: syscall.SIGTERM},
}

var (
	nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// Apache's unix: URL parser truncates at ? and # and does not decode %xx,
	// so paths and mounts are kept to a plain, safe alphabet.
	pathRe  = regexp.MustCompile(`^[A-Za-z0-9._/-]+$`)
	sockRe  = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`)
	mountRe = regexp.MustCompile(`^/[A-Za-z0-9._~/-]*$`)
)

type validator struct {
	file      string
	pos       map[string]string
	nonString map[string]bool
	blocks    map[string][]string
	problems  Problems
	// seen counts backend blocks by name, to find each one's own position.
	seen map[string]int
	// badMode holds the mode keys already reported as unparsable.
	badMode map[string]bool
}

// at reports a problem at the position of key, falling back to its block,
// then the file.
func (v *validator) at(key, format string, args ...any) {
	pos := v.file
	for k := key; k != ""; {
		if p, ok := v.pos[k]; ok {
			pos = p
			break
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	v.problems = append(v.problems, Problem{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func str[T ~string](p *string, def T) T {
	if p == nil {
		return def
	}
	return T(*p)
}

func (v *validator) build(fc *fileConfig) *Config {
	c := &Config{
		File:          v.file,
		SocketDir:     str(fc.SocketDir, "/run/sockvisor"),
		SocketOwner:   str(fc.SocketOwner, "root"),
		SocketGroup:   str(fc.SocketGroup, DetectApacheGroup()),
		SELinuxType:   str(fc.SELinuxType, "httpd_var_run_t"),
		ControlSocket: str(fc.ControlSocket, defaultControlSocket),
		MetricsListen: str(fc.MetricsListen, ""),
		LogLevel:      str(fc.LogLevel, "info"),
		LogFormat:     str(fc.LogFormat, "text"),
	}
	c.SocketDirMode = v.mode("socket_dir_mode", str(fc.SocketDirMode, "2750"), 0o7777)
	if c.SocketDirMode&0o002 != 0 {
		v.at("socket_dir_mode", "socket_dir_mode %s lets every user write to socket_dir, so anyone could replace a socket; drop the last digit's write bit, e.g. \"2750\"", c.SocketDirMode)
	}
	v.absPath("socket_dir", c.SocketDir)
	v.notSystemDir(c.SocketDir)
	v.absPath("control_socket", c.ControlSocket)
	v.controlSocketOutside(c)
	v.usableDirMode(c)
	v.selinuxTypeValid(c)
	if n := len(c.ControlSocket); n > MaxSocketPath {
		v.at("control_socket", "control_socket is %d bytes long; the limit for a socket path is %d; choose a shorter path", n, MaxSocketPath)
	}
	c.SocketUID = v.uid("socket_owner", c.SocketOwner)
	c.SocketGID = v.gid("socket_group", c.SocketGroup)
	if fc.Backlog != nil {
		c.Backlog = *fc.Backlog
		if c.Backlog < 0 || c.Backlog > 65535 {
			v.at("backlog", "backlog must be between 0 (the kernel's somaxconn) and 65535, not %d", c.Backlog)
		}
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil || port == "" {
			v.at("metrics_listen", "metrics_listen %q is not HOST:PORT; write it like \"127.0.0.1:9477\"", c.MetricsListen)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.at("metrics_listen", "metrics_listen %q has no valid port; use 1 to 65535", c.MetricsListen)
		}
	}
	v.oneOf("log_level", c.LogLevel, "trace", "debug", "info", "warn", "error")
	v.oneOf("log_format", c.LogFormat, "text", "json")

	fa := fc.Apache
	if fa == nil {
		fa = &fileApache{}
	}
	c.Apache = Apache{
		Flavor:     str(fa.Flavor, "auto"),
		ConfigFile: str(fa.ConfigFile, ""),
		Unit:       str(fa.Unit, ""),
		Reload:     str(fa.Reload, "dbus"),
		Apachectl:  fa.Apachectl,
	}
	v.noNUL("apache.apachectl", "apache.apachectl argument", c.Apache.Apachectl...)
	if len(c.Apache.Apachectl) > 0 {
		if _, err := exec.LookPath(c.Apache.Apachectl[0]); err != nil {
			v.at("apache.apachectl", "apache.apachectl %q is not an executable file; name apache2ctl, apachectl or httpd", c.Apache.Apachectl[0])
		}
	}
	v.oneOf("apache.flavor", c.Apache.Flavor, "auto", "debian", "rhel")
	v.oneOf("apache.reload", c.Apache.Reload, "dbus", "apachectl", "none")
	if c.Apache.ConfigFile != "" {
		v.absPath("apache.config_file", c.Apache.ConfigFile)
	}
	if u := c.Apache.Unit; u != "" && !strings.HasSuffix(u, ".service") {
		v.at("apache.unit", "apache.unit %q must name a service unit, e.g. apache2.service", u)
	}

	v.sites(c, fc.Sites)
	seenName := map[string]string{}
	seenSocket := map[string]string{}
	seenMount := map[string]string{}
	v.seen = map[string]int{}
	for i := range fc.Backends {
		name := fc.Backends[i].Name
		key := "backend." + name
		n := v.seen[name]
		v.seen[name]++
		if n > 0 {
			p := v.blocks[key][n]
			v.problems = append(v.problems, Problem{Pos: p, Msg: fmt.Sprintf("backend %q is defined twice (first at %s); backend names must be unique", name, stripCol(v.blocks[key][0]))})
			continue
		}
		b := v.backend(c, &fc.Backends[i])
		if b == nil {
			continue
		}
		seenName[b.Name] = b.Pos
		for _, s := range b.Sockets {
			if prev, ok := seenSocket[s.Name]; ok {
				v.at(key+".socket", "backend %q uses socket %s, which backend %q already uses; give each backend its own socket", b.Name, s.Name, prev)
			}
			seenSocket[s.Name] = b.Name
		}
		if b.Mount != "" {
			// Each site is a URL space of its own.
			m := b.Site + "\x00" + strings.TrimSuffix(b.Mount, "/")
			if prev, ok := seenMount[m]; ok {
				v.at(key+".mount", "mount %q is used by backends %q and %q; each URL path can go to one backend only", b.Mount, prev, b.Name)
			}
			seenMount[m] = b.Name
		}
		if b.Handoff == HandoffSelf && !canCreateIn(c, b) {
			v.at(key+".handoff", "backend %q binds its own socket (handoff = \"self\") but user %q cannot create files in socket_dir (%s %s:%s); set socket_dir_mode = \"2770\" with the user in group %s, or use an inherited handoff", b.Name, b.User, c.SocketDirMode, c.SocketOwner, c.SocketGroup, c.SocketGroup)
		}
		c.Backends = append(c.Backends, b)
	}
	v.checkWebConflicts(c)
	return c
}

// canCreateIn reports whether backend b's credentials may create a file in
// socket_dir as it will be set up.
func canCreateIn(c *Config, b *Backend) bool {
	switch {
	case b.UID == 0:
		return true
	case b.UID == c.SocketUID:
		return c.SocketDirMode&0o300 == 0o300
	}
	inGroup := b.GID == c.SocketGID
	for _, g := range b.Groups {
		inGroup = inGroup || int(g) == c.SocketGID
	}
	return inGroup && c.SocketDirMode&0o030 == 0o030
}

func (v *validator) backend(c *Config, fb *fileBackend) *Backend {
	key := "backend." + fb.Name
	if !nameRe.MatchString(fb.Name) {
		v.at(key, "backend name %q is invalid; use lowercase letters, digits, _ and -, starting with a letter or digit", fb.Name)
		return nil
	}
	b := &Backend{
		Name:         fb.Name,
		Pos:          stripCol(v.pos[key]),
		Preset:       str(fb.Preset, PresetGeneric),
		Command:      fb.Command,
		Websocket:    fb.Websocket != nil && *fb.Websocket,
		Mount:        str(fb.Mount, "/"),
		Instances:    1,
		User:         str(fb.User, "www-data"),
		Group:        str(fb.Group, ""),
		Directory:    str(fb.Directory, ""),
		Environment:  fb.Environment,
		DocumentRoot: str(fb.DocumentRoot, ""),
	}
	if b.Environment == nil {
		b.Environment = map[string]string{}
	}
	b.Notify = fb.Notify == nil || *fb.Notify
	if _, ok := b.Environment["NOTIFY_SOCKET"]; ok && b.Notify {
		v.at(key+".environment", "environment sets NOTIFY_SOCKET, but sockvisor gives backend %q its own notify socket; set notify = false to pass yours", fb.Name)
	}
	preset, ok := Presets[b.Preset]
	if !ok {
		v.at(key+".preset", "preset %q is unknown; use one of %s", b.Preset, strings.Join(presetNames(), ", "))
		return nil
	}
	b.Protocol = str(fb.Protocol, preset.Protocols[0])
	if !slices.Contains(preset.Protocols, b.Protocol) {
		v.at(key+".protocol", "protocol %q does not work with preset %q; use %s", b.Protocol, b.Preset, joinNames(preset.Protocols, " or "))
	}
	b.Handoff = str(fb.Handoff, preset.Handoff)
	v.oneOf(key+".handoff", string(b.Handoff), names(Handoffs)...)
	if preset.Handoffs != nil && slices.Contains(Handoffs, b.Handoff) && !slices.Contains(preset.Handoffs, b.Handoff) {
		v.at(key+".handoff", "handoff %q does not work with preset %q; use %s", b.Handoff, b.Preset, joinNames(preset.Handoffs, " or "))
	}
	if b.Websocket && b.Protocol != ProtocolHTTP {
		v.at(key+".websocket", "websocket = true needs protocol \"http\", not %q", b.Protocol)
	}

	if len(b.Command) == 0 {
		v.at(key, "backend %q has no command; set command = [\"/path/to/server\", \"args\"...]", b.Name)
	} else if strings.ContainsRune(b.Command[0], 0) {
		// noNUL below reports it; a path with NUL is no file to look up.
	} else if _, err := exec.LookPath(b.Command[0]); err != nil {
		v.at(key+".command", "command %q is not an executable file; install it or fix the path", b.Command[0])
	}
	v.noNUL(key+".command", "command argument", b.Command...)

	b.SocketMode = v.mode(key+".socket_mode", str(fb.SocketMode, "0660"), 0o777)
	b.Umask = v.mode(key+".umask", str(fb.Umask, "0007"), 0o777)
	if fb.Instances != nil {
		b.Instances = *fb.Instances
		if b.Instances < 1 || b.Instances > 64 {
			v.at(key+".instances", "instances must be between 1 and 64, not %d", b.Instances)
			b.Instances = 1
		}
	}
	if b.Mount != "" && !mountRe.MatchString(b.Mount) {
		v.at(key+".mount", "mount %q must start with / and contain only letters, digits and ._~/-, or be \"\" for no Apache config", b.Mount)
	}
	if b.Directory != "" {
		v.absPath(key+".directory", b.Directory)
	}
	if b.Protocol == ProtocolFCGI && b.Mount != "" {
		if b.DocumentRoot == "" {
			v.at(key, "backend %q speaks fcgi at mount %q but has no document_root; set document_root to the directory holding its scripts, e.g. \"/var/www/html\"", b.Name, b.Mount)
		} else {
			v.absPath(key+".document_root", b.DocumentRoot)
		}
	} else if b.DocumentRoot != "" {
		v.at(key+".document_root", "document_root only applies to protocol \"fcgi\" with a mount; remove it")
	}
	for _, k := range sortedKeys(b.Environment) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.at(key+".environment", "environment variable name %q is invalid", k)
		}
		v.noNUL(key+".environment", "environment variable "+k, b.Environment[k])
	}

	b.UID = v.uid(key+".user", b.User)
	b.GID, b.Groups = v.userGroups(key, b.User, b.Group)

	b.StopSignal = v.signal(key+".stop_signal", str(fb.StopSignal, ""), preset.StopSignal)
	b.StopTimeout = v.duration(key+".stop_timeout", str(fb.StopTimeout, "30s"), true)
	switch rs := str(fb.ReloadSignal, ""); {
	case rs == "replace" || (rs == "" && preset.ReloadSignal == 0):
		b.ReloadReplace = true
	default:
		b.ReloadSignal = v.signal(key+".reload_signal", rs, preset.ReloadSignal)
	}

	b.Ready = Ready{Path: "/", Timeout: 30 * time.Second}
	if r := fb.Ready; r != nil {
		b.Ready.Path = str(r.Path, "/")
		b.Ready.Timeout = v.duration(key+".ready.timeout", str(r.Timeout, "30s"), true)
	}
	if !strings.HasPrefix(b.Ready.Path, "/") {
		v.at(key+".ready.path", "ready.path %q must start with /", b.Ready.Path)
	}
	b.Restart = Restart{MinDelay: 100 * time.Millisecond, MaxDelay: 30 * time.Second}
	if r := fb.Restart; r != nil {
		b.Restart.MinDelay = v.duration(key+".restart.min_delay", str(r.MinDelay, "100ms"), true)
		b.Restart.MaxDelay = v.duration(key+".restart.max_delay", str(r.MaxDelay, "30s"), true)
	}
	if b.Restart.MinDelay > b.Restart.MaxDelay {
		v.at(key+".restart", "restart.min_delay (%s) is longer than restart.max_delay (%s)", b.Restart.MinDelay, b.Restart.MaxDelay)
	}
	b.Proxy = Proxy{Timeout: 60 * time.Second, PreserveHost: true}
	if p := fb.Proxy; p != nil {
		if p.Max != nil {
			b.Proxy.Max = *p.Max
			if b.Proxy.Max < 0 {
				v.at(key+".proxy.max", "proxy.max must be 0 (Apache's default) or more, not %d", b.Proxy.Max)
			}
		}
		b.Proxy.Timeout = v.duration(key+".proxy.timeout", str(p.Timeout, "60s"), true)
		b.Proxy.Retry = v.duration(key+".proxy.retry", str(p.Retry, "0s"), false)
		b.Proxy.Acquire = v.duration(key+".proxy.acquire", str(p.Acquire, "0s"), false)
		if p.PreserveHost != nil {
			b.Proxy.PreserveHost = *p.PreserveHost
		}
		if p.Keepalive != nil {
			b.Proxy.Keepalive = *p.Keepalive
		}
	}

	v.startMode(b, fb)
	v.usableSocketMode(c, b)
	v.noNUL(key+".ready.path", "ready.path", b.Ready.Path)
	v.web(c, b, fb)
	b.Sockets = v.sockets(c, b, str(fb.Socket, ""))
	return b
}

// sockets names one socket per instance and checks both path budgets.
func (v *validator) sockets(c *Config, b *Backend, name string) []Socket {
	key := "backend." + b.Name + ".socket"
	budgetKey := key
	if _, set := v.pos[key]; !set {
		if _, set := v.pos["socket_dir"]; set {
			budgetKey = "socket_dir"
		}
	}
	if name == "" {
		name = b.Name + ".sock"
	}
	if !sockRe.MatchString(name) {
		v.at(key, "socket %q must be a plain file name inside socket_dir (letters, digits, ._-, not starting with a dot), not a path", name)
		return nil
	}
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	var out []Socket
	for i := 0; i < b.Instances; i++ {
		n := name
		if i > 0 {
			n = fmt.Sprintf("%s-%d%s", stem, i, ext)
		}
		s := Socket{Backend: b.Name, Instance: i, Name: n, Path: filepath.Join(c.SocketDir, n)}
		if l := len(s.Path); l > MaxSocketPath {
			v.at(budgetKey, "socket path %s is %d bytes long; the kernel limit (sun_path) is %d bytes; shorten socket_dir or the socket name by %s", s.Path, l, MaxSocketPath, byteCount(l-MaxSocketPath))
		} else if l > MaxApachePath && b.Mount != "" {
			v.at(budgetKey, "socket path %s is %d bytes long; Apache's limit for a ProxyPass socket is %d bytes; shorten socket_dir or the socket name by %s", s.Path, l, MaxApachePath, byteCount(l-MaxApachePath))
		}
		out = append(out, s)
	}
	return out
}

// byteCount is "1 byte" or "N bytes".
func byteCount(n int) string {
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}

func (v *validator) mode(key, s string, max uint64) Mode {
	m, err := strconv.ParseUint(s, 8, 32)
	// A bare number such as 0750 is decimal to HCL: only a quoted string is unambiguous.
	if err != nil || m > max || s == "" || v.nonString[key] {
		if _, octal := strconv.ParseUint(s, 8, 32); v.nonString[key] && octal == nil {
			// HCL read a bare 0660 as the decimal 660: suggest those digits quoted.
			v.at(key, "%s must be a quoted octal string: HCL reads a bare number as decimal; write %s = \"%04s\"", lastField(key), lastField(key), s)
		} else {
			v.at(key, "%s %q is not an octal mode; write it as a string such as \"%04o\"", lastField(key), s, max&0o2770)
		}
		if v.badMode == nil {
			v.badMode = map[string]bool{}
		}
		v.badMode[key] = true
		return 0
	}
	return Mode(m)
}

func (v *validator) duration(key, s string, positive bool) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.at(key, "%s %q is not a duration; write it like \"500ms\", \"30s\" or \"2m\"", lastField(key), s)
	case d < 0 || (positive && d == 0):
		v.at(key, "%s must be greater than zero, not %q", lastField(key), s)
	}
	return d
}

func (v *validator) signal(key, s string, def syscall.Signal) syscall.Signal {
	if s == "" {
		return def
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		v.at(key, "%s %q is not a signal name; use e.g. \"TERM\", \"INT\", \"QUIT\", \"HUP\" or \"USR2\"", lastField(key), s)
	}
	return sig
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		v.at(key, "%s %q is not allowed; use one of %s", lastField(key), val, strings.Join(allowed, ", "))
	}
}

func (v *validator) absPath(key, p string) {
	switch {
	case !filepath.IsAbs(p):
		v.at(key, "%s %q must be an absolute path", lastField(key), p)
	case filepath.Clean(p) != p:
		v.at(key, "%s %q is not clean; write it as %q", lastField(key), p, filepath.Clean(p))
	case !pathRe.MatchString(p):
		v.at(key, "%s %q may contain only letters, digits and ._/- (Apache cannot address other characters in a socket path)", lastField(key), p)
	}
}

func (v *validator) uid(key, name string) int {
	u, err := user.Lookup(name)
	if err != nil {
		v.at(key, "user %q does not exist on this machine; create it or name an existing user", name)
		return -1
	}
	id, _ := strconv.Atoi(u.Uid)
	return id
}

func (v *validator) gid(key, name string) int {
	g, err := user.LookupGroup(name)
	if err != nil {
		v.at(key, "group %q does not exist on this machine; create it or name an existing group", name)
		return -1
	}
	id, _ := strconv.Atoi(g.Gid)
	return id
}

// userGroups resolves the backend's primary group (group, or the user's own)
// and the user's supplementary groups.
func (v *validator) userGroups(key, userName, group string) (int, []uint32) {
	u, err := user.Lookup(userName)
	if err != nil {
		return -1, nil // already reported by uid
	}
	gid, _ := strconv.Atoi(u.Gid)
	if group != "" {
		gid = v.gid(key+".group", group)
	}
	ids, _ := u.GroupIds()
	groups := make([]uint32, 0, len(ids))
	for _, s := range ids {
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			groups = append(groups, uint32(n))
		}
	}
	return gid, groups
}

// DetectApacheGroup returns Apache's run group on this machine: www-data on
// Debian, apache on RHEL and Fedora.
func DetectApacheGroup() string {
	for _, g := range []string{"www-data", "apache"} {
		if _, err := user.LookupGroup(g); err == nil {
			return g
		}
	}
	return "www-data"
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// stripCol turns "file:line:col" into "file:line".
func stripCol(pos string) string {
	if i := strings.LastIndexByte(pos, ':'); i > 0 {
		return pos[:i]
	}
	return pos
}

func lastField(key string) string {
	if i := strings.LastIndexAny(key, ".:"); i >= 0 {
		return key[i+1:]
	}
	return key
}

func presetNames() []string {
	var out []string
	for n := range Presets {
		out = append(out, string(n))
	}
	sort.Strings(out)
	return out
}

// names spells a list of typed names as strings.
func names[T ~string](list []T) []string {
	out := make([]string, len(list))
	for i, n := range list {
		out[i] = string(n)
	}
	return out
}

func joinNames[T ~string](list []T, sep string) string { return strings.Join(names(list), sep) }
