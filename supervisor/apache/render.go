package apache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// HostSuffix ends every host name sockvisor puts after "|" in a unix: URL.
// .invalid never resolves (RFC 2606), so a stray request cannot leave the box.
const HostSuffix = ".sockvisor.invalid"

// maxLabel keeps a backend's host label a valid DNS label, which also keeps
// "balancer://<label>.sockvisor.invalid" within Apache's 95-byte balancer
// name limit (measured on 2.4.71).
const maxLabel = 63

// header starts every file sockvisor writes; a file without it is not ours.
const header = "# sockvisor's Apache config"

// Kinds of File.
const (
	// KindMain is the global server config: every backend's worker
	// settings, and the rules of backends without a site.
	KindMain = "main"
	// KindSites holds the <VirtualHost> blocks of sites with render =
	// "vhost". It is a file of its own so that Apache reads it after the
	// distribution's default virtual host (Debian: sites-enabled/000-default),
	// which therefore stays the default for unknown host names.
	KindSites = "sites"
	// KindInclude holds one render = "include" site's rules, for the
	// operator to Include inside a virtual host of their own.
	KindInclude = "include"
)

// File is one file of the rendered config.
type File struct {
	Kind string
	Site string // the site of a KindInclude file
	Data []byte
}

// RenderFiles returns sockvisor's Apache config for cfg: the main file, the
// sites file when a site has render = "vhost", and one file per site with
// render = "include", in that order (includes by site name). Equal configs
// give equal bytes: nothing time- or environment-dependent goes in, no line
// number of the config either, and the order of blocks in the config does
// not matter.
func RenderFiles(cfg *config.Config) []File {
	files := []File{{Kind: KindMain, Data: renderMain(cfg)}}
	var vhosts, includes []*config.Site
	for _, s := range sortedSites(cfg) {
		if s.Render == "include" {
			includes = append(includes, s)
		} else {
			vhosts = append(vhosts, s)
		}
	}
	if len(vhosts) > 0 {
		var b bytes.Buffer
		p := printer(&b, "")
		p(header+": virtual hosts, generated from %s.", comment(cfg.File))
		p("# Do not edit: sockvisor rewrites this file whenever its config changes.")
		p("# Each site block gives one <VirtualHost> per listen address. Apache needs a")
		p("# Listen line for each address; sockvisor writes none (Debian's ports.conf has")
		p("# 80, and 443 with mod_ssl), because a second Listen for one address is fatal.")
		p("# The <Proxy> settings of these backends are in sockvisor's main file.")
		for _, s := range vhosts {
			renderVhosts(&b, cfg, s)
		}
		files = append(files, File{Kind: KindSites, Data: b.Bytes()})
	}
	for _, s := range includes {
		var b bytes.Buffer
		p := printer(&b, "")
		p(header+": the rules of site %q, generated from %s.", s.Name, comment(cfg.File))
		p("# Do not edit: sockvisor rewrites this file whenever its config changes.")
		p("# Include it inside the <VirtualHost> blocks that serve %s (render = \"include\").", s.Name)
		p("# The <Proxy> settings of these backends are in sockvisor's main file.")
		renderContext(printer(&b, ""), siteBackends(cfg, s.Name), siteBackends(cfg, ""))
		files = append(files, File{Kind: KindInclude, Site: s.Name, Data: b.Bytes()})
	}
	return files
}

// Render returns every file of the rendered config as one text, as
// `sockvisor apache-config` prints it: the main file, then each other file
// after a line naming where it goes.
func Render(cfg *config.Config) []byte {
	var b bytes.Buffer
	for i, f := range RenderFiles(cfg) {
		if i > 0 {
			switch f.Kind {
			case KindSites:
				b.WriteString("\n# ==== sites file (Debian: sites-available/sockvisor.conf) ====\n")
			case KindInclude:
				fmt.Fprintf(&b, "\n# ==== include file for site %q (Debian: /etc/apache2/sockvisor-sites/%s.conf) ====\n", f.Site, f.Site)
			}
		}
		b.Write(f.Data)
	}
	return b.Bytes()
}

