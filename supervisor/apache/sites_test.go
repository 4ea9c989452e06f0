package apache

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// startEcho serves, on a unix socket, a Go HTTP backend that names itself
// and echoes the request line and the headers Apache adds.
func startEcho(t *testing.T, sock, name string) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hs []string
		for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Prefix", "Script_name"} {
			hs = append(hs, fmt.Sprintf("%s=%s", h, strings.Join(r.Header.Values(h), ",")))
		}
		fmt.Fprintf(w, "name=%s path=%s host=%s %s\n", name, r.URL.RequestURI(), r.Host, strings.Join(hs, " "))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

type reply struct {
	code int
	hdr  http.Header
	body string
}

// fetch sends one request to 127.0.0.1:port with the given Host header,
// without following redirects; tlsName makes it HTTPS with that SNI.
func fetch(t *testing.T, port int, method, host, path, tlsName string, hdr map[string]string) reply {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	scheme := "http"
	if tlsName != "" {
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{ServerName: tlsName, InsecureSkipVerify: true}
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(method, fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func (r reply) want(t *testing.T, in *apachetest.Instance, what string, code int, fragments ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: status %d, want %d; body %q\n%s", what, r.code, code, r.body, in.Log())
		return
	}
	for _, f := range fragments {
		if !strings.Contains(r.body, f) {
			t.Errorf("%s: body %q lacks %q", what, r.body, f)
		}
	}
}

// defaultVhost is a Debian-like 000-default: the first virtual host on the
// port, so the default for every unknown name.
func defaultVhost(t *testing.T, dir string, port int) string {
	t.Helper()
	root := filepath.Join(dir, "default")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("the default site\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("<VirtualHost *:%d>\n    DocumentRoot %s\n</VirtualHost>\n", port, root)
}

// TestSitesByHost: two sites on one Apache are told apart by Host, the
// default virtual host still answers every other name, and a global
// backend keeps working beside them.
func TestSitesByHost(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port))
	for _, n := range []string{"a", "b", "g"} {
		startEcho(t, dir+"/"+n+".sock", n)
	}
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "a.example" {
  aliases = ["www.a.example"]
  listen  = ["*:%[1]d"]
}
site "b.example" {
  listen = ["*:%[1]d"]
}
backend "a" {
  command = ["/bin/true"]
  site    = "a.example"
}
backend "b" {
  command = ["/bin/true"]
  site    = "b.example"
  mount   = "/app/"
}
backend "g" {
  command = ["/bin/true"]
  mount   = "/global/"
}
`, port))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)

	fetch(t, port, "GET", "a.example", "/x", "", nil).want(t, in, "site a", 200, "name=a path=/x host=a.example ", "X-Forwarded-Proto=http ", "X-Forwarded-Host=a.example ", "X-Forwarded-For=127.0.0.1 ")
	fetch(t, port, "GET", "www.a.example", "/y", "", nil).want(t, in, "site a by alias", 200, "name=a path=/y ")
	fetch(t, port, "GET", "b.example", "/app/z", "", nil).want(t, in, "site b", 200, "name=b path=/z ", "X-Forwarded-Prefix=/app ")
	// b's mount is only b's: a has no /app/, and b has no "/".
	fetch(t, port, "GET", "a.example", "/app/z", "", nil).want(t, in, "site a at b's mount", 200, "name=a path=/app/z ")
	if r := fetch(t, port, "GET", "b.example", "/z", "", nil); strings.Contains(r.body, "name=") {
		t.Errorf("b.example/z reached a backend: %q", r.body)
	}
	// Every other name still gets the default virtual host.
	for _, h := range []string{"localhost", "127.0.0.1", "other.example"} {
		fetch(t, port, "GET", h, "/", "", nil).want(t, in, "default vhost for "+h, 200, "the default site")
	}
	// The global backend answers in every virtual host.
	fetch(t, port, "GET", "b.example", "/global/q", "", nil).want(t, in, "global in site", 200, "name=g path=/q ")
	fetch(t, port, "GET", "other.example", "/global/q", "", nil).want(t, in, "global in default", 200, "name=g path=/q ")
	// A client cannot forge the scheme or the prefix.
	fetch(t, port, "GET", "a.example", "/x", "", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/evil", "SCRIPT_NAME": "/evil",
		"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example"}).
		want(t, in, "forged headers", 200, "X-Forwarded-Proto=http ", "X-Forwarded-Prefix= ", "Script_name=", "X-Forwarded-For=127.0.0.1 ", "X-Forwarded-Host=a.example ")

	// The sites file is enabled beside the default vhost, which sorts first.
	if target, err := os.Readlink(l.SitesLink); err != nil || target != "../sites-available/sockvisor.conf" {
		t.Errorf("sites link -> %q, %v", target, err)
	}
	// Dropping the sites removes the sites file and its link again.
	mustApply(t, m, loadHCL(t, dir, `
backend "g" {
  command = ["/bin/true"]
  mount   = "/global/"
}
`))
	for _, p := range []string{l.SitesFile, l.SitesLink} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists after the last site went: %v", p, err)
		}
	}
	fetch(t, port, "GET", "a.example", "/", "", nil).want(t, in, "site a gone", 200, "the default site")
}

// selfSigned writes a certificate for name and its key.
func selfSigned(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	testutil.NeedBinary(t, "openssl")
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
		"-days", "2", "-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return cert, key
}

// TestTLSSite: a TLS site answers http with a 301 to the same URL on
// https, and its backend sees X-Forwarded-Proto: https.
func TestTLSSite(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port), apachetest.ExtraPorts(1))
	tlsPort := in.Extra[0]
	cert, key := selfSigned(t, dir, "secure.example")
	startEcho(t, dir+"/app.sock", "app")
	startEcho(t, dir+"/plain.sock", "plain")
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "secure.example" {
  aliases = ["www.secure.example"]
  listen  = ["*:%d"]
  tls {
    certificate = %q
    key         = %q
    listen      = ["*:%d"]
  }
}
site "plain.example" {
  listen = ["*:%d"]
}
backend "app" {
  command = ["/bin/true"]
  site    = "secure.example"
  mount   = "/app/"
}
backend "plain" {
  command = ["/bin/true"]
  site    = "plain.example"
}
`, port, cert, key, tlsPort, port))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)

	r := fetch(t, port, "GET", "www.secure.example", "/app/x?q=1&r=%2F", "", nil)
	want := fmt.Sprintf("https://www.secure.example:%d/app/x?q=1&r=%%2F", tlsPort)
	if r.code != http.StatusMovedPermanently || r.hdr.Get("Location") != want {
		t.Errorf("http GET = %d Location %q, want 301 %q\n%s", r.code, r.hdr.Get("Location"), want, in.Log())
	}
	if strings.Contains(r.body, "name=") {
		t.Error("the redirecting vhost reached the backend")
	}
	// ACME http-01 challenges stay on http, served from the main DocumentRoot.
	if err := os.MkdirAll(filepath.Join(in.Dir, ".well-known", "acme-challenge"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.Dir, ".well-known", "acme-challenge", "tok"), []byte("tok.key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fetch(t, port, "GET", "secure.example", "/.well-known/acme-challenge/tok", "", nil).want(t, in, "acme challenge", 200, "tok.key")
	fetch(t, tlsPort, "GET", "secure.example", "/app/x", "secure.example", nil).
		want(t, in, "https", 200, "name=app path=/x ", "X-Forwarded-Proto=https ", "X-Forwarded-Prefix=/app ")
	// The plain site on the same http port is untouched by the redirect.
	fetch(t, port, "GET", "plain.example", "/p", "", nil).want(t, in, "plain site", 200, "name=plain path=/p ", "X-Forwarded-Proto=http ")
}

// phpTree is a document root with everything the PHP tests ask for.
func phpTree(t *testing.T, root string) {
	t.Helper()
	files := map[string]string{
		"index.php":         `<?php echo "SCRIPT_FILENAME=", $_SERVER['SCRIPT_FILENAME'], " PATH_INFO=", $_SERVER['PATH_INFO'] ?? '', " SCRIPT_NAME=", $_SERVER['SCRIPT_NAME'], " REQUEST_URI=", $_SERVER['REQUEST_URI'], " AUTH=", $_SERVER['HTTP_AUTHORIZATION'] ?? '', " PHP_AUTH_USER=", $_SERVER['PHP_AUTH_USER'] ?? '', " HTTPS=", $_SERVER['HTTPS'] ?? '', "\n";`,
		"style.css":         "body { color: red }\n",
		"denied/.htaccess":  "Require all denied\n",
		"denied/secret.php": `<?php echo "SECRET RAN\n";`,
		"src.phtml":         `<?php echo "phtml ran\n";`,
		"UPPER.PHP":         `<?php echo "upper ran\n";`,
		".user.ini":         "memory_limit=1M\n",
	}
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPHPDocroot: with protocol fcgi and a document_root, Apache serves
// the tree and hands only existing .php files to PHP-FPM, under its access
// rules: the WordPress and DokuWiki failures.
func TestPHPDocroot(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port))
	root := startFPM(t, dir, dir+"/php.sock", dir+"/wiki.sock")
	phpTree(t, root)
	assets := filepath.Join(dir, "assets")
	if err := os.Mkdir(assets, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"a.css": "a{}\n", "x.php": "<?php echo 'alias ran';"} {
		if err := os.WriteFile(filepath.Join(assets, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startEcho(t, dir+"/app.sock", "app")
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "php.example" {
  listen = ["*:%[1]d"]
}
site "mix.example" {
  listen = ["*:%[1]d"]
}
backend "php" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  site          = "php.example"
  document_root = %[2]q
  fallback      = "/index.php"
  alias         = { "/assets/" = "%[3]s/" }
}
# DokuWiki's shape: PHP under a mount, beside a proxied app at "/".
backend "wiki" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  site          = "mix.example"
  mount         = "/wiki/"
  document_root = %[2]q
}
backend "app" {
  command = ["/bin/true"]
  site    = "mix.example"
}
`, port, root, assets))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	get := func(host, path string, hdr map[string]string) reply {
		return fetch(t, port, "GET", host, path, "", hdr)
	}
	const h = "php.example"

	r := get(h, "/style.css", nil)
	r.want(t, in, "static css", 200, "color: red")
	if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("style.css Content-Type = %q, want text/css", ct)
	}
	get(h, "/", nil).want(t, in, "DirectoryIndex", 200, "SCRIPT_FILENAME="+root+"/index.php ")
	get(h, "/index.php/sample-page/", nil).want(t, in, "PATH_INFO", 200, "SCRIPT_FILENAME="+root+"/index.php ", "PATH_INFO=/sample-page/ ")
	get(h, "/sample-page/?p=2", nil).want(t, in, "fallback", 200, "SCRIPT_FILENAME="+root+"/index.php ", "REQUEST_URI=/sample-page/?p=2 ")
	get(h, "/", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}).want(t, in, "Authorization", 200, "AUTH=Basic dXNlcjpwYXNz ", "PHP_AUTH_USER=user ")

	// Missing .php files are Apache's 404, never PHP-FPM's: with a
	// fallback they go to the front controller, without one (the wiki
	// backend) Apache answers.
	get(h, "/missing.php", nil).want(t, in, "missing .php with fallback", 200, "SCRIPT_FILENAME="+root+"/index.php ", "REQUEST_URI=/missing.php ")
	r = get("mix.example", "/wiki/missing.php", nil)
	if r.code != 404 || strings.Contains(r.body, "File not found.") {
		t.Errorf("missing .php = %d %q, want Apache's 404", r.code, r.body)
	}
	if strings.Contains(in.Log(), "Primary script unknown") {
		t.Errorf("PHP-FPM was asked for a missing script:\n%s", in.Log())
	}
	// Access rules apply to PHP files too (DokuWiki's bin/ ran before).
	for _, p := range []string{"/denied/secret.php", "/denied/", "/src.phtml", "/UPPER.PHP", "/.user.ini", "/assets/x.php"} {
		r := get(h, p, nil)
		if r.code != 403 {
			t.Errorf("GET %s = %d %q, want 403", p, r.code, r.body)
		}
		if strings.Contains(r.body, "ran") || strings.Contains(r.body, "<?php") || strings.Contains(r.body, "memory_limit") {
			t.Errorf("GET %s leaked or ran: %q", p, r.body)
		}
	}
	r = get(h, "/assets/a.css", nil)
	r.want(t, in, "alias", 200, "a{}")
	if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("alias Content-Type = %q, want text/css", ct)
	}

	// Under a mount, beside a proxied "/": Apache serves /wiki/ from disk.
	r = get("mix.example", "/wiki/style.css", nil)
	r.want(t, in, "mount static", 200, "color: red")
	get("mix.example", "/wiki/", nil).want(t, in, "mount index", 200, "SCRIPT_FILENAME="+root+"/index.php ", "SCRIPT_NAME=/wiki/index.php ")
	get("mix.example", "/wiki/index.php/a/b", nil).want(t, in, "mount PATH_INFO", 200, "PATH_INFO=/a/b ")
	if r := get("mix.example", "/wiki/denied/secret.php", nil); r.code != 403 {
		t.Errorf("mount denied = %d %q", r.code, r.body)
	}
	get("mix.example", "/other", nil).want(t, in, "proxied root", 200, "name=app path=/other ")
	get("mix.example", "/wikipedia", nil).want(t, in, "mount is a path segment", 200, "name=app path=/wikipedia ")
}

// TestAliasExcludedFromProxy is Django's /static/: the alias is served from
// disk although the backend is mounted at "/", inside a site and globally,
// and even with a global ProxyPass "/" in front (which used to win).
func TestAliasExcludedFromProxy(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port))
	static := filepath.Join(dir, "static")
	if err := os.MkdirAll(filepath.Join(static, "admin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"admin/base.css": "b{}\n", "app.js": "var x;\n"} {
		if err := os.WriteFile(filepath.Join(static, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startEcho(t, dir+"/dj.sock", "dj")
	startEcho(t, dir+"/g.sock", "g")
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "dj.example" {
  listen = ["*:%d"]
}
backend "dj" {
  preset  = "generic"
  command = ["/bin/true"]
  site    = "dj.example"
  alias   = { "/static/" = "%s/" }
}
backend "g" {
  command = ["/bin/true"]
  alias   = { "/media" = %q }
}
`, port, static, static))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	types := map[string]string{"/static/admin/base.css": "text/css", "/static/app.js": "text/javascript"}
	paths := make([]string, 0, len(types))
	for p := range types {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		r := fetch(t, port, "GET", "dj.example", p, "", nil)
		r.want(t, in, p, 200)
		if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, types[p]) && !(types[p] == "text/javascript" && strings.HasPrefix(ct, "application/javascript")) {
			t.Errorf("%s Content-Type = %q, want %s", p, ct, types[p])
		}
	}
	if r := fetch(t, port, "GET", "dj.example", "/static/none.css", "", nil); r.code != 404 || strings.Contains(r.body, "name=") {
		t.Errorf("missing static file = %d %q, want Apache's 404", r.code, r.body)
	}
	fetch(t, port, "GET", "dj.example", "/admin/", "", nil).want(t, in, "site app", 200, "name=dj path=/admin/ ")
	// The global backend at "/" takes everything else, in every vhost but
	// the site, which owns its own "/".
	fetch(t, port, "GET", "other.example", "/x", "", nil).want(t, in, "global", 200, "name=g path=/x ")
	fetch(t, port, "GET", "other.example", "/media/app.js", "", nil).want(t, in, "global alias", 200, "var x;")
}

