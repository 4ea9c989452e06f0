package doctor

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

const setupInstance = "/usr/share/doc/apache2/examples/setup-instance"

// debianInstance is a second Apache instance made by Debian's
// setup-instance: /etc/apache2-NAME with its own envvars, logs in
// /var/log/apache2-NAME and apache2ctl-NAME.
type debianInstance struct {
	name, root string
	port       int
}

// newDebianInstance runs setup-instance, trims the copied config to this
// test (loopback port, no copied sites or confs, the event MPM and the
// proxy modules, through the instance's own a2enmod-NAME), and removes
// every file setup-instance made in t.Cleanup, after stopping the server.
func newDebianInstance(t *testing.T) *debianInstance {
	t.Helper()
	testutil.NeedRoot(t)
	needApache(t)
	testutil.NeedBinary(t, setupInstance, "/etc/apache2/apache2.conf")
	di := &debianInstance{name: fmt.Sprintf("svj%06d", rand.Intn(1000000))}
	di.root = "/etc/apache2-" + di.name
	if _, err := os.Lstat(di.root); err == nil {
		t.Fatalf("%s exists already", di.root)
	}
	t.Cleanup(di.remove)
	if out, err := exec.Command("sh", setupInstance, di.name).CombinedOutput(); err != nil {
		t.Fatalf("setup-instance: %v\n%s", err, out)
	}
	di.port = apachetest.FreePort(t)
	for _, dir := range []string{"sites-enabled", "conf-enabled"} {
		ents, _ := os.ReadDir(filepath.Join(di.root, dir))
		for _, e := range ents {
			os.Remove(filepath.Join(di.root, dir, e.Name()))
		}
	}
	if err := os.WriteFile(filepath.Join(di.root, "ports.conf"), []byte(fmt.Sprintf("Listen 127.0.0.1:%d\n", di.port)), 0o644); err != nil {
		t.Fatal(err)
	}
	mods, _ := filepath.Glob(filepath.Join(di.root, "mods-enabled", "*"))
	for _, m := range mods {
		base := filepath.Base(m)
		if strings.HasPrefix(base, "php") || strings.HasPrefix(base, "mpm_") {
			os.Remove(m)
		}
	}
	di.run(t, "a2enmod", "-q", "mpm_event", "proxy", "proxy_http")
	return di
}

// run runs one of the instance's own commands (a2enmod-NAME, apache2ctl-NAME).
func (di *debianInstance) run(t *testing.T, cmd string, args ...string) {
	t.Helper()
	c := exec.Command("/usr/local/sbin/"+cmd+"-"+di.name, args...)
	// Never hand the start to systemd: the test owns this server.
	c.Env = append(os.Environ(), "APACHE_STARTED_BY_SYSTEMD=1")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s-%s %s: %v\n%s", cmd, di.name, strings.Join(args, " "), err, out)
	}
}

func (di *debianInstance) pidFile() string {
	return "/var/run/apache2-" + di.name + "/apache2.pid"
}

