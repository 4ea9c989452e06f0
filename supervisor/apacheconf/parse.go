// Package apacheconf reads what Apache will actually run with: loaded modules
// and run identity from Apache itself, and every `unix:` proxy target from
// the enabled config files.
//
// Invariant: nothing here changes Apache or its files, and the config parser
// never panics or loops on hostile input: includes, file sizes and file
// counts are bounded, and unreadable or malformed parts become Warnings.
package apacheconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Limits that keep a hostile or runaway config from exhausting memory.
const (
	maxIncludeDepth = 32
	maxFiles        = 4096
	maxFileSize     = 8 << 20
	maxTotalSize    = 64 << 20
	maxTargets      = 100000
	maxWarnings     = 200
	// maxLineExpand and maxExpand bound ${VAR} expansion, which
	// "Define X ${X}${X}" lines would otherwise double per line.
	maxLineExpand = 64 << 10
	maxExpand     = 16 << 20
)

// ErrMainConfig means the main config file could not be read.
var ErrMainConfig = errors.New("apacheconf: cannot read the main config file")

// ParseOptions tunes Parse. The zero value reads everything.
type ParseOptions struct {
	// ServerRoot resolves relative Include paths; "" means the main file's directory.
	ServerRoot string
	// Vars expands ${VAR} (Debian's envvars); Define adds to them.
	Vars map[string]string
	// Defines are -D names for <IfDefine>.
	Defines []string
	// Modules are the loaded modules (LoadedModules) for <IfModule>; nil
	// means every <IfModule> section is read whatever its condition.
	Modules map[string]bool
}

// Config is what Parse found.
type Config struct {
	Main       string
	ServerRoot string
	// Files lists every file read, in the order Apache reads them.
	Files []string
	// DefaultRuntimeDir is the directive's value resolved, or "".
	DefaultRuntimeDir string
	// ErrorLogs lists every file ErrorLog names (main server and vhosts),
	// resolved against ServerRoot; pipes and syslog are left out.
	ErrorLogs []string
	// PidFile is the PidFile directive resolved against ServerRoot, or "".
	PidFile string
	// User and Group are the main server's User and Group directives, as
	// written after ${VAR} expansion; "" when absent.
	User, Group string
	Targets     []Target
	// Listens holds every Listen directive's address as written, e.g.
	// "80", "127.0.0.1:8080" or "[::]:443".
	Listens []string
	// Roots maps URL paths to directories: every DocumentRoot ("/") and
	// Alias, in config order.
	Roots []Root
	// ServerNames maps a <VirtualHost>'s file:line to its ServerName
	// ("" key: the main server's).
	ServerNames map[string]string
	// Warnings are parts that could not be read or made no sense.
	Warnings []string
}

// Root is one URL path Apache serves from a directory: DocumentRoot
// (URL "/") or Alias.
type Root struct {
	URL, Dir string
	// VirtualHost is the enclosing <VirtualHost>'s file:line, "" for the
	// main server.
	VirtualHost string
	Pos         string
}

// Param is one key=value worker parameter.
type Param struct {
	Key, Value string
}

// Target is one directive that sends requests to a `unix:` socket.
type Target struct {
	// Directive is ProxyPass, ProxyPassMatch, BalancerMember, SetHandler,
	// Proxy (a <Proxy "unix:..."> section) or RewriteRule.
	Directive string
	File      string
	Line      int
	// Raw is the URL as written, e.g. "unix:/run/sv/a.sock|http://a.invalid/".
	Raw string
	// Socket is the path as written; Path is the absolute path Apache
	// connects to (relative ones resolve against DefaultRuntimeDir).
	Socket string
	Path   string
	// URL is the part after "|"; "" when missing. Scheme is lowercased.
	URL    string
	Scheme string
	Host   string
	// Worker is Apache's worker name for URL: the key Apache shares workers by.
	Worker string
	// Mount is the URL path or regex forwarded (ProxyPass, ProxyPassMatch,
	// or the enclosing <Location>); "" otherwise.
	Mount string
	// Balancer is the enclosing balancer:// name for BalancerMember.
	Balancer string
	// VirtualHost is the file:line of the enclosing <VirtualHost>, "" for
	// the main server.
	VirtualHost string
	Params      []Param
}

// Pos returns "file:line".
func (t Target) Pos() string { return fmt.Sprintf("%s:%d", t.File, t.Line) }

// Param returns the value of a worker parameter, case-insensitively.
func (t Target) Param(key string) (string, bool) {
	for _, p := range t.Params {
		if strings.EqualFold(p.Key, key) {
			return p.Value, true
		}
	}
	return "", false
}