// TestIncludeSite: render = "include" writes the site's rules to a file the
// operator's own virtual host Includes; a site that goes leaves a stub.
func TestIncludeSite(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	own := defaultVhost(t, dir, port) + fmt.Sprintf("<VirtualHost *:%d>\n    ServerName panel.example\n    IncludeOptional %s/sockvisor-sites/panel.example*.conf\n</VirtualHost>\n", port, dir)
	in, l := testApacheSite(t, dir, own, apachetest.ListenOn(port))
	startEcho(t, dir+"/p.sock", "p")
	cfg := loadHCL(t, dir, `
site "panel.example" {
  render = "include"
}
backend "p" {
  command = ["/bin/true"]
  site    = "panel.example"
  mount   = "/app/"
}
`)
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	fetch(t, port, "GET", "panel.example", "/app/x", "", nil).want(t, in, "included", 200, "name=p path=/x ")
	fetch(t, port, "GET", "other.example", "/app/x", "", nil).want(t, in, "other vhost", 404)
	if _, err := os.Stat(l.SitesFile); !os.IsNotExist(err) {
		t.Errorf("an include-only config wrote the sites file: %v", err)
	}
	mustApply(t, m, loadHCL(t, dir, `
backend "p" {
  command = ["/bin/true"]
  mount   = "/other/"
}
`))
	stub, err := os.ReadFile(filepath.Join(l.IncludeDir, "panel.example.conf"))
	if err != nil || !strings.Contains(string(stub), "no longer in sockvisor's config") {
		t.Errorf("stub = %q, %v", stub, err)
	}
	fetch(t, port, "GET", "panel.example", "/app/x", "", nil).want(t, in, "after removal", 404)
}

