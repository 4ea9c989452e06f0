package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Site is one name-based virtual host: the site block's label is its
// ServerName.
type Site struct {
	Name    string
	Aliases []string // ServerAlias
	// Listen holds the plain-HTTP addresses, one <VirtualHost> each.
	Listen []string
	// TLS is nil for a site without HTTPS.
	TLS *TLS
	// RedirectHTTP makes the plain-HTTP virtual hosts answer 301 to https.
	RedirectHTTP bool
	// Render is "vhost": sockvisor writes the <VirtualHost> blocks; or
	// "include": sockvisor writes only the site's rules, into a file the
	// operator Includes inside a virtual host of their own.
	Render string
	// Pos is where the site block starts, as "file:line".
	Pos string
}

// TLS is a site's HTTPS setup.
type TLS struct {
	Certificate string
	Key         string
	// Listen holds the HTTPS addresses, one <VirtualHost> each.
	Listen []string
}

// Alias is a URL path Apache serves from a directory, never proxied.
type Alias struct {
	URL string
	Dir string
}

// FPM tunes a PHP-FPM pool.
type FPM struct {
	PM          string // static | dynamic | ondemand
	MaxChildren int
	// Settings are extra pool directives, written as given.
	Settings map[string]string
}

// Site returns the site with the given name, or nil.
func (c *Config) Site(name string) *Site {
	for _, s := range c.Sites {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Docroot reports whether Apache serves the backend's document_root and
// hands only existing .php files to PHP-FPM: protocol fcgi with a mount and
// a document_root, unless fcgi_proxy_all is set.
func (b *Backend) Docroot() bool {
	return b.Protocol == ProtocolFCGI && b.Mount != "" && b.DocumentRoot != "" && !b.FCGIProxyAll
}

// DefaultFPMMaxChildren is pm.max_children when the fpm block leaves it
// unset: four PHP processes per CPU, at least 8, at most a quarter of the
// memory at 64 MiB each (fpmsize.go). PHP requests mostly wait on a
// database, so a pool as small as the CPU count queues needlessly, while
// PHP-FPM's own default of 5 was measured to saturate ("server reached
// pm.max_children setting (5)" 13 times under load).
func DefaultFPMMaxChildren() int {
	return fpmChildren(runtime.NumCPU(), memTotal())
}

type fileSite struct {
	Name         string   `hcl:"name,label"`
	Aliases      []string `hcl:"aliases,optional"`
	Listen       []string `hcl:"listen,optional"`
	TLS          *fileTLS `hcl:"tls,block"`
	RedirectHTTP *bool    `hcl:"redirect_http,optional"`
	Render       *string  `hcl:"render,optional"`
}

type fileTLS struct {
	Certificate string   `hcl:"certificate"`
	Key         string   `hcl:"key"`
	Listen      []string `hcl:"listen,optional"`
}

type fileFPM struct {
	PM          *string           `hcl:"pm,optional"`
	MaxChildren *int              `hcl:"max_children,optional"`
	Settings    map[string]string `hcl:"settings,optional"`
}

var (
	hostRe     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	fpmKeyRe   = regexp.MustCompile(`^[a-z][a-z0-9_.]*(\[[A-Za-z0-9_.-]+\])?$`)
	urlPathRe  = regexp.MustCompile(`^/[A-Za-z0-9._~/-]*$`)
	fpmReserve = []string{"listen", "pm", "pm.max_children"}
)

// sites validates the site blocks; it runs before the backends, which name them.
func (v *validator) sites(c *Config, fs []fileSite) {
	names := map[string]string{} // host name -> site that claims it
	count := map[string]int{}
	for i := range fs {
		fsite := &fs[i]
		key := "site." + fsite.Name
		if !hostRe.MatchString(fsite.Name) || len(fsite.Name) > 253 {
			v.at(key, "site name %q is not a host name; use lowercase letters, digits, - and dots, e.g. \"blog.example.org\"", fsite.Name)
			continue
		}
		n := count[fsite.Name]
		count[fsite.Name]++
		if n > 0 {
			v.problems = append(v.problems, Problem{Pos: v.blocks[key][n], Msg: fmt.Sprintf("site %q is defined twice (first at %s); merge the blocks", fsite.Name, stripCol(v.blocks[key][0]))})
			continue
		}
		s := &Site{Name: fsite.Name, Pos: stripCol(v.pos[key]), Render: str(fsite.Render, "vhost"), Aliases: fsite.Aliases}
		v.oneOf(key+".render", s.Render, "vhost", "include")
		for _, h := range append([]string{s.Name}, s.Aliases...) {
			if h != s.Name && !hostRe.MatchString(strings.TrimPrefix(h, "*.")) {
				v.at(key+".aliases", "alias %q is not a host name; use lowercase letters, digits, - and dots, optionally starting with \"*.\"", h)
			}
			if prev, ok := names[h]; ok {
				v.at(key, "host name %q belongs to both site %q and site %q; Apache would send it to the first only", h, prev, s.Name)
			}
			names[h] = s.Name
		}
		if s.Render == "include" {
			for _, k := range []string{"listen", "tls", "redirect_http"} {
				if _, set := v.pos[key+"."+k]; set {
					v.at(key+"."+k, "%s has no effect with render = \"include\": the virtual host that Includes the site's rules decides it; remove it", k)
				}
			}
			c.Sites = append(c.Sites, s)
			continue
		}
		s.Listen = fsite.Listen
		if s.Listen == nil {
			s.Listen = []string{"*:80"}
		}
		if t := fsite.TLS; t != nil {
			s.TLS = &TLS{Certificate: t.Certificate, Key: t.Key, Listen: t.Listen}
			if s.TLS.Listen == nil {
				s.TLS.Listen = []string{"*:443"}
			}
			before := len(v.problems)
			v.readableFile(key+".tls.certificate", "tls.certificate", t.Certificate)
			v.readableFile(key+".tls.key", "tls.key", t.Key)
			if len(v.problems) == before {
				v.keyPair(key+".tls", t.Certificate, t.Key)
			}
			v.listen(key+".tls.listen", s.TLS.Listen)
			if len(s.TLS.Listen) == 0 {
				v.at(key+".tls.listen", "tls.listen is empty; give at least one address such as \"*:443\", or remove the tls block")
			}
		}
		v.listen(key+".listen", s.Listen)
		if s.TLS != nil {
			for _, a := range s.Listen {
				if slices.Contains(s.TLS.Listen, a) {
					v.at(key+".listen", "address %q is in both listen and tls.listen; one address speaks either HTTP or HTTPS", a)
				}
			}
		}
		s.RedirectHTTP = s.TLS != nil && len(s.Listen) > 0
		if fsite.RedirectHTTP != nil {
			s.RedirectHTTP = *fsite.RedirectHTTP
			if s.RedirectHTTP && s.TLS == nil {
				v.at(key+".redirect_http", "redirect_http = true needs a tls block to redirect to; add tls { certificate, key } or remove redirect_http")
			}
		}
		if len(s.Listen) == 0 && s.TLS == nil {
			v.at(key+".listen", "site %q listens nowhere; give listen an address such as \"*:80\"", s.Name)
		}
		c.Sites = append(c.Sites, s)
	}
}

// listen checks virtual host addresses: "*:PORT" or "IP:PORT".
func (v *validator) listen(key string, addrs []string) {
	seen := map[string]bool{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || perr != nil || n < 1 || n > 65535:
			v.at(key, "%s address %q is not HOST:PORT; write it like \"*:80\" or \"127.0.0.1:8080\"", lastField(key), a)
		case host != "*" && net.ParseIP(host) == nil:
			v.at(key, "%s address %q must have * or an IP address as its host; name-based hosts go in the site's label and aliases", lastField(key), a)
		case seen[a]:
			v.at(key, "%s lists %q twice", lastField(key), a)
		}
		seen[a] = true
	}
}

func (v *validator) readableFile(key, what, p string) {
	if !filepath.IsAbs(p) {
		v.at(key, "%s %q must be an absolute path", what, p)
		return
	}
	st, err := os.Stat(p)
	switch {
	case err != nil:
		v.at(key, "%s %s cannot be read: %v; fix the path", what, p, err)
	case !st.Mode().IsRegular():
		v.at(key, "%s %s is not a regular file; name the PEM file", what, p)
	}
}

// keyPair checks that the certificate and key files load as Apache will
// load them: configtest does not read them, and a graceful restart onto a
// certificate mod_ssl cannot load (AH02562) kills Apache's main process. A
// file sockvisor check may not read (a key only root reads) is left to the
// daemon, which does.
func (v *validator) keyPair(key, certFile, keyFile string) {
	certPEM, err := os.ReadFile(certFile)
	if errors.Is(err, fs.ErrPermission) {
		return
	}
	if err != nil {
		v.at(key+".certificate", "tls.certificate %s cannot be read: %v; fix the path", certFile, err)
		return
	}
	keyPEM, err := os.ReadFile(keyFile)
	if errors.Is(err, fs.ErrPermission) {
		return
	}
	if err != nil {
		v.at(key+".key", "tls.key %s cannot be read: %v; fix the path", keyFile, err)
		return
	}
	var certs []*x509.Certificate
	rest := certPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			v.at(key+".certificate", "tls.certificate %s holds a certificate that does not parse (%v); name the PEM file your CA issued", certFile, err)
			return
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		v.at(key+".certificate", "tls.certificate %s holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" block), and Apache would die loading it; name the PEM certificate file", certFile)
		return
	}
	if !hasKeyBlock(keyPEM) {
		v.at(key+".key", "tls.key %s holds no PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" block), and Apache would die loading it; name the certificate's PEM key file", keyFile)
		return
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		v.at(key+".key", "tls.key %s does not go with tls.certificate %s (%v), and Apache would die loading them; name the key the certificate was issued for", keyFile, certFile, err)
	}
}

