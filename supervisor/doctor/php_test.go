package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// phpSite is a PHP-FPM pool on dir/php.sock serving dir/www, and the
// sockvisor config that names it as backend "blog".
func phpSite(t *testing.T) (dir, www, sock string, cfg *config.Config) {
	t.Helper()
	testutil.NeedBinary(t, "/usr/sbin/php-fpm8.2")
	dir = testutil.ShortDir(t)
	www, sock = dir+"/www", dir+"/php.sock"
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"index.php": `<?php echo "php ok";`,
		"style.css": "body { color: red }\n",
	} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	phpFPM(t, dir, sock)
	cfg = &config.Config{File: "/etc/sockvisor/sockvisor.hcl", SocketDir: dir, Backends: []*config.Backend{
		{Name: "blog", Preset: "php-fpm", Protocol: "fcgi", DocumentRoot: www, Sockets: []config.Socket{{Backend: "blog", Path: sock}}},
	}}
	return dir, www, sock, cfg
}

// fixedPHPSite routes .php to PHP-FPM and serves the rest from Apache.
func fixedPHPSite(www, sock string) string {
	return fmt.Sprintf(`DocumentRoot %s
<FilesMatch "\.php$">
  <If "-f %%{REQUEST_FILENAME}">
    SetHandler "proxy:unix:%s|fcgi://blog.invalid/"
  </If>
</FilesMatch>
`, www, sock)
}

// wantHealthy fails unless the report has no problem and exit code 0.
func wantHealthy(t *testing.T, r *Report) {
	t.Helper()
	if !r.Healthy() || r.ExitCode() != 0 {
		t.Fatalf("fixed setup reported problems: %+v", r.all())
	}
}

// wantProblem returns the only finding with id, checking exit code 1 and
// that it carries evidence and a fix.
func wantProblem(t *testing.T, r *Report, id string) Finding {
	t.Helper()
	if r.ExitCode() != 1 {
		t.Fatalf("exit code %d, want 1", r.ExitCode())
	}
	fs := r.Find(id)
	if len(fs) == 0 {
		t.Fatalf("no %s finding; got %+v", id, r.all())
	}
	f := fs[0]
	if f.Fix == "" || (len(f.Evidence) == 0 && f.LogCount == 0) {
		t.Errorf("%s without evidence or fix: %+v", id, f)
	}
	return f
}

func TestPHPSourceLeak(t *testing.T) {
	_, www, sock, cfg := phpSite(t)
	// Broken: Apache serves the document root, nothing sends .php to FPM.
	in := apachetest.Start(t, "DocumentRoot "+www+"\n")
	if code, body := get(t, in, "/index.php"); code != 200 || !strings.Contains(body, "<?php") {
		t.Fatalf("setup: GET /index.php = %d %q, want the source", code, body)
	}
	r := diagnose(t, in, Options{Sockvisor: cfg})
	f := wantProblem(t, r, IDSourceLeak)
	mustContain(t, "what", f.What, www+"/index.php", "plain text", `"blog"`)
	mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "/index.php", "200", "<?php")
	mustContain(t, "fix", f.Fix, `SetHandler "proxy:unix:`+sock+"|fcgi://")

	// Fixed: the same files through PHP-FPM.
	in2 := apachetest.Start(t, fixedPHPSite(www, sock))
	if code, body := get(t, in2, "/index.php"); code != 200 || body != "php ok" {
		t.Fatalf("fixed: GET /index.php = %d %q", code, body)
	}
	wantHealthy(t, diagnose(t, in2, Options{Sockvisor: cfg}))
}

func TestPHPFPMErrors(t *testing.T) {
	_, www, sock, cfg := phpSite(t)
	cases := []struct {
		name, site, path string
		code             int
		id               string
		what             []string
	}{
		{"primary script unknown", fmt.Sprintf(`ProxyPass "/app/" "unix:%s|fcgi://blog.invalid/srv/nowhere/"`, sock),
			"/app/index.php", 404, IDPHPDocRoot, []string{"/srv/nowhere", "does not exist", "Primary script unknown"}},
		{"limit extensions", fmt.Sprintf(`ProxyPass "/app/" "unix:%s|fcgi://blog.invalid%s/"`, sock, www),
			"/app/style.css", 403, IDPHPLimitExt, []string{"security.limit_extensions", "not .php"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := apachetest.Start(t, c.site+"\n")
			if code, body := get(t, in, c.path); code != c.code {
				t.Fatalf("setup: GET %s = %d %q, want %d\n%s", c.path, code, body, c.code, in.Log())
			}
			r := diagnose(t, in, Options{Sockvisor: cfg})
			f := wantProblem(t, r, c.id)
			mustContain(t, "what", f.What, c.what...)
			if f.LogCount == 0 || !strings.Contains(strings.Join(f.Log, "\n"), "AH01071") {
				t.Errorf("the AH01071 line is not attached: %+v", f)
			}
			if len(r.Find(IDPastError)) > 0 {
				t.Errorf("log lines filed as past errors: %+v", r.Find(IDPastError))
			}
		})
	}
	t.Run("fixed", func(t *testing.T) {
		in := apachetest.Start(t, fixedPHPSite(www, sock))
		for path, want := range map[string]int{"/index.php": 200, "/style.css": 200, "/missing.php": 404} {
			if code, _ := get(t, in, path); code != want {
				t.Fatalf("fixed: GET %s = %d, want %d\n%s", path, code, want, in.Log())
			}
		}
		wantHealthy(t, diagnose(t, in, Options{Sockvisor: cfg}))
	})
}

func TestModPHPNextToFPM(t *testing.T) {
	testutil.NeedBinary(t, "/usr/lib/apache2/modules/libphp8.2.so")
	_, www, sock, cfg := phpSite(t)
	// What `apt-get install wordpress` leaves: prefork and mod_php.
	var mods []string
	for _, m := range apachetest.Modules {
		if m == "mpm_event" {
			m = "mpm_prefork"
		}
		mods = append(mods, m)
	}
	site := "LoadModule php_module /usr/lib/apache2/modules/libphp8.2.so\n" + fixedPHPSite(www, sock)
	in := apachetest.Start(t, site, apachetest.WithModules(mods...))
	r := diagnose(t, in, Options{Sockvisor: cfg})
	f := wantProblem(t, r, IDModPHP)
	mustContain(t, "what", f.What, "mod_php", "mpm_prefork")
	mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "php_module", "mpm_prefork_module")
	mustContain(t, "fix", f.Fix, "a2dismod", "mpm_prefork", "a2enmod mpm_event")

	// Fixed: the event MPM without mod_php (TestPHPSourceLeak's fixed
	// site) is healthy; here the same site with the default modules.
	in2 := apachetest.Start(t, fixedPHPSite(www, sock))
	wantHealthy(t, diagnose(t, in2, Options{Sockvisor: cfg}))
}