// Parse reads the main config file and everything it includes.
func Parse(mainFile string, opts ParseOptions) (*Config, error) {
	p := newParser(mainFile, opts, osFS{})
	return p.parse()
}

// fileSystem is what the parser reads through; tests and the fuzzer use a
// map instead of the disk.
type fileSystem interface {
	ReadFile(name string) ([]byte, error)
	Glob(pattern string) ([]string, error)
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
}

type osFS struct{}

func (osFS) ReadFile(n string) ([]byte, error) {
	f, err := os.Open(n)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", n)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", n, maxFileSize)
	}
	b := make([]byte, 0, st.Size())
	buf := make([]byte, 32<<10)
	for len(b) <= maxFileSize {
		n, err := f.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	return b, nil
}
func (osFS) Glob(p string) ([]string, error)         { return filepath.Glob(p) }
func (osFS) Stat(n string) (fs.FileInfo, error)      { return os.Stat(n) }
func (osFS) ReadDir(n string) ([]fs.DirEntry, error) { return os.ReadDir(n) }

type section struct {
	name string // lowercased, without "<"
	arg  string
	pos  string
	// skip is true when a condition (<IfModule>, <IfDefine>) is false.
	skip bool
}

type parser struct {
	fs       fileSystem
	cfg      *Config
	vars     map[string]string
	defines  map[string]bool
	modules  map[string]bool
	stack    []section
	total    int
	expanded int
	// maxFiles and maxTotal default to the package limits; the fuzzer
	// lowers them to keep each run short.
	maxFiles, maxTotal int
	truncated          bool
	// proxy is the index of the target a <Proxy "unix:..."> section
	// defined, or -1, so ProxySet inside it adds parameters.
	proxy []int
}

func newParser(mainFile string, opts ParseOptions, fsys fileSystem) *parser {
	root := opts.ServerRoot
	if root == "" {
		root = filepath.Dir(mainFile)
	}
	p := &parser{
		fs:       fsys,
		cfg:      &Config{Main: mainFile, ServerRoot: root},
		vars:     map[string]string{},
		maxFiles: maxFiles,
		maxTotal: maxTotalSize,
		defines:  map[string]bool{},
	}
	if opts.Modules != nil {
		// A copy: LoadModule lines add to it as Apache's own list grows.
		p.modules = map[string]bool{}
		for k, v := range opts.Modules {
			p.modules[k] = v
		}
	}
	for k, v := range opts.Vars {
		p.vars[k] = v
	}
	for _, d := range opts.Defines {
		p.defines[d] = true
	}
	return p
}

func (p *parser) warn(format string, args ...any) {
	if len(p.cfg.Warnings) < maxWarnings {
		p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf(format, args...))
	}
}

func (p *parser) parse() (*Config, error) {
	src, err := p.fs.ReadFile(p.cfg.Main)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMainConfig, p.cfg.Main, err)
	}
	p.parseFile(p.cfg.Main, src, 0)
	for _, s := range p.stack {
		p.warn("%s: <%s> is never closed", s.pos, s.name)
	}
	p.finish()
	return p.cfg, nil
}

func (p *parser) finish() {
	rt := p.cfg.DefaultRuntimeDir
	if rt == "" {
		// Apache's compiled-in default, relative to ServerRoot.
		rt = filepath.Join(p.cfg.ServerRoot, "logs")
	}
	for i := range p.cfg.Targets {
		t := &p.cfg.Targets[i]
		if t.Socket == "" {
			continue
		}
		if filepath.IsAbs(t.Socket) {
			t.Path = filepath.Clean(t.Socket)
		} else {
			t.Path = filepath.Join(rt, t.Socket)
		}
	}
}

// logical is one config line after joining continuations.
type logical struct {
	text string
	line int
}