// TestPrefixAndSchemeInSite: inside a TLS site, Gunicorn at a mount gets
// SCRIPT_NAME and PATH_INFO right and wsgi.url_scheme https (it trusts
// X-Forwarded-Proto from a unix socket peer), uWSGI gets SCRIPT_NAME from
// mod_proxy_uwsgi, and a WebSocket upgrade passes a site's <Location>.
func TestPrefixAndSchemeInSite(t *testing.T) {
	testutil.NeedBinary(t, "gunicorn", "uwsgi")
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port), apachetest.ExtraPorts(1))
	tlsPort := in.Extra[0]
	cert, key := selfSigned(t, dir, "py.example")
	startGunicorn(t, dir, dir+"/g.sock", "g")
	startUWSGI(t, dir, dir+"/u.sock", "u")
	ln, err := net.Listen("unix", dir+"/ws.sock")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir+"/ws.sock", 0o666)
	srv := &http.Server{Handler: http.HandlerFunc(echoUpgrade)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg := loadHCL(t, dir, fmt.Sprintf(`
site "py.example" {
  listen        = ["*:%d"]
  redirect_http = false
  tls {
    certificate = %q
    key         = %q
    listen      = ["*:%d"]
  }
}
backend "g" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  site    = "py.example"
  mount   = "/g/"
}
backend "u" {
  preset  = "uwsgi"
  command = ["/bin/true"]
  site    = "py.example"
  mount   = "/u/"
}
backend "ws" {
  command   = ["/bin/true"]
  site      = "py.example"
  mount     = "/ws/"
  websocket = true
}
`, port, cert, key, tlsPort))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)

	fetch(t, tlsPort, "GET", "py.example", "/g/a/b", "py.example", nil).want(t, in, "gunicorn https", 200, "name=g path=/a/b host=py.example script=/g scheme=https")
	fetch(t, port, "GET", "py.example", "/g/a", "", nil).want(t, in, "gunicorn http", 200, "path=/a ", "script=/g scheme=http")
	fetch(t, port, "GET", "py.example", "/g/", "", nil).want(t, in, "gunicorn root", 200, "path=/ ", "script=/g ")
	fetch(t, tlsPort, "GET", "py.example", "/u/x", "py.example", nil).want(t, in, "uwsgi https", 200, "name=u path=/x ", "script=/u ", "scheme=https")
	if got := upgradeHost(t, port, "py.example", "/ws/chat"); got != "101 echo:hello" {
		t.Errorf("upgrade in a site: %q\n%s", got, in.Log())
	}
}