func printer(b *bytes.Buffer, indent string) func(string, ...any) {
	return func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		if line == "" {
			b.WriteString("\n")
			return
		}
		b.WriteString(indent + line + "\n")
	}
}

func renderMain(cfg *config.Config) []byte {
	var b bytes.Buffer
	p := printer(&b, "")

	p(header+", generated from %s.", comment(cfg.File))
	p("# Do not edit: sockvisor rewrites this file whenever its config changes.")
	p("#")
	p("# This file is part of the global server config, so it applies to every")
	p("# virtual host. Apache tries these rules before a virtual host's own")
	p("# ProxyPass lines (ProxyPassInherit Off does not stop that); a virtual host")
	p("# overrides a path only with a ProxyPass inside its own <Location>.")
	p("#")
	p("# Every socket has a host name of its own under %s: Apache keys a", HostSuffix)
	p("# proxy worker by the URL after \"|\" only, so sockets sharing a host would")
	p("# share one worker and all their traffic would go to the first socket.")
	p("# ProxyPass rules match in order, so longer mounts come first.")
	if mods := RequiredModules(cfg); len(mods) > 0 {
		p("# Needs the modules: %s.", strings.Join(mods, ", "))
	}

	// Worker settings of site backends live here, once, so the http and
	// https virtual hosts of a site (and an included site) share them.
	var siteBes []*config.Backend
	for _, be := range mounted(cfg) {
		if be.Site != "" && len(be.Sockets) > 0 {
			siteBes = append(siteBes, be)
		}
	}
	if len(siteBes) > 0 {
		p("")
		p("# Worker settings of the backends in sites; their rules are in the sites' files.")
		for _, be := range siteBes {
			p("")
			p("# Backend %q (site %s).", be.Name, be.Site)
			renderWorkers(p, be)
		}
	}
	renderContext(p, siteBackends(cfg, ""), nil)
	for _, be := range cfg.Backends {
		if be.Mount == "" {
			p("")
			p("# Backend %q has no mount, so Apache does not proxy to it.", be.Name)
		}
	}
	return b.Bytes()
}

