package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pemPair writes a fresh self-signed certificate and its key.
func pemPair(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c, k := genPair(t)
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// genPair returns a fresh self-signed certificate and its key, in PEM.
func genPair(t *testing.T) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"a.example"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// TestTLSFilesLoad: check loads the certificate and key as mod_ssl will,
// since a graceful restart onto one it cannot load kills Apache.
func TestTLSFilesLoad(t *testing.T) {
	cert, key := pemPair(t)
	_, otherKey := pemPair(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, _ := os.ReadFile(key)
	garbage := write("bad.pem", "this is not a certificate\n")
	keyOnly := write("keyonly.pem", string(keyPEM))
	brokenDER := write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	site := func(c, k string) string {
		return fmt.Sprintf("site \"a.example\" {\n  tls {\n    certificate = %q\n    key = %q\n  }\n}", c, k)
	}
	mustParse(t, site(cert, key))
	wantProblem(t, site(garbage, key), "3:19", "tls.certificate "+garbage+" holds no PEM certificate", "name the PEM certificate file")
	wantProblem(t, site(keyOnly, key), "3:19", "holds no PEM certificate")
	wantProblem(t, site(brokenDER, key), "3:19", "does not parse")
	wantProblem(t, site(cert, garbage), "4:11", "tls.key "+garbage+" holds no PEM private key")
	wantProblem(t, site(cert, otherKey), "4:11", "tls.key "+otherKey+" does not go with tls.certificate "+cert, "name the key the certificate was issued for")
}

func TestSiteDefaults(t *testing.T) {
	cert, key := pemPair(t)
	c := mustParse(t, fmt.Sprintf(`
site "blog.example" {
  aliases = ["www.blog.example", "*.blog.example"]
  tls {
    certificate = %q
    key         = %q
  }
}
site "app.example" {}
site "panel.example" {
  render = "include"
}
backend "wp" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  user          = "root"
  site          = "blog.example"
  document_root = "/var/www"
}
backend "dj" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  site    = "app.example"
}
`, cert, key))
	if len(c.Sites) != 3 {
		t.Fatalf("sites = %d", len(c.Sites))
	}
	blog := c.Site("blog.example")
	if strings.Join(blog.Listen, " ") != "*:80" || strings.Join(blog.TLS.Listen, " ") != "*:443" || !blog.RedirectHTTP || blog.Render != "vhost" {
		t.Errorf("tls site defaults = %+v %+v", blog, blog.TLS)
	}
	app := c.Site("app.example")
	if strings.Join(app.Listen, " ") != "*:80" || app.TLS != nil || app.RedirectHTTP {
		t.Errorf("plain site defaults = %+v", app)
	}
	if p := c.Site("panel.example"); p.Render != "include" || p.Listen != nil {
		t.Errorf("include site = %+v", p)
	}
	wp := c.Backend("wp")
	if !wp.Docroot() || !wp.Htaccess || strings.Join(wp.Index, " ") != "index.php index.html" || wp.Fallback != "" || wp.Site != "blog.example" {
		t.Errorf("php backend defaults = %+v", wp)
	}
	if wp.FPM.PM != "dynamic" || wp.FPM.MaxChildren != DefaultFPMMaxChildren() || wp.FPM.MaxChildren < 8 {
		t.Errorf("fpm defaults = %+v", wp.FPM)
	}
	dj := c.Backend("dj")
	if dj.Docroot() || dj.Htaccess || dj.Index != nil || dj.FPM.PM != "" {
		t.Errorf("http backend got php defaults: %+v", dj)
	}
	// Two sites may both mount "/".
}

func TestBackendWebKeys(t *testing.T) {
	static := t.TempDir()
	if err := os.Chmod(static, 0o755); err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, fmt.Sprintf(`
backend "wp" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  user          = "root"
  document_root = "/var/www"
  index         = ["index.php"]
  fallback      = "/index.php"
  htaccess      = false
  alias         = { "/wp-content/" = "%s/", "/a" = %q }
  fpm {
    pm           = "static"
    max_children = 16
    settings     = { "php_admin_value[memory_limit]" = "256M", "request_terminate_timeout" = "60s" }
  }
}
`, static, static))
	wp := c.Backend("wp")
	if wp.Htaccess || wp.Fallback != "/index.php" || strings.Join(wp.Index, " ") != "index.php" {
		t.Errorf("php keys = %+v", wp)
	}
	if len(wp.Aliases) != 2 || wp.Aliases[0].URL != "/wp-content/" || wp.Aliases[1].URL != "/a" {
		t.Errorf("aliases (longest first) = %+v", wp.Aliases)
	}
	if wp.FPM.PM != "static" || wp.FPM.MaxChildren != 16 || wp.FPM.Settings["php_admin_value[memory_limit]"] != "256M" {
		t.Errorf("fpm = %+v", wp.FPM)
	}
	// Apache-only keys never restart a backend.
	other := *wp
	other.Aliases, other.Site, other.Fallback = nil, "x", ""
	if !wp.Equal(&other) {
		t.Error("an alias or site change counts as a backend change")
	}
	other.FPM.MaxChildren = 3
	if wp.Equal(&other) {
		t.Error("an fpm change does not count as a backend change")
	}
}

func TestSiteProblems(t *testing.T) {
	cert, key := pemPair(t)
	world := t.TempDir()
	if err := os.Chmod(world, 0o777); err != nil {
		t.Fatal(err)
	}
	be := `backend "a" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
`
	for _, tc := range []struct {
		name, src, line string
		frags           []string
	}{
		{"bad name", `site "Blog_x" {}`, "1", []string{"not a host name"}},
		{"twice", "site \"a.example\" {}\nsite \"a.example\" {}", "2", []string{"defined twice"}},
		{"shared alias", "site \"a.example\" {}\nsite \"b.example\" {\n  aliases = [\"a.example\"]\n}", "2", []string{`host name "a.example" belongs to both`}},
		{"bad listen", "site \"a.example\" {\n  listen = [\"localhost:80\"]\n}", "2", []string{"* or an IP address"}},
		{"no port", "site \"a.example\" {\n  listen = [\"*\"]\n}", "2", []string{"not HOST:PORT"}},
		{"redirect without tls", "site \"a.example\" {\n  redirect_http = true\n}", "2", []string{"needs a tls block"}},
		{"missing cert", "site \"a.example\" {\n  tls {\n    certificate = \"/nonexistent.pem\"\n    key = \"" + key + "\"\n  }\n}", "3", []string{"tls.certificate /nonexistent.pem cannot be read"}},
		{"include with tls", "site \"a.example\" {\n  render = \"include\"\n  tls {\n    certificate = \"" + cert + "\"\n    key = \"" + key + "\"\n  }\n}", "3", []string{`no effect with render = "include"`}},
		{"bad render", "site \"a.example\" {\n  render = \"file\"\n}", "2", []string{`render "file" is not allowed`}},
		{"same address twice", "site \"a.example\" {\n  listen = [\"*:8443\"]\n  tls {\n    certificate = \"" + cert + "\"\n    key = \"" + key + "\"\n    listen = [\"*:8443\"]\n  }\n}", "2", []string{"both listen and tls.listen"}},
		{"unknown site", be + "  site = \"nope.example\"\n}", "5", []string{`names site "nope.example", which no site block defines`}},
		{"php key on http", be + "  fallback = \"/index.php\"\n}", "5", []string{"fallback applies only to protocol \"fcgi\""}},
		{"fpm on gunicorn", be + "  fpm {\n    pm = \"static\"\n  }\n}", "5", []string{"fpm block applies only to preset \"php-fpm\""}},
		{"alias missing dir", be + "  alias = { \"/s/\" = \"/nonexistent/\" }\n}", "5", []string{"alias directory /nonexistent/ for \"/s/\" cannot be used"}},
		{"alias slash mismatch", be + "  alias = { \"/s/\" = \"/tmp\" }\n}", "5", []string{"both with a trailing slash or both without"}},
		{"alias relative", be + "  alias = { \"/s\" = \"tmp\" }\n}", "5", []string{"clean absolute path"}},
		{"alias root", be + "  alias = { \"/s/\" = \"/\" }\n}", "5", []string{"other than /"}},
		{"docroot root", "backend \"p\" {\n  preset = \"php-fpm\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n  document_root = \"/\"\n}", "5", []string{"whole filesystem"}},
		{"alias bad url", be + "  alias = { \"s\" = \"/tmp\" }\n}", "5", []string{"clean URL path"}},
		{"alias world-writable", be + "  alias = { \"/s\" = \"" + world + "\" }\n}", "5", []string{"writable by every user", "alias_world_writable = true"}},
		{"alias is mount", be + "  mount = \"/app/\"\n  alias = { \"/app\" = \"/tmp\" }\n}", "6", []string{"is the mount itself"}},
		{"fpm reserved", "backend \"p\" {\n  preset = \"php-fpm\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n  document_root = \"/var/www\"\n  fpm {\n    settings = { \"listen.owner\" = \"x\" }\n  }\n}", "7", []string{"sockvisor's to set"}},
		{"fpm bad pm", "backend \"p\" {\n  preset = \"php-fpm\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n  document_root = \"/var/www\"\n  fpm {\n    pm = \"lazy\"\n  }\n}", "7", []string{`pm "lazy" is not allowed`}},
		{"proxy all off docroot", be + "  fcgi_proxy_all = true\n}", "5", []string{"fcgi_proxy_all applies only"}},
		{"shared docroot", "backend \"p\" {\n  preset = \"php-fpm\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n  document_root = \"/var/www\"\n}\nbackend \"q\" {\n  preset = \"php-fpm\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"/q/\"\n  document_root = \"/var/www\"\n}", "12", []string{`served by backends "p" and "q"`, "use instances"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantProblem(t, tc.src, tc.line, tc.frags...) })
	}
	// alias_world_writable accepts it.
	mustParse(t, be+"  alias = { \"/s\" = \""+world+"\" }\n  alias_world_writable = true\n}")
}

func TestMountsPerSite(t *testing.T) {
	mustParse(t, `
site "a.example" {}
site "b.example" {}
backend "a" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  site    = "a.example"
}
backend "b" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  site    = "b.example"
}
backend "g" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
}
`)
	wantProblem(t, `
site "a.example" {}
backend "a" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  site    = "a.example"
}
backend "b" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
  site    = "a.example"
}
`, "", `mount "/" is used by backends "a" and "b"`)
}