// hasKeyBlock reports whether data holds a PEM private key block anywhere.
func hasKeyBlock(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// web fills in and checks a backend's site, document_root serving, aliases
// and PHP-FPM pool keys.
func (v *validator) web(c *Config, b *Backend, fb *fileBackend) {
	key := "backend." + b.Name
	b.Site = str(fb.Site, "")
	if b.Site != "" && c.Site(b.Site) == nil {
		v.at(key+".site", "backend %q names site %q, which no site block defines; add site %q { } or remove the site key", b.Name, b.Site, b.Site)
	}
	if b.Site != "" && b.Mount == "" {
		v.at(key+".site", "backend %q has a site but no mount; set mount, or remove site", b.Name)
	}

	docroot := b.Protocol == ProtocolFCGI && b.Mount != "" && b.DocumentRoot != ""
	if fb.FCGIProxyAll != nil {
		b.FCGIProxyAll = *fb.FCGIProxyAll
		if !docroot {
			v.at(key+".fcgi_proxy_all", "fcgi_proxy_all applies only to protocol \"fcgi\" with a mount and document_root; remove it")
		}
	}
	docroot = docroot && !b.FCGIProxyAll
	phpOnly := func(k string) {
		if _, set := v.pos[key+"."+k]; set && !docroot {
			v.at(key+"."+k, "%s applies only to protocol \"fcgi\" with a mount and document_root (Apache serving the files); remove it", k)
		}
	}
	phpOnly("index")
	phpOnly("fallback")
	phpOnly("htaccess")
	if docroot {
		b.Index = fb.Index
		if b.Index == nil {
			b.Index = []string{"index.php", "index.html"}
		}
		for _, f := range b.Index {
			if !sockRe.MatchString(f) {
				v.at(key+".index", "index entry %q must be a plain file name such as \"index.php\"", f)
			}
		}
		if b.DocumentRoot == "/" {
			v.at(key+".document_root", "document_root must not be /: Apache would serve the whole filesystem; name the application's directory")
		}
		b.Htaccess = fb.Htaccess == nil || *fb.Htaccess
		b.Fallback = str(fb.Fallback, "")
		if b.Fallback != "" && !urlPathRe.MatchString(b.Fallback) {
			v.at(key+".fallback", "fallback %q must be a URL path under the mount such as \"/index.php\" (letters, digits and ._~/- only)", b.Fallback)
		}
	}

	worldOK := fb.AliasWorldWritable != nil && *fb.AliasWorldWritable
	if worldOK && len(fb.Alias) == 0 {
		v.at(key+".alias_world_writable", "alias_world_writable has no alias to apply to; remove it")
	}
	if len(fb.Alias) > 0 && b.Mount == "" {
		v.at(key+".alias", "alias needs a mount: Apache config is rendered only for backends with one")
	}
	for url, dir := range fb.Alias {
		b.Aliases = append(b.Aliases, Alias{URL: url, Dir: dir})
		switch {
		case !urlPathRe.MatchString(url) || strings.Contains(url, "//") || strings.Contains(url, "/./") || strings.Contains(url, "/../"):
			v.at(key+".alias", "alias URL %q must be a clean URL path starting with / (letters, digits and ._~/- only)", url)
			continue
		case strings.TrimSuffix(url, "/") == strings.TrimSuffix(b.Mount, "/"):
			v.at(key+".alias", "alias URL %q is the mount itself; a mount served from disk needs no backend", url)
			continue
		case !filepath.IsAbs(dir) || !pathRe.MatchString(dir) || filepath.Clean(dir) != strings.TrimSuffix(dir, "/"):
			v.at(key+".alias", "alias directory %q for %q must be a clean absolute path other than / (letters, digits and ._/- only)", dir, url)
			continue
		case strings.HasSuffix(url, "/") != strings.HasSuffix(dir, "/"):
			// Apache expands "/static/" only for URLs with the slash, so
			// a mismatch maps "/static/x" to "/srv/staticx".
			v.at(key+".alias", "alias %q = %q: write both with a trailing slash or both without; Apache joins them as written", url, dir)
			continue
		}
		st, err := os.Stat(dir)
		switch {
		case err != nil:
			v.at(key+".alias", "alias directory %s for %q cannot be used: %v; create it or fix the path", dir, url, err)
		case !st.IsDir():
			v.at(key+".alias", "alias directory %s for %q is not a directory", dir, url)
		case st.Mode().Perm()&0o002 != 0 && !worldOK:
			v.at(key+".alias", "alias directory %s is writable by every user, so anyone could publish files under %q; chmod o-w it, or set alias_world_writable = true if that is intended", dir, url)
		}
	}
	sort.Slice(b.Aliases, func(i, j int) bool {
		x, y := b.Aliases[i].URL, b.Aliases[j].URL
		if len(x) != len(y) {
			return len(x) > len(y)
		}
		return x < y
	})

	if fb.FPM != nil {
		if b.Preset != PresetPHPFPM {
			v.at(key+".fpm", "the fpm block applies only to preset \"php-fpm\"; remove it")
		}
	}
	if b.Preset == PresetPHPFPM {
		ff := fb.FPM
		if ff == nil {
			ff = &fileFPM{}
		}
		b.FPM = FPM{PM: str(ff.PM, "dynamic"), MaxChildren: DefaultFPMMaxChildren(), Settings: ff.Settings}
		if b.FPM.Settings == nil {
			b.FPM.Settings = map[string]string{}
		}
		v.oneOf(key+".fpm.pm", b.FPM.PM, "static", "dynamic", "ondemand")
		if ff.MaxChildren != nil {
			b.FPM.MaxChildren = *ff.MaxChildren
			if b.FPM.MaxChildren < 1 || b.FPM.MaxChildren > 10000 {
				v.at(key+".fpm.max_children", "fpm.max_children must be between 1 and 10000, not %d", b.FPM.MaxChildren)
			}
		}
		for k, val := range b.FPM.Settings {
			switch {
			case !fpmKeyRe.MatchString(k):
				v.at(key+".fpm.settings", "fpm setting %q is not a pool directive name such as \"php_admin_value[memory_limit]\"", k)
			case slices.Contains(fpmReserve, k) || strings.HasPrefix(k, "listen."):
				v.at(key+".fpm.settings", "fpm setting %q is sockvisor's to set (it owns the socket; use fpm.pm and fpm.max_children for the pool size); remove it", k)
			case strings.ContainsAny(val, "\n\r\x00"):
				v.at(key+".fpm.settings", "fpm setting %q has a line break in its value; pool values are one line", k)
			}
		}
	}
}

// checkWebConflicts finds aliases and document roots two backends of one
// context claim.
func (v *validator) checkWebConflicts(c *Config) {
	owner := map[string]string{}
	roots := map[string]string{}
	for _, b := range c.Backends {
		if b.Docroot() {
			k := b.Site + "\x00" + b.DocumentRoot
			if prev, ok := roots[k]; ok {
				v.at("backend."+b.Name+".document_root", "document_root %s is served by backends %q and %q in the same %s; Apache's <Directory> can hand its .php files to one PHP-FPM only, so use instances for more processes", b.DocumentRoot, prev, b.Name, siteWord(b.Site))
			}
			roots[k] = b.Name
		}
		for _, a := range b.Aliases {
			k := b.Site + "\x00" + strings.TrimSuffix(a.URL, "/")
			if prev, ok := owner[k]; ok && prev != b.Name {
				v.at("backend."+b.Name+".alias", "alias %q is claimed by backends %q and %q in the same %s; keep it in one", a.URL, prev, b.Name, siteWord(b.Site))
			}
			owner[k] = b.Name
		}
	}
}

func siteWord(site string) string {
	if site == "" {
		return "global server config"
	}
	return fmt.Sprintf("site %q", site)
}