// lines splits src into logical lines: CR stripped, a trailing backslash
// continues the line, blank lines and comments dropped.
func lines(src []byte) []logical {
	var out []logical
	var cur strings.Builder
	start := 0
	raw := strings.Split(string(src), "\n")
	for i, l := range raw {
		l = strings.TrimSuffix(l, "\r")
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(l, "\\") && i < len(raw)-1 {
			cur.WriteString(strings.TrimSuffix(l, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(l)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" || text[0] == '#' {
			continue
		}
		out = append(out, logical{text: text, line: start})
	}
	return out
}

func (p *parser) parseFile(name string, src []byte, depth int) {
	if p.truncated {
		return
	}
	if len(p.cfg.Files) >= p.maxFiles || p.total+len(src) > p.maxTotal {
		p.truncated = true
		p.warn("%s: config too large (over %d files or %d bytes); the rest was not read", name, p.maxFiles, p.maxTotal)
		return
	}
	p.total += len(src)
	p.cfg.Files = append(p.cfg.Files, name)
	base := len(p.stack)
	for _, l := range lines(src) {
		p.line(name, l, depth)
	}
	// A section left open in an included file ends with it.
	if len(p.stack) > base {
		for _, s := range p.stack[base:] {
			p.warn("%s: <%s> is never closed", s.pos, s.name)
		}
		p.stack = p.stack[:base]
		p.proxy = trimProxy(p.proxy, base)
	}
}

func trimProxy(proxy []int, n int) []int {
	if len(proxy) > n {
		return proxy[:n]
	}
	return proxy
}

func (p *parser) skipping() bool {
	for _, s := range p.stack {
		if s.skip {
			return true
		}
	}
	return false
}

func (p *parser) line(file string, l logical, depth int) {
	pos := fmt.Sprintf("%s:%d", file, l.line)
	text := p.expand(l.text)
	if strings.HasPrefix(text, "</") {
		p.closeSection(pos, strings.TrimSuffix(strings.TrimSpace(text[2:]), ">"))
		return
	}
	if strings.HasPrefix(text, "<") {
		p.openSection(file, l.line, pos, text)
		return
	}
	if p.skipping() {
		return
	}
	args := splitArgs(text)
	if len(args) == 0 {
		return
	}
	dir := strings.ToLower(args[0])
	args = args[1:]
	switch dir {
	case "include", "includeoptional":
		if len(args) == 1 {
			p.include(pos, args[0], dir == "includeoptional", depth)
		} else {
			p.warn("%s: %s needs exactly one argument", pos, dir)
		}
	case "serverroot":
		if len(args) == 1 {
			p.cfg.ServerRoot = filepath.Clean(args[0])
		}
	case "define":
		if len(args) >= 1 {
			p.defines[args[0]] = true
			if len(args) >= 2 {
				p.vars[args[0]] = args[1]
			}
		}
	case "undefine":
		if len(args) == 1 {
			delete(p.defines, args[0])
			delete(p.vars, args[0])
		}
	case "pidfile":
		if len(args) == 1 {
			p.cfg.PidFile = p.rootRel(args[0])
		}
	case "defaultruntimedir":
		if len(args) == 1 {
			p.cfg.DefaultRuntimeDir = p.rootRel(args[0])
		}
	case "errorlog":
		if len(args) == 1 && !strings.HasPrefix(args[0], "|") && !strings.HasPrefix(strings.ToLower(args[0]), "syslog") {
			f := p.rootRel(args[0])
			if !slices.Contains(p.cfg.ErrorLogs, f) {
				p.cfg.ErrorLogs = append(p.cfg.ErrorLogs, f)
			}
		}
	case "listen":
		if len(args) >= 1 {
			p.cfg.Listens = append(p.cfg.Listens, args[0])
		}
	case "documentroot":
		if len(args) == 1 {
			p.cfg.Roots = append(p.cfg.Roots, Root{URL: "/", Dir: p.rootRel(args[0]), VirtualHost: p.vhost(), Pos: pos})
		}
	case "alias":
		if len(args) == 2 {
			p.cfg.Roots = append(p.cfg.Roots, Root{URL: args[0], Dir: p.rootRel(args[1]), VirtualHost: p.vhost(), Pos: pos})
		}
	case "servername":
		if len(args) >= 1 {
			if p.cfg.ServerNames == nil {
				p.cfg.ServerNames = map[string]string{}
			}
			p.cfg.ServerNames[p.vhost()] = args[0]
		}
	case "user", "group":
		if len(args) == 1 && p.vhost() == "" {
			if dir == "user" {
				p.cfg.User = args[0]
			} else {
				p.cfg.Group = args[0]
			}
		}
	case "loadmodule":
		if len(args) >= 1 && p.modules != nil {
			p.modules[strings.TrimSuffix(args[0], "_module")] = true
		}
	case "proxypass", "proxypassmatch":
		p.proxyPass(file, l.line, dir, args)
	case "balancermember":
		p.balancerMember(file, l.line, args)
	case "sethandler":
		if len(args) >= 1 {
			h := args[0]
			if len(h) > 6 && strings.EqualFold(h[:6], "proxy:") && isUnix(h[6:]) {
				p.add(file, l.line, "SetHandler", h[6:], p.location(), "", nil)
			}
		}
	case "proxyset":
		if n := len(p.proxy); n > 0 && p.proxy[n-1] >= 0 {
			t := &p.cfg.Targets[p.proxy[n-1]]
			t.Params = append(t.Params, params(args)...)
		}
	case "rewriterule":
		if len(args) >= 2 && isUnix(args[1]) {
			p.add(file, l.line, "RewriteRule", args[1], args[0], "", nil)
		}
	}
}

func (p *parser) openSection(file string, line int, pos, text string) {
	body := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(text[1:]), ">"))
	name, arg := body, ""
	if i := strings.IndexAny(body, " \t"); i >= 0 {
		name, arg = body[:i], strings.TrimSpace(body[i+1:])
	}
	s := section{name: strings.ToLower(name), arg: arg, pos: pos}
	args := splitArgs(arg)
	switch s.name {
	case "ifmodule":
		s.skip = len(args) == 1 && !p.moduleCond(args[0])
	case "ifdefine":
		if len(args) == 1 {
			n, neg := strings.CutPrefix(args[0], "!")
			s.skip = p.defines[n] == neg
		}
	}
	p.stack = append(p.stack, s)
	// Keep p.proxy aligned with p.stack: one entry per open section.
	idx := -1
	if s.name == "proxy" && len(args) >= 1 && isUnix(args[0]) && !p.skipping() {
		idx = p.add(file, line, "Proxy", args[0], "", "", args[1:])
	}
	for len(p.proxy) < len(p.stack)-1 {
		p.proxy = append(p.proxy, -1) // defensive; the two grow together
	}
	p.proxy = append(p.proxy[:len(p.stack)-1], idx)
}