// sortedSites returns the sites by name.
func sortedSites(cfg *config.Config) []*config.Site {
	out := append([]*config.Site(nil), cfg.Sites...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// siteBackends returns the mounted backends of one site ("" for the global
// context), longest mount first.
func siteBackends(cfg *config.Config, site string) []*config.Backend {
	var out []*config.Backend
	for _, be := range mounted(cfg) {
		if be.Site == site {
			out = append(out, be)
		}
	}
	return out
}

// mounted returns the backends with a mount, longest mount first; ties go
// by mount, then name, so the order never depends on the config's order.
func mounted(cfg *config.Config) []*config.Backend {
	var out []*config.Backend
	for _, be := range cfg.Backends {
		if be.Mount != "" {
			out = append(out, be)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if len(a.Mount) != len(b.Mount) {
			return len(a.Mount) > len(b.Mount)
		}
		if a.Mount != b.Mount {
			return a.Mount < b.Mount
		}
		return a.Name < b.Name
	})
	return out
}

// renderVhosts writes a site's <VirtualHost> blocks: plain HTTP first, then
// HTTPS, each address in config order.
func renderVhosts(b *bytes.Buffer, cfg *config.Config, s *config.Site) {
	bes := siteBackends(cfg, s.Name)
	globals := siteBackends(cfg, "")
	open := func(addr string) func(string, ...any) {
		p := printer(b, "")
		p("")
		p("<VirtualHost %s>", addr)
		in := printer(b, "    ")
		in("ServerName %s", s.Name)
		if len(s.Aliases) > 0 {
			in("ServerAlias %s", strings.Join(s.Aliases, " "))
		}
		return in
	}
	closeVhost := func() { printer(b, "")("</VirtualHost>") }
	for _, addr := range s.Listen {
		in := open(addr)
		if s.RedirectHTTP {
			in("# redirect_http: every request answers 301 with its https:// URL, but")
			in("# ACME http-01 challenges, which certbot --webroot answers from Apache's")
			in("# main DocumentRoot.")
			in("RewriteEngine On")
			in("RewriteCond %%{REQUEST_URI} !^/\\.well-known/acme-challenge/")
			in("RewriteRule ^ https://%%{SERVER_NAME}%s%%{REQUEST_URI} [R=301,L,NE]", httpsPort(s))
		} else {
			renderContext(in, bes, globals)
		}
		closeVhost()
	}
	if s.TLS != nil {
		for _, addr := range s.TLS.Listen {
			in := open(addr)
			in("SSLEngine on")
			in("SSLCertificateFile %q", s.TLS.Certificate)
			in("SSLCertificateKeyFile %q", s.TLS.Key)
			renderContext(in, bes, globals)
			closeVhost()
		}
	}
}

// httpsPort is the ":PORT" a redirect names, "" for 443.
func httpsPort(s *config.Site) string {
	if s.TLS == nil || len(s.TLS.Listen) == 0 {
		return ""
	}
	_, port, _ := net.SplitHostPort(s.TLS.Listen[0])
	if port == "443" {
		return ""
	}
	return ":" + port
}

// renderContext writes the rules of bes (one context's backends, longest
// mount first) into the global config (globals nil) or a virtual host
// (globals: the global config's backends, longest mount first).
//
// Apache's Alias picks the first match in config order, so every Alias of
// the context comes first, longest URL first. In the global config the
// ProxyPass rules match in order too, so backends follow longest mount
// first, each with its "!" exclusions before its ProxyPass. In a site each
// backend's ProxyPass sits in a <Location>, which mod_proxy tries before
// any server-wide ProxyPass (measured: a global ProxyPass "/" otherwise
// wins); <Location> sections merge in config order, the later one winning,
// so there backends come shortest mount first and each alias's exclusion
// after its backend's mount.
//
// A site's <Location "/"> would so hide every global mount in that host,
// though global backends apply to every virtual host. So a site repeats
// the global backends' <Location> rules among its own, by mount length; on
// an equal mount the site's comes later and wins.
func renderContext(p func(string, ...any), bes, globals []*config.Backend) {
	inSite := globals != nil
	type alias struct{ url, dir string }
	var aliases []alias
	docroot := ""
	for _, be := range bes {
		if len(be.Sockets) == 0 {
			continue
		}
		for _, a := range be.Aliases {
			aliases = append(aliases, alias{a.URL, a.Dir})
		}
		if be.Docroot() {
			if inSite && be.Mount == "/" {
				docroot = be.DocumentRoot
			} else {
				// Alias joins the rest of the URL to dir as written:
				// "/" with "/srv/www" would map "/x" to "/srv/wwwx".
				url, dir := mountPath(be.Mount), be.DocumentRoot
				if strings.HasSuffix(url, "/") {
					dir = strings.TrimSuffix(dir, "/") + "/"
				}
				aliases = append(aliases, alias{url, dir})
			}
		}
	}
	sort.SliceStable(aliases, func(i, j int) bool {
		if len(aliases[i].url) != len(aliases[j].url) {
			return len(aliases[i].url) > len(aliases[j].url)
		}
		return aliases[i].url < aliases[j].url
	})
	if docroot != "" || len(aliases) > 0 {
		p("")
		p("# Served by Apache from disk. Alias takes the first match, so longest first.")
	}
	if docroot != "" {
		p("DocumentRoot %q", docroot)
	}
	for _, a := range aliases {
		p("Alias %q %q", a.url, a.dir)
	}

	if !inSite {
		for _, be := range bes {
			p("")
			renderBackend(p, be, false)
		}
		return
	}
	type rule struct {
		be     *config.Backend
		global bool
	}
	var order []rule
	for _, be := range globals {
		if len(be.Sockets) > 0 {
			order = append(order, rule{be, true})
		}
	}
	for _, be := range bes {
		order = append(order, rule{be, false})
	}
	// Shortest mount first; on a tie the global rule first, so the site's
	// wins. Both lists are longest first, so reversing a stable sort by
	// length keeps each list's own order reversed, as before.
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if len(a.be.Mount) != len(b.be.Mount) {
			return len(a.be.Mount) < len(b.be.Mount)
		}
		if a.be.Mount != b.be.Mount {
			return a.be.Mount > b.be.Mount
		}
		if a.global != b.global {
			return a.global
		}
		return a.be.Name > b.be.Name
	})
	for _, r := range order {
		p("")
		if r.global {
			p("# Global backend %q, mounted at %s, repeated here so that the site's", r.be.Name, r.be.Mount)
			p("# shorter mounts do not hide it; its settings are in the main file.")
			renderLocations(p, r.be)
			continue
		}
		renderBackend(p, r.be, true)
	}
}