// TestPHPGlobalRoot: a PHP backend mounted at "/" without a site is an
// Alias "/" in the global config; the directory needs its trailing slash
// there, or "/x" would map to "<root>x".
func TestPHPGlobalRoot(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	root := startFPM(t, dir, dir+"/php.sock")
	phpTree(t, root)
	cfg := loadHCL(t, dir, fmt.Sprintf(`
backend "php" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  document_root = %q
}
`, root))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	r := fetch(t, in.Port, "GET", "localhost", "/style.css", "", nil)
	r.want(t, in, "static", 200, "color: red")
	fetch(t, in.Port, "GET", "localhost", "/", "", nil).want(t, in, "index", 200, "SCRIPT_FILENAME="+root+"/index.php ")
	fetch(t, in.Port, "GET", "localhost", "/index.php/a", "", nil).want(t, in, "PATH_INFO", 200, "PATH_INFO=/a ")
	if r := fetch(t, in.Port, "GET", "localhost", "/denied/secret.php", "", nil); r.code != 403 {
		t.Errorf("denied = %d %q", r.code, r.body)
	}
	if r := fetch(t, in.Port, "GET", "localhost", "/missing.php", "", nil); r.code != 404 || strings.Contains(r.body, "File not found.") {
		t.Errorf("missing = %d %q, want Apache's 404", r.code, r.body)
	}
}