func (di *debianInstance) pid() int {
	b, _ := os.ReadFile(di.pidFile())
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// start starts the instance and waits for its pid file.
func (di *debianInstance) start(t *testing.T) {
	t.Helper()
	di.run(t, "apache2ctl", "start")
	deadline := time.Now().Add(15 * time.Second)
	for di.pid() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("instance %s did not write %s", di.name, di.pidFile())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// remove stops the server (by its pid, then its group) and deletes every
// file setup-instance and the server made.
func (di *debianInstance) remove() {
	if pid := di.pid(); pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	for _, p := range []string{
		di.root, "/var/log/apache2-" + di.name, "/var/run/apache2-" + di.name, "/var/lock/apache2-" + di.name,
		"/var/cache/apache2-" + di.name,
		"/etc/init.d/apache2-" + di.name, "/etc/logrotate.d/apache2-" + di.name, "/etc/default/apache-htcacheclean-" + di.name,
	} {
		os.RemoveAll(p)
	}
	for _, c := range []string{"a2enmod", "a2dismod", "a2ensite", "a2dissite", "a2enconf", "a2disconf", "apache2ctl"} {
		os.Remove("/usr/local/sbin/" + c + "-" + di.name)
	}
}

func TestSecondDebianInstanceIsTheOneDiagnosed(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	di := newDebianInstance(t)
	dir := testutil.ShortDir(t)
	sock := dir + "/app.sock"
	// sockvisor's config for this instance names its file there.
	conf := filepath.Join(di.root, "conf-available", "sockvisor.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("ProxyPass \"/app/\" \"unix:%s|http://app.invalid/\"\n", sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	di.run(t, "a2enconf", "-q", "sockvisor")
	di.start(t)
	in := &apachetest.Instance{Port: di.port}
	if code, _, err := in.Get("/app/"); err != nil || code != 503 {
		t.Fatalf("GET /app/ = %d %v, want 503 (no backend yet)", code, err)
	}
	cfg := &config.Config{File: dir + "/sv.hcl", SocketDir: dir, ControlSocket: dir + "/ctl",
		Apache:   config.Apache{ConfigFile: conf},
		Backends: []*config.Backend{{Name: "app", Mount: "/app/", Protocol: "http", Sockets: []config.Socket{{Backend: "app", Path: sock}}}}}

	check := func(r *Report) {
		t.Helper()
		a := r.Apache
		if a.ConfigFile != di.root+"/apache2.conf" || a.Instance != di.name || a.PID != di.pid() || a.ServerRoot != di.root {
			t.Errorf("apache = %+v, want instance %s (%s/apache2.conf, pid %d)", a, di.name, di.root, di.pid())
		}
		wantLog := "/var/log/apache2-" + di.name + "/error.log"
		if !slices.Contains(a.ErrorLogs, wantLog) {
			t.Errorf("error logs %v lack %s", a.ErrorLogs, wantLog)
		}
		for _, l := range a.ErrorLogs {
			if strings.HasPrefix(l, "/var/log/apache2/") {
				t.Errorf("reads the default instance's log %s", l)
			}
		}
		for _, f := range append([]string{a.ConfigFile}, func() []string {
			var s []string
			for _, tg := range r.Targets {
				s = append(s, tg.Pos)
			}
			return s
		}()...) {
			if strings.HasPrefix(f, "/etc/apache2/") {
				t.Errorf("labels a file of the default instance: %s", f)
			}
		}
	}
	r := runDoctor(t, Options{Sockvisor: cfg})
	check(r)
	// The daemon's layout comes from the same Discover: it drives this
	// instance, not the default one.
	l, err := apache.DetectLayout(cfg)
	if err != nil || l.ConfigFile != conf || l.Unit != "apache2@"+di.name+".service" {
		t.Fatalf("daemon layout = %+v, %v; want %s and apache2@%s.service", l, err, conf, di.name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if rc, err := apacheconf.RunConfig(ctx, l.Apachectl); err != nil || rc.ServerRoot != di.root || rc.PidFile != di.pidFile() {
		t.Errorf("the daemon's apachectl %v addresses %+v, %v; want %s with pid file %s", l.Apachectl, rc, err, di.root, di.pidFile())
	}
	f := wantProblem(t, r, IDSocketMissing)
	if f.LogCount == 0 || !strings.Contains(strings.Join(f.Log, "\n"), "AH02454") {
		t.Errorf("the instance's own log line is not attached: %+v", f)
	}
	if tg := r.Targets; len(tg) != 1 || tg[0].Pos != di.root+"/conf-enabled/sockvisor.conf:1" {
		t.Errorf("targets %+v, want the one in %s/conf-enabled/sockvisor.conf", tg, di.root)
	}
	for _, o := range r.Apache.Others {
		if o.PID == di.pid() {
			t.Errorf("the diagnosed instance is also listed as another one: %+v", o)
		}
	}

	// Fixed: the backend listens.
	gunicorn(t, dir, sock)
	if code, _, err := in.Get("/app/"); err != nil || code != 200 {
		t.Fatalf("fixed: GET /app/ = %d %v", code, err)
	}
	r2 := runDoctor(t, Options{Sockvisor: cfg})
	check(r2)
	wantHealthy(t, r2)
	// The unit alone names the instance too.
	cfg.Apache = config.Apache{Unit: "apache2@" + di.name + ".service"}
	r3 := runDoctor(t, Options{Sockvisor: cfg})
	check(r3)
	wantHealthy(t, r3)
}

// runDoctor runs the doctor with opts as given (the instance is found, not
// passed) and logs its report.
func runDoctor(t *testing.T, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts.Log = testutil.Logger("", hclog.Debug)
	r, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("doctor could not run: %v", err)
	}
	var b strings.Builder
	r.WriteText(&b)
	fmt.Fprintf(os.Stderr, "--- %s report:\n%s", t.Name(), b.String())
	return r
}

// stop stops the instance with its own apache2ctl-NAME and waits for the
// main process to go.
func (di *debianInstance) stop(t *testing.T) {
	t.Helper()
	pid := di.pid()
	di.run(t, "apache2ctl", "stop")
	for i := 0; i < 150 && pid > 0 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	os.Remove(di.pidFile())
}

// What `apt-get install wordpress` leaves in an instance next to a PHP-FPM
// backend: mod_php and mpm_prefork enabled by a2enmod.
func TestModPHPEnabledInDebianInstance(t *testing.T) {
	modPHPFile(t)
	_, v := testutil.PHPFPM(t)
	php := "php" + v // the module's name for a2enmod
	testutil.NeedBinary(t, "/etc/apache2/mods-available/"+php+".load")
	di := newDebianInstance(t)
	_, www, sock, cfg := phpSite(t)
	conf := filepath.Join(di.root, "conf-available", "sockvisor.conf")
	site := strings.Replace(fixedPHPSite(www, sock), "DocumentRoot "+www+"\n", "DocumentRoot "+www+"\n<Directory "+www+">\n  Require all granted\n</Directory>\n", 1)
	if err := os.WriteFile(conf, []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	di.run(t, "a2enconf", "-q", "sockvisor")
	di.run(t, "a2dismod", "-q", "mpm_event")
	di.run(t, "a2enmod", "-q", "mpm_prefork", php, "proxy_fcgi")
	di.start(t)
	cfg.Apache = config.Apache{ConfigFile: conf}
	r := runDoctor(t, Options{Sockvisor: cfg})
	if r.Apache.Instance != di.name {
		t.Fatalf("diagnosed %+v, want instance %s", r.Apache, di.name)
	}
	f := wantProblem(t, r, IDModPHP)
	if n := len(r.all()); n != 1 {
		t.Errorf("%d findings, want only mod-php-loaded: %+v", n, r.all())
	}
	mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "php_module", di.root+"/mods-enabled/"+php+".load", "mpm_prefork_module")
	mustContain(t, "fix", f.Fix, "a2dismod-"+di.name+" "+php+" mpm_prefork", "a2enmod-"+di.name+" mpm_event", "systemctl restart apache2@"+di.name)

	// Fixed as the doctor says (a restart: modules need one).
	di.stop(t)
	di.run(t, "a2dismod", "-q", php, "mpm_prefork")
	di.run(t, "a2enmod", "-q", "mpm_event")
	di.start(t)
	in := &apachetest.Instance{Port: di.port}
	if code, body, err := in.Get("/index.php"); err != nil || code != 200 || body != "php ok" {
		t.Fatalf("fixed: GET /index.php = %d %q %v", code, body, err)
	}
	wantHealthy(t, runDoctor(t, Options{Sockvisor: cfg}))
}