// mountPath is the mount as Alias and FallbackResource take it: without its
// trailing slash, so "/wiki" and "/wiki/x" both match.
func mountPath(mount string) string {
	if mount == "/" {
		return "/"
	}
	return strings.TrimSuffix(mount, "/")
}

func describe(be *config.Backend) string {
	n := len(be.Sockets)
	what := string(be.Protocol)
	if be.Websocket {
		what += " with WebSocket"
	}
	if be.Docroot() {
		what += ", Apache serves " + be.DocumentRoot + " and runs its .php files on PHP-FPM"
	}
	inst := "1 instance"
	if n != 1 {
		inst = fmt.Sprintf("%d instances", n)
	}
	return fmt.Sprintf("# Backend %q: %s, %s, mounted at %s.", be.Name, what, inst, be.Mount)
}

// renderBackend writes one backend's rules in its context. Worker settings
// (renderWorkers) go with them in the global config; a site's are in the
// main file.
func renderBackend(p func(string, ...any), be *config.Backend, inSite bool) {
	p("%s", describe(be))
	if len(be.Sockets) == 0 {
		p("# It has no sockets, so nothing is proxied.")
		return
	}
	if !inSite {
		renderWorkers(p, be)
	}
	for _, a := range be.Aliases {
		renderStaticDir(p, be, a.Dir)
	}
	if be.Docroot() {
		renderDocroot(p, be)
	}
	if inSite {
		renderLocations(p, be)
		return
	}
	if be.Docroot() {
		// A ProxyPass of a shorter mount in the same context would take
		// these requests before Alias maps them to files.
		if be.Mount != "/" {
			p("ProxyPass %q \"!\"", be.Mount)
		}
		return
	}
	target, reverse := proxyTarget(be)
	params := ""
	if len(be.Sockets) == 1 {
		params = workerParams(be)
	}
	for _, a := range be.Aliases {
		p("ProxyPass %q \"!\"", a.URL)
	}
	p("ProxyPass %q %q%s", be.Mount, target, params)
	for _, r := range reverse {
		p("ProxyPassReverse %q %q", be.Mount, r)
	}
}

// renderLocations writes be's <Location> rules in a virtual host: its
// ProxyPass, or "!" for a document root that Apache serves, then "!" for
// each alias.
func renderLocations(p func(string, ...any), be *config.Backend) {
	if be.Docroot() {
		// A ProxyPass of a shorter mount in the same context would take
		// these requests before Alias maps them to files.
		p("<Location %q>", mountPath(be.Mount))
		p("    ProxyPass \"!\"")
		p("</Location>")
		return
	}
	target, reverse := proxyTarget(be)
	params := ""
	if len(be.Sockets) == 1 {
		params = workerParams(be)
	}
	p("<Location %q>", be.Mount)
	p("    ProxyPass %q%s", target, params)
	for _, r := range reverse {
		p("    ProxyPassReverse %q", r)
	}
	p("</Location>")
	for _, a := range be.Aliases {
		p("<Location %q>", a.URL)
		p("    ProxyPass \"!\"")
		p("</Location>")
	}
}

