package apache

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// loadTestdata parses a testdata config in which @TESTDATA@ stands for the
// testdata directory's absolute path (aliases and certificates must exist).
func loadTestdata(t *testing.T, name string, edit func(string) string) (*config.Config, string) {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(src), "@TESTDATA@", abs)
	if edit != nil {
		text = edit(text)
	}
	cfg, err := config.Parse([]byte(text), "testdata/"+name)
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return cfg, abs
}

func renderTestdata(t *testing.T, name string, edit func(string) string) string {
	t.Helper()
	cfg, abs := loadTestdata(t, name, edit)
	return strings.ReplaceAll(string(Render(cfg)), abs, "@TESTDATA@")
}

func TestRenderSitesGolden(t *testing.T) {
	got := renderTestdata(t, "sites.hcl", nil)
	const golden = "testdata/sites.conf"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRenderSitesGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("Render differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}

// TestRenderIgnoresUnrelatedEdits: moving blocks, adding comments and
// blank lines, and changing what Apache never sees (a backend's command
// or user) must leave the rendered bytes alone, or an unrelated edit would
// reload Apache.
func TestRenderIgnoresUnrelatedEdits(t *testing.T) {
	base := renderTestdata(t, "sites.hcl", nil)
	moved := renderTestdata(t, "sites.hcl", func(s string) string {
		// Move the first site block to the end, behind comments and blank lines.
		i := strings.Index(s, `site "blog.example" {`)
		j := strings.Index(s, `site "app.example" {`)
		block := s[i:j]
		return s[:i] + s[j:] + "\n\n# moved\n\n\n" + block
	})
	if moved != base {
		t.Errorf("moving a site block changed the output:\n%s", moved)
	}
	reordered := renderTestdata(t, "sites.hcl", func(s string) string {
		i := strings.Index(s, `backend "wp" {`)
		j := strings.Index(s, `backend "wiki" {`)
		return s[:i] + s[j:] + "\n" + s[i:j]
	})
	if reordered != base {
		t.Errorf("moving a backend block changed the output")
	}
	edited := renderTestdata(t, "sites.hcl", func(s string) string {
		return strings.Replace(s, `backend "django" {`, "backend \"django\" {\n  stop_timeout = \"5s\"\n  environment = { A = \"b\" }\n", 1)
	})
	if edited != base {
		t.Errorf("a backend key Apache never sees changed the output")
	}
	if regexp.MustCompile(`\.hcl:\d`).MatchString(base) {
		t.Error("the output carries a config line number")
	}
}

func TestRenderSitesShapes(t *testing.T) {
	cfg, _ := loadTestdata(t, "sites.hcl", nil)
	files := RenderFiles(cfg)
	if len(files) != 3 || files[0].Kind != KindMain || files[1].Kind != KindSites || files[2].Kind != KindInclude || files[2].Site != "panel.example" {
		t.Fatalf("files = %v", kinds(files))
	}
	main, sites, inc := string(files[0].Data), string(files[1].Data), string(files[2].Data)
	for _, f := range files {
		if !bytes.HasPrefix(f.Data, []byte(header)) {
			t.Errorf("%s file lacks the header", f.Kind)
		}
	}
	// No vhost, Location or site rule leaks into the global config.
	if regexp.MustCompile(`(?m)^\s*<(VirtualHost|Location)|wordpress|"/static/"`).MatchString(main) {
		t.Errorf("main file holds a site's rules:\n%s", main)
	}
	for _, frag := range []string{
		// The balancer of a site's backend is global, once.
		`<Proxy "balancer://wiki.sockvisor.invalid">`,
		`<Proxy "unix:/run/sockvisor/wp.sock|fcgi://wp.sockvisor.invalid">`,
		// fcgi_proxy_all keeps the old form.
		`ProxyPass "/old/" "unix:/run/sockvisor/legacy.sock|fcgi://legacy.sockvisor.invalid/var/www/old/"`,
		// A global alias excluded before the mount's ProxyPass.
		"ProxyPass \"/u/media\" \"!\"\nProxyPass \"/u/\"",
	} {
		if !strings.Contains(main, frag) {
			t.Errorf("main file lacks %q:\n%s", frag, main)
		}
	}
	if strings.Count(main, `<Proxy "balancer://wiki.sockvisor.invalid">`) != 1 {
		t.Error("site balancer defined more than once")
	}
	// One vhost per address: blog on 80 (redirect) and 443, app on 80 and 8080.
	vh := regexp.MustCompile(`(?m)^<VirtualHost ([^>]+)>\n    ServerName (\S+)`).FindAllStringSubmatch(sites, -1)
	var got []string
	for _, m := range vh {
		got = append(got, m[2]+"@"+m[1])
	}
	if want := "app.example@*:80 app.example@*:8080 blog.example@*:80 blog.example@*:443"; strings.Join(got, " ") != want {
		t.Errorf("vhosts = %v, want %s", got, want)
	}
	for _, frag := range []string{
		"ServerAlias www.blog.example",
		"RewriteRule ^ https://%{SERVER_NAME}%{REQUEST_URI} [R=301,L,NE]",
		"SSLEngine on",
		`DocumentRoot "/usr/share/wordpress"`,
		`FallbackResource "/index.php"`,
		`Alias "/dokuwiki" "/usr/share/dokuwiki"`,
		"DirectoryIndex doku.php",
		"AllowOverride All",
		"CGIPassAuth On",
		`<If "-f %{REQUEST_FILENAME}">`,
		`SetHandler "proxy:balancer://wiki.sockvisor.invalid"`,
		// Django: the static alias excluded inside the vhost, after its mount.
		"<Location \"/\">\n        ProxyPass \"unix:/run/sockvisor/django.sock|http://django.sockvisor.invalid/\" retry=0 timeout=60\n        ProxyPassReverse \"http://django.sockvisor.invalid/\"\n    </Location>\n    <Location \"/static/\">\n        ProxyPass \"!\"\n    </Location>",
		`ProxyPass "unix:/run/sockvisor/asgi.sock|http://asgi.sockvisor.invalid/" retry=0 timeout=60 upgrade=websocket`,
	} {
		if !strings.Contains(sites, frag) {
			t.Errorf("sites file lacks %q", frag)
		}
	}
	// The redirecting vhost holds nothing else.
	blog80 := sites[strings.Index(sites, "<VirtualHost *:80>\n    ServerName blog.example"):]
	blog80 = blog80[:strings.Index(blog80, "</VirtualHost>")]
	if regexp.MustCompile(`(?m)^\s*(SetHandler|DocumentRoot|ProxyPass|Alias)`).MatchString(blog80) {
		t.Errorf("redirecting vhost serves content:\n%s", blog80)
	}
	// Longer mounts' <Location> after shorter ones, so they win.
	if strings.Index(sites, `<Location "/pyasgi/">`) < strings.Index(sites, `<Location "/">`) {
		t.Error("/pyasgi/ Location comes before / and would be overridden")
	}
	// The include file: rules only, no vhost, no TLS.
	if regexp.MustCompile(`(?m)^\s*(<VirtualHost|SSLEngine)`).MatchString(inc) || !strings.Contains(inc, `<Location "/app/">`) {
		t.Errorf("include file:\n%s", inc)
	}
	if got := strings.Join(RequiredModules(cfg), " "); got != "alias authz_core dir env headers lbmethod_byrequests mime proxy proxy_balancer proxy_fcgi proxy_http proxy_uwsgi rewrite slotmem_shm ssl" {
		t.Errorf("RequiredModules = %s", got)
	}
}

func kinds(fs []File) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Kind+":"+f.Site)
	}
	return out
}