func (p *parser) closeSection(pos, name string) {
	name = strings.ToLower(strings.TrimSpace(name))
	for i := len(p.stack) - 1; i >= 0; i-- {
		if p.stack[i].name == name {
			for _, s := range p.stack[i+1:] {
				p.warn("%s: <%s> is never closed", s.pos, s.name)
			}
			p.stack = p.stack[:i]
			p.proxy = trimProxy(p.proxy, i)
			return
		}
	}
	p.warn("%s: </%s> without a matching <%s>", pos, name, name)
}

// moduleCond evaluates an <IfModule> argument: "mod_proxy.c",
// "proxy_module", optionally negated with "!".
func (p *parser) moduleCond(arg string) bool {
	if p.modules == nil {
		return true
	}
	name, neg := strings.CutPrefix(arg, "!")
	switch {
	case strings.HasSuffix(name, ".c"):
		name = strings.TrimPrefix(strings.TrimSuffix(name, ".c"), "mod_")
	default:
		name = strings.TrimSuffix(name, "_module")
	}
	return p.modules[name] != neg
}

// location returns the innermost <Location>/<LocationMatch> argument.
func (p *parser) location() string {
	for i := len(p.stack) - 1; i >= 0; i-- {
		if n := p.stack[i].name; n == "location" || n == "locationmatch" {
			if a := splitArgs(p.stack[i].arg); len(a) > 0 {
				return a[0]
			}
		}
	}
	return ""
}

func (p *parser) proxyPass(file string, line int, dir string, args []string) {
	name := "ProxyPass"
	if dir == "proxypassmatch" {
		name = "ProxyPassMatch"
	}
	if len(args) == 0 {
		return
	}
	// Inside <Location> the path is the section's and the URL comes first.
	mount := p.location()
	if mount == "" || !(isUnix(args[0]) || strings.Contains(args[0], "://") || args[0] == "!") {
		if len(args) < 2 {
			return
		}
		mount, args = args[0], args[1:]
	}
	if isUnix(args[0]) {
		p.add(file, line, name, args[0], mount, "", args[1:])
	}
}

func (p *parser) balancerMember(file string, line int, args []string) {
	bal := ""
	for i := len(p.stack) - 1; i >= 0; i-- {
		if p.stack[i].name == "proxy" {
			if a := splitArgs(p.stack[i].arg); len(a) > 0 && strings.HasPrefix(strings.ToLower(a[0]), "balancer://") {
				bal = a[0]
			}
			break
		}
	}
	if len(args) >= 2 && strings.HasPrefix(strings.ToLower(args[0]), "balancer://") {
		bal, args = args[0], args[1:]
	}
	if len(args) >= 1 && isUnix(args[0]) {
		p.add(file, line, "BalancerMember", args[0], "", strings.TrimSuffix(bal, "/"), args[1:])
	}
}