// proxyTarget returns the URL a backend's ProxyPass names and the URLs
// ProxyPassReverse maps back.
func proxyTarget(be *config.Backend) (string, []string) {
	// A mount ending in "/" maps to "/" on the backend; one without maps to
	// "" so "/app" and "/app/x" work and "/application" stays unmatched.
	slash := ""
	if strings.HasSuffix(be.Mount, "/") {
		slash = "/"
	}
	// mod_proxy_fcgi puts the URL path into SCRIPT_FILENAME, which PHP-FPM
	// resolves: the document root goes between the host and the path.
	path := ""
	if be.Protocol == config.ProtocolFCGI {
		path = strings.TrimSuffix(be.DocumentRoot, "/")
	}
	if keepsPrefix(be) {
		path = strings.TrimSuffix(be.Mount, "/")
	}
	scheme := string(be.Protocol)
	host := Host(be.Name)
	if len(be.Sockets) == 1 {
		url := scheme + "://" + host + path + slash
		var rev []string
		if be.Protocol == config.ProtocolHTTP {
			rev = []string{url}
		}
		return "unix:" + be.Sockets[0].Path + "|" + url, rev
	}
	var rev []string
	if be.Protocol == config.ProtocolHTTP {
		for _, s := range be.Sockets {
			rev = append(rev, "http://"+InstanceHost(be.Name, s.Instance)+path+slash)
		}
	}
	return "balancer://" + host + path + slash, rev
}

// renderWorkers writes a backend's worker settings: the balancer and its
// members, and the per-backend proxy settings in a <Proxy> section scoped to
// the backend's own worker host. Per-backend extra lines belong in
// proxySettings.
func renderWorkers(p func(string, ...any), be *config.Backend) {
	n := len(be.Sockets)
	params := workerParams(be)
	settings := proxySettings(be)
	if n > 1 {
		// Members carry no trailing slash: the balancer appends the request's
		// path to the member URL, and "/" would double it.
		p("<Proxy %q>", "balancer://"+Host(be.Name))
		for _, s := range be.Sockets {
			p("    BalancerMember %q%s", "unix:"+s.Path+"|"+string(be.Protocol)+"://"+InstanceHost(be.Name, s.Instance), params)
		}
		for _, l := range settings {
			p("    %s", l)
		}
		p("</Proxy>")
		return
	}
	if be.Docroot() {
		// SetHandler takes no worker parameters; a <Proxy> section on the
		// same URL defines the worker they then find.
		p("<Proxy %q>", handlerURL(be))
		p("    ProxySet%s", params)
		for _, l := range settings {
			p("    %s", l)
		}
		p("</Proxy>")
		return
	}
	if len(settings) == 0 {
		return
	}
	// ProxyPreserveHost and RequestHeader are per directory; a <Proxy>
	// section on the backend's own host scopes them to this backend alone.
	url := string(be.Protocol) + "://" + Host(be.Name) + "/"
	p("<Proxy %q>", url)
	for _, l := range settings {
		p("    %s", l)
	}
	p("</Proxy>")
}

// proxySettings lists the directives that apply to every request Apache
// proxies to be, rendered inside the backend's <Proxy> section.
func proxySettings(be *config.Backend) []string {
	if be.Protocol != config.ProtocolHTTP {
		// ProxyPreserveHost matters only to mod_proxy_http; fcgi and
		// uwsgi pass the client's Host header as HTTP_HOST anyway, and the
		// scheme as REQUEST_SCHEME and HTTPS.
		return nil
	}
	var out []string
	if be.Proxy.PreserveHost {
		out = append(out, "ProxyPreserveHost On")
	} else {
		out = append(out, "ProxyPreserveHost Off")
	}
	out = append(out, prefixHeaders(be)...)
	out = append(out, keepaliveLines(be)...)
	return out
}

