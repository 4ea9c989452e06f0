package apacheconf

import (
	"strings"
	"testing"
	"time"
)

func parseMem(t *testing.T, files memFS, opts ParseOptions) *Config {
	t.Helper()
	if opts.ServerRoot == "" {
		opts.ServerRoot = "/etc/apache2"
	}
	c, err := newParser("/etc/apache2/apache2.conf", opts, files).parse()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseFindsEveryUnixTarget(t *testing.T) {
	files := memFS{
		"/etc/apache2/apache2.conf": `# main
DefaultRuntimeDir ${APACHE_RUN_DIR}
PidFile run/apache2.pid
ErrorLog ${APACHE_LOG_DIR}/error.log
Define SOCKDIR /run/sv
IncludeOptional mods-enabled/*.load
IncludeOptional nothing/*.conf
Include sites-enabled/*.conf
<IfModule !proxy_module>
ProxyPass /skipped/ unix:/run/skip.sock|http://skip/
</IfModule>
<IfDefine NOPE>
ProxyPass /skipped2/ unix:/run/skip2.sock|http://skip2/
</IfDefine>
`,
		"/etc/apache2/mods-enabled/proxy.load": "LoadModule proxy_module /x/mod_proxy.so\n",
		"/etc/apache2/sites-enabled/a.conf": `<VirtualHost *:80>
  ErrorLog logs/vhost.log
  ProxyPass "/app/" "unix:${SOCKDIR}/app.sock|http://app.invalid/" retry=0 \
      timeout=30 nocanon
  ProxyPassMatch "^/(.*\.php)$" 'unix:/run/php/x.sock|fcgi://x.invalid/var/www/$1'
  <Location /loc/>
    ProxyPass unix:relative.sock|HTTP://Loc.Invalid:80/
  </Location>
  <FilesMatch "\.php$">
    SetHandler "proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost"
  </FilesMatch>
  SetHandler proxy:UNIX:/run/bare.sock
</VirtualHost>
<Proxy "balancer://pool">
  BalancerMember "unix:/run/sv/b1.sock|http://b1.invalid/" retry=5
  BalancerMember unix:/run/sv/b2.sock|http://b2.invalid/
</Proxy>
<Proxy "unix:/run/php/y.sock|fcgi://y.invalid/" enablereuse=on>
  ProxySet max=10
</Proxy>
ProxySet ignored=1
# ProxyPass /c/ unix:/run/commented.sock|http://c/
`,
	}
	c := parseMem(t, files, ParseOptions{
		Vars:    map[string]string{"APACHE_RUN_DIR": "/var/run/apache2", "APACHE_LOG_DIR": "/var/log/apache2"},
		Modules: map[string]bool{},
	})
	type want struct{ dir, path, scheme, worker, mount, bal string }
	wants := []want{
		{"ProxyPass", "/run/sv/app.sock", "http", "http://app.invalid/", "/app/", ""},
		{"ProxyPassMatch", "/run/php/x.sock", "fcgi", "fcgi://x.invalid/var/www/", `^/(.*\.php)$`, ""},
		{"ProxyPass", "/var/run/apache2/relative.sock", "http", "http://loc.invalid/", "/loc/", ""},
		{"SetHandler", "/run/php/php8.2-fpm.sock", "fcgi", "fcgi://localhost/", "", ""},
		{"SetHandler", "/run/bare.sock", "", "", "", ""},
		{"BalancerMember", "/run/sv/b1.sock", "http", "http://b1.invalid/", "", "balancer://pool"},
		{"BalancerMember", "/run/sv/b2.sock", "http", "http://b2.invalid/", "", "balancer://pool"},
		{"Proxy", "/run/php/y.sock", "fcgi", "fcgi://y.invalid/", "", ""},
	}
	if len(c.Targets) != len(wants) {
		for _, tg := range c.Targets {
			t.Logf("%+v", tg)
		}
		t.Fatalf("got %d targets, want %d; warnings %q", len(c.Targets), len(wants), c.Warnings)
	}
	for i, w := range wants {
		g := c.Targets[i]
		got := want{g.Directive, g.Path, g.Scheme, g.Worker, g.Mount, g.Balancer}
		if got != w {
			t.Errorf("target %d = %+v, want %+v", i, got, w)
		}
	}
	app := c.Targets[0]
	if app.File != "/etc/apache2/sites-enabled/a.conf" || app.Line != 3 || app.VirtualHost != "/etc/apache2/sites-enabled/a.conf:1" {
		t.Errorf("position = %s vhost %q", app.Pos(), app.VirtualHost)
	}
	if v, _ := app.Param("retry"); v != "0" {
		t.Errorf("retry = %q", v)
	}
	if v, _ := app.Param("timeout"); v != "30" {
		t.Errorf("continued line lost timeout: %+v", app.Params)
	}
	if v, ok := c.Targets[5].Param("retry"); !ok || v != "5" {
		t.Errorf("member retry = %q %v", v, ok)
	}
	if _, ok := c.Targets[6].Param("retry"); ok {
		t.Errorf("b2 has no retry")
	}
	if v, _ := c.Targets[7].Param("max"); v != "10" {
		t.Errorf("ProxySet inside <Proxy> not applied: %+v", c.Targets[7].Params)
	}
	if c.PidFile != "/etc/apache2/run/apache2.pid" {
		t.Errorf("PidFile = %q", c.PidFile)
	}
	if c.DefaultRuntimeDir != "/var/run/apache2" {
		t.Errorf("DefaultRuntimeDir = %q", c.DefaultRuntimeDir)
	}
	if strings.Join(c.ErrorLogs, ",") != "/var/log/apache2/error.log,/etc/apache2/logs/vhost.log" {
		t.Errorf("ErrorLogs = %q", c.ErrorLogs)
	}
	if len(c.Files) != 3 {
		t.Errorf("Files = %q", c.Files)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %q", c.Warnings)
	}
}

func TestParseSurvivesBrokenConfig(t *testing.T) {
	files := memFS{
		"/etc/apache2/apache2.conf": "<VirtualHost *:80>\nInclude loop.conf\nInclude missing.conf\n</Nope>\nProxyPass /a\n\"unterminated\n<Proxy\n",
		"/etc/apache2/loop.conf":    "Include loop.conf\nProxyPass /l/ unix:/l.sock|http://l/\n",
	}
	c := parseMem(t, files, ParseOptions{})
	if len(c.Targets) != maxIncludeDepth {
		t.Errorf("targets = %d, want one per include level (%d)", len(c.Targets), maxIncludeDepth)
	}
	joined := strings.Join(c.Warnings, "\n")
	for _, w := range []string{"nested deeper", "missing.conf", "</nope> without", "never closed"} {
		if !strings.Contains(joined, w) {
			t.Errorf("no warning about %q in:\n%s", w, joined)
		}
	}
}

func TestParseBoundsExpansionAndIncludes(t *testing.T) {
	var src strings.Builder
	src.WriteString("Define X ab\nInclude /etc/apache2/*.conf\n")
	for i := 0; i < 40; i++ {
		src.WriteString("Define X ${X}${X}\n")
	}
	src.WriteString("ProxyPass /a/ unix:/a.sock|http://a/\n")
	files := memFS{"/etc/apache2/apache2.conf": src.String(), "/etc/apache2/b.conf": src.String()}
	start := time.Now()
	c := parseMem(t, files, ParseOptions{})
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("parse took %s", d)
	}
	if len(c.Files) > maxFiles || len(c.Targets) == 0 {
		t.Errorf("files %d targets %d", len(c.Files), len(c.Targets))
	}
	if !strings.Contains(strings.Join(c.Warnings, "\n"), "expansion exceeds") {
		t.Errorf("no expansion warning: %q", c.Warnings)
	}
}

