package doctor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// phpSite is a PHP-FPM pool on dir/php.sock serving dir/www, and the
// sockvisor config that names it as backend "blog".
func phpSite(t *testing.T) (dir, www, sock string, cfg *config.Config) {
	t.Helper()
	needApache(t)
	testutil.PHPFPM(t)
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
			// Fixed in place: the old lines stay in the log, from before
			// the reload, and are no longer a problem.
			fixInPlace(t, in, fixedPHPSite(www, sock))
			if code, _ := get(t, in, "/index.php"); code != 200 {
				t.Fatalf("fixed: GET /index.php = %d\n%s", code, in.Log())
			}
			r2 := diagnose(t, in, Options{Sockvisor: cfg})
			wantHealthy(t, r2)
			if len(r2.Find(IDPastError)) == 0 {
				t.Error("the old AH01071 lines are not noted as past errors")
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
	libphp := modPHPFile(t)
	_, www, sock, cfg := phpSite(t)
	// What `apt-get install wordpress` leaves: prefork and mod_php.
	var mods []string
	for _, m := range apachetest.Modules {
		if m == "mpm_event" {
			m = "mpm_prefork"
		}
		mods = append(mods, m)
	}
	site := "LoadModule php_module " + libphp + "\n" + fixedPHPSite(www, sock)
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

// fpmPool starts PHP-FPM on sock with extra [global] lines and returns it.
func fpmPool(t *testing.T, dir, sock, name, global string) *exec.Cmd {
	t.Helper()
	conf := filepath.Join(dir, name+".conf")
	src := fmt.Sprintf(`[global]
pid = %[1]s/%[3]s.pid
error_log = /dev/stderr
daemonize = no
%[4]s
[www]
user = www-data
group = www-data
listen = %[2]s
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = static
pm.max_children = 2
`, dir, sock, name, global)
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	fpm, _ := testutil.PHPFPM(t)
	cmd := startProc(t, dir, fpm, "-F", "-y", conf)
	testutil.WaitSocket(t, sock, 15*time.Second)
	return cmd
}

// restartDuringRequest sends one slow request through Apache, signals the
// pool while it runs, waits for the pool to exit and starts a new one.
func restartDuringRequest(t *testing.T, in *apachetest.Instance, dir, sock string, pool *exec.Cmd, sig syscall.Signal, global string) int {
	t.Helper()
	codes := make(chan int, 1)
	go func() {
		code, _, _ := in.Get("/slow.php")
		codes <- code
	}()
	time.Sleep(500 * time.Millisecond)
	syscall.Kill(pool.Process.Pid, sig)
	code := <-codes
	for i := 0; i < 100; i++ {
		if syscall.Kill(pool.Process.Pid, 0) != nil {
			break
		}
		if _, err := os.Stat(sock); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	fpmPool(t, dir, sock, "fpm2", global)
	return code
}

func TestFastCGIHeaderLostOnRestart(t *testing.T) {
	_, www, sock, cfg := phpSite(t)
	if err := os.WriteFile(filepath.Join(www, "slow.php"), []byte(`<?php sleep(2); echo "slow ok";`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		sig    syscall.Signal
		global string
		broken bool
	}{
		// SIGTERM stops PHP-FPM at once, killing the running request.
		{"immediate stop", syscall.SIGTERM, "", true},
		// SIGQUIT with process_control_timeout lets it finish.
		{"graceful stop", syscall.SIGQUIT, "process_control_timeout = 10s", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := testutil.ShortDir(t)
			s := dir + "/php.sock"
			cfg.Backends[0].Sockets[0].Path = s
			pool := fpmPool(t, dir, s, "fpm1", c.global)
			in := apachetest.Start(t, fixedPHPSite(www, s))
			code := restartDuringRequest(t, in, dir, s, pool, c.sig, c.global)
			r := diagnose(t, in, Options{Sockvisor: cfg})
			if !c.broken {
				if code != 200 {
					t.Fatalf("graceful restart: request answered %d\n%s", code, in.Log())
				}
				wantHealthy(t, r)
				return
			}
			if code != 503 || !strings.Contains(in.Log(), "AH01067") {
				t.Fatalf("setup: request during the stop answered %d, log:\n%s", code, in.Log())
			}
			f := wantProblem(t, r, IDFcgiDropped)
			mustContain(t, "what", f.What, "AH01067", "mid-request")
			mustContain(t, "fix", f.Fix, "process_control_timeout")
			if f.LogCount == 0 {
				t.Errorf("no AH01067 line attached: %+v", f)
			}
		})
	}
	_ = sock
}

// fixInPlace rewrites the instance's site, reloads it gracefully and waits
// for Apache to log that it resumed with the new config.
func fixInPlace(t *testing.T, in *apachetest.Instance, site string) {
	t.Helper()
	before := strings.Count(in.Log(), "AH00489:")
	if err := os.WriteFile(in.Site, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	// Log times have microseconds; make the reload strictly later.
	time.Sleep(10 * time.Millisecond)
	in.Graceful(t)
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(in.Log(), "AH00489:") == before {
		if time.Now().After(deadline) {
			t.Fatalf("Apache did not resume after the reload:\n%s", in.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// needApache needs root and Apache: every test here runs a real one.
// Locally a missing one skips the test, in CI it fails (testutil).
func needApache(t *testing.T) {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, apachetest.Binary)
}

// modPHPFile is the installed PHP-FPM version's mod_php, libphpX.Y.so.
func modPHPFile(t *testing.T) string {
	t.Helper()
	_, v := testutil.PHPFPM(t)
	f := "/usr/lib/apache2/modules/libphp" + v + ".so"
	testutil.NeedBinary(t, f)
	return f
}