// handlerURL is the SetHandler target of a Docroot backend. It ends at the
// host: mod_proxy_fcgi appends the file's path, so a trailing "/" gave
// SCRIPT_FILENAME=//srv/... (measured). Without the "|fcgi://host" part
// Apache would serve the PHP source instead. A balancer behind SetHandler
// works since Apache 2.4.62.
func handlerURL(be *config.Backend) string {
	if len(be.Sockets) > 1 {
		return "balancer://" + Host(be.Name)
	}
	return "unix:" + be.Sockets[0].Path + "|fcgi://" + Host(be.Name)
}

// renderStaticDir lets Apache serve dir, an alias of be.
func renderStaticDir(p func(string, ...any), be *config.Backend, dir string) {
	p("<Directory %q>", dir)
	p("    Options FollowSymLinks")
	p("    AllowOverride None")
	p("    Require all granted")
	if be.Protocol == config.ProtocolFCGI {
		// An alias is never executed: PHP source there stays private.
		p("    <FilesMatch %s>", quote(`\.(?i:php[3-8]?|phtml|phar|phps)$`))
		p("        Require all denied")
		p("    </FilesMatch>")
	}
	renderHiddenFiles(p)
	p("</Directory>")
	renderHiddenDirs(p, dir)
}

// backupSuffixes end the names of editor and backup copies, which Apache
// would serve as text: "index.php.bak" gave the PHP source with
// application/x-trash (measured).
const backupSuffixes = `(~|\.(?i:bak|old|orig|save|swp|dist))$`

// renderHiddenFiles, inside a served tree's <Directory>, denies dot-files
// (.env, .htpasswd, vim's .x.swp) and backup copies with 403.
func renderHiddenFiles(p func(string, ...any)) {
	p("    # Dot-files and backup copies are never served.")
	p("    <FilesMatch %s>", quote(`^\.|`+backupSuffixes))
	p("        Require all denied")
	p("    </FilesMatch>")
}

// renderHiddenDirs denies the dot-directories under dir (.git, .svn) but
// /.well-known/ (RFC 8615: ACME, security.txt). <FilesMatch> sees only the
// file's name, so "/.git/config" needs a <DirectoryMatch>, anchored at dir
// so that a dot in dir's own path does not count.
func renderHiddenDirs(p func(string, ...any), dir string) {
	re := "^" + regexp.QuoteMeta(strings.TrimSuffix(dir, "/")) + `/(.+/)?\.(?!well-known(/|$))`
	p("<DirectoryMatch %s>", quote(re))
	p("    Require all denied")
	p("</DirectoryMatch>")
}

// renderDocroot lets Apache serve be's document root and hand existing .php
// files to PHP-FPM. Access rules (<Directory>, .htaccess) apply to the PHP
// files too, which a ProxyPass would bypass.
func renderDocroot(p func(string, ...any), be *config.Backend) {
	p("<Directory %q>", be.DocumentRoot)
	p("    Options FollowSymLinks")
	if be.Htaccess {
		p("    AllowOverride All")
	} else {
		p("    AllowOverride None")
	}
	p("    Require all granted")
	if len(be.Index) > 0 {
		p("    DirectoryIndex %s", strings.Join(be.Index, " "))
	}
	if be.Fallback != "" {
		p("    FallbackResource %q", strings.TrimSuffix(be.Mount, "/")+be.Fallback)
	}
	// PHP sees the Authorization header (HTTP auth, application passwords).
	p("    CGIPassAuth On")
	// Other PHP extensions and upper-case .PHP would be served as source;
	// PHP-FPM runs only .php (security.limit_extensions).
	p("    <FilesMatch %s>", quote(`^\.user\.ini$|\.(?!php$)(?i:php[3-8]?|phtml|phar|phps)$`))
	p("        Require all denied")
	p("    </FilesMatch>")
	// Only a request that maps to an existing .php file reaches PHP-FPM:
	// no "Primary script unknown", no cgi.fix_pathinfo guessing.
	p("    <FilesMatch %s>", quote(`\.php$`))
	p("        <If \"-f %%{REQUEST_FILENAME}\">")
	p("            SetHandler %q", "proxy:"+handlerURL(be))
	p("        </If>")
	p("    </FilesMatch>")
	renderHiddenFiles(p)
	p("</Directory>")
	renderHiddenDirs(p, be.DocumentRoot)
}