// add records a target and returns its index, or -1 past maxTargets.
func (p *parser) add(file string, line int, directive, raw, mount, balancer string, rest []string) int {
	if len(p.cfg.Targets) >= maxTargets {
		if !p.truncated {
			p.warn("%s:%d: more than %d unix: targets; the rest are ignored", file, line, maxTargets)
			p.truncated = true
		}
		return -1
	}
	t := Target{
		Directive:   directive,
		File:        file,
		Line:        line,
		Raw:         raw,
		Mount:       mount,
		Balancer:    balancer,
		VirtualHost: p.vhost(),
		Params:      params(rest),
	}
	t.Socket, t.URL = SplitUnixURL(raw)
	t.Scheme, t.Host, t.Worker = WorkerName(t.URL, directive == "ProxyPassMatch")
	p.cfg.Targets = append(p.cfg.Targets, t)
	return len(p.cfg.Targets) - 1
}

func (p *parser) vhost() string {
	for _, s := range p.stack {
		if s.name == "virtualhost" {
			return s.pos
		}
	}
	return ""
}

// params keeps key=value words; flags such as nocanon are dropped.
func params(args []string) []Param {
	var out []Param
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && k != "" {
			out = append(out, Param{Key: k, Value: v})
		}
	}
	return out
}

func (p *parser) rootRel(f string) string {
	if filepath.IsAbs(f) {
		return filepath.Clean(f)
	}
	return filepath.Join(p.cfg.ServerRoot, f)
}

func (p *parser) include(pos, pattern string, optional bool, depth int) {
	if depth >= maxIncludeDepth {
		p.warn("%s: includes nested deeper than %d; not followed (a loop?)", pos, maxIncludeDepth)
		return
	}
	pattern = p.rootRel(pattern)
	var files []string
	if strings.ContainsAny(pattern, "*?[") {
		matches, err := p.fs.Glob(pattern)
		if err != nil {
			p.warn("%s: bad Include pattern %q: %v", pos, pattern, err)
			return
		}
		sort.Strings(matches)
		for _, m := range matches {
			if st, err := p.fs.Stat(m); err == nil && !st.IsDir() {
				files = append(files, m)
			}
		}
	} else {
		st, err := p.fs.Stat(pattern)
		switch {
		case err != nil:
			if !optional {
				p.warn("%s: Include %s: %v", pos, pattern, err)
			}
			return
		case st.IsDir():
			files = p.walkDir(pattern, 0)
		default:
			files = []string{pattern}
		}
	}
	for _, f := range files {
		if p.truncated {
			return
		}
		src, err := p.fs.ReadFile(f)
		if err != nil {
			p.warn("%s: Include %s: %v", pos, f, err)
			continue
		}
		p.parseFile(f, src, depth+1)
	}
}

// walkDir lists the files under dir, sorted, as Apache includes a directory.
func (p *parser) walkDir(dir string, depth int) []string {
	if depth > 8 {
		return nil
	}
	ents, err := p.fs.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		f := filepath.Join(dir, e.Name())
		if e.IsDir() {
			out = append(out, p.walkDir(f, depth+1)...)
		} else {
			out = append(out, f)
		}
		if len(out) > maxFiles {
			break
		}
	}
	return out
}

// expand replaces ${VAR} with its value; unknown variables stay as written,
// as Apache leaves them (with a warning).
func (p *parser) expand(s string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		if b.Len() > maxLineExpand || p.expanded > maxExpand {
			if p.expanded <= maxExpand+maxLineExpand {
				p.warn("${VAR} expansion exceeds %d bytes; the rest is left unexpanded", maxLineExpand)
				p.expanded = maxExpand + maxLineExpand + 1
			}
			break
		}
		i := strings.Index(s, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		name := s[i+2 : i+j]
		b.WriteString(s[:i])
		if v, ok := p.vars[name]; ok {
			b.WriteString(v)
			p.expanded += len(v)
		} else if v, ok := os.LookupEnv(name); ok && name != "" {
			b.WriteString(v)
			p.expanded += len(v)
		} else {
			b.WriteString(s[i : i+j+1])
		}
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return b.String()
}

// splitArgs splits a directive's arguments as Apache's ap_getword_conf
// does: whitespace separates, a word starting with a quote runs to the
// matching quote, and a backslash escapes that quote inside it.
func splitArgs(s string) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t\r\n\f\v")
		if s == "" {
			return out
		}
		q := s[0]
		if q == '"' || q == '\'' {
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) && s[i+1] == q {
					b.WriteByte(q)
					i++
					continue
				}
				if s[i] == q {
					break
				}
				b.WriteByte(s[i])
			}
			out = append(out, b.String())
			if i >= len(s) {
				return out
			}
			s = s[i+1:]
			continue
		}
		i := strings.IndexAny(s, " \t\r\n\f\v")
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
}