func TestSplitUnixURL(t *testing.T) {
	for _, c := range []struct{ raw, sock, url string }{
		{"unix:/run/a.sock|http://a/", "/run/a.sock", "http://a/"},
		{"UNIX:///run/a.sock|fcgi://x", "/run/a.sock", "fcgi://x"},
		{"unix:/run/a.sock?x=1|http:", "/run/a.sock", "http:"},
		{"unix:/run/a%20b.sock", "/run/a%20b.sock", ""},
		{"unix:rel.sock|uwsgi://u/", "rel.sock", "uwsgi://u/"},
		{"http://x/", "", ""},
	} {
		s, u := SplitUnixURL(c.raw)
		if s != c.sock || u != c.url {
			t.Errorf("SplitUnixURL(%q) = %q, %q; want %q, %q", c.raw, s, u, c.sock, c.url)
		}
	}
}

func TestWorkerName(t *testing.T) {
	for _, c := range []struct {
		url                  string
		match                bool
		scheme, host, worker string
	}{
		{"http://App.Invalid:80/x/", false, "http", "app.invalid", "http://app.invalid/x/"},
		{"http:", false, "http", "localhost", "http://localhost/"},
		{"fcgi://localhost", false, "fcgi", "localhost", "fcgi://localhost/"},
		{"http://h:8080", false, "http", "h", "http://h:8080/"},
		{"fcgi://x/var/www/$1", true, "fcgi", "x", "fcgi://x/var/www/"},
		{"", false, "", "", ""},
	} {
		s, h, w := WorkerName(c.url, c.match)
		if s != c.scheme || h != c.host || w != c.worker {
			t.Errorf("WorkerName(%q) = %q %q %q", c.url, s, h, w)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	got := splitArgs(`ProxyPass  "/a b/" 'x\'y' plain "esc\"q" "open`)
	want := []string{"ProxyPass", "/a b/", "x'y", "plain", `esc"q`, "open"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitArgs = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("ProxyPass /a/ unix:/run/a.sock|http://a/ retry=0\n<Proxy balancer://p>\nBalancerMember unix:/b|http://b/\n</Proxy>\n"))
	f.Add([]byte("<VirtualHost *>\n<Location /x>\nProxyPass unix:r.sock|fcgi://x\n</Location>\nInclude /f/inc.conf\n"))
	f.Add([]byte("Define X ${X}${X}\nSetHandler \"proxy:unix:/p|fcgi://l\" \\\n\n<IfModule !a>\n</IfModule>\n</Proxy>\n"))
	f.Add([]byte("Include /f/*.conf\nIncludeOptional /f/[\nDefaultRuntimeDir rel\n<Proxy \"unix:/q\" a=b>\nProxySet x=y\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files := memFS{"/f/main.conf": string(data), "/f/inc.conf": string(data)}
		p := newParser("/f/main.conf", ParseOptions{ServerRoot: "/f", Modules: map[string]bool{}}, files)
		p.maxFiles, p.maxTotal = 64, 1<<20
		c, err := p.parse()
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range c.Targets {
			if tg.Line < 1 || tg.File == "" {
				t.Fatalf("target without a position: %+v", tg)
			}
		}
	})
}