// workerParams renders the backend's proxy settings as worker parameters.
func workerParams(be *config.Backend) string {
	var ps []string
	if be.Proxy.Max > 0 {
		ps = append(ps, fmt.Sprintf("max=%d", be.Proxy.Max))
	}
	if be.Proxy.Acquire > 0 {
		// acquire is in milliseconds.
		ps = append(ps, fmt.Sprintf("acquire=%d", ceilDiv(be.Proxy.Acquire, time.Millisecond)))
	}
	// retry=0: a restarting backend must never lock a balancer member out
	// for Apache's default 60 s.
	if r := be.Proxy.Retry; r%time.Second == 0 {
		ps = append(ps, fmt.Sprintf("retry=%d", r/time.Second))
	} else {
		ps = append(ps, fmt.Sprintf("retry=%dms", ceilDiv(r, time.Millisecond)))
	}
	// Apache refuses a timeout under one second.
	t := ceilDiv(be.Proxy.Timeout, time.Second)
	if t < 1 {
		t = 1
	}
	ps = append(ps, fmt.Sprintf("timeout=%d", t))
	if be.Websocket {
		ps = append(ps, "upgrade=websocket")
	}
	return " " + strings.Join(ps, " ")
}

// comment makes s safe inside a "#" line: a newline in a file name must not
// end the comment, nor a trailing backslash continue it onto the next line.
func comment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

func ceilDiv(d, unit time.Duration) int64 {
	return int64((d + unit - 1) / unit)
}

// Host returns the host name of a single-instance backend, and the name of
// its balancer when it has several instances.
func Host(backend string) string {
	return label(backend) + HostSuffix
}

// InstanceHost returns the host name of one instance of a balanced backend.
// Backend names contain no dot, so "1.app" can never equal another
// backend's host; "app-1" could.
func InstanceHost(backend string, instance int) string {
	return fmt.Sprintf("%d.%s", instance, Host(backend))
}

// label shortens names longer than a DNS label, keeping them unique with a
// hash of the full name.
func label(name string) string {
	if len(name) <= maxLabel {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxLabel-9] + "-" + hex.EncodeToString(sum[:4])
}

// RequiredModules lists the Apache modules the rendered config needs,
// sorted, as `apachectl -M` names them without "_module".
func RequiredModules(cfg *config.Config) []string {
	set := map[string]bool{}
	sites := map[string]bool{}
	for _, be := range mounted(cfg) {
		if len(be.Sockets) == 0 {
			continue
		}
		sites[be.Site] = true
		set["proxy"] = true
		set["proxy_"+string(be.Protocol)] = true
		for _, m := range keepaliveModules(be) {
			set[m] = true
		}
		if len(be.Sockets) > 1 {
			set["proxy_balancer"] = true
			set["lbmethod_byrequests"] = true // the default lbmethod
			set["slotmem_shm"] = true         // balancers keep their state in it
		}
		if be.Protocol == config.ProtocolHTTP {
			set["headers"] = true // RequestHeader: X-Forwarded-Proto and the prefix
		}
		if len(be.Aliases) > 0 || be.Docroot() {
			set["alias"] = true
			set["mime"] = true // Content-Type of the files Apache serves
			set["authz_core"] = true
		}
		if be.Docroot() {
			set["dir"] = true // DirectoryIndex, FallbackResource
		}
	}
	for _, s := range cfg.Sites {
		if s.Render == "include" || !sites[s.Name] && len(s.Listen) == 0 && s.TLS == nil {
			continue
		}
		if s.TLS != nil {
			set["ssl"] = true
		}
		if s.RedirectHTTP && len(s.Listen) > 0 {
			set["rewrite"] = true
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
