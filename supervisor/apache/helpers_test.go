package apache

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// proc is a backend the test started in its own process group.
type proc struct {
	cmd *exec.Cmd
	log string
}

func (p *proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func startProc(t *testing.T, logPath string, env []string, argv ...string) *proc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	// Pdeathsig: a test binary killed before its cleanups leaves no backend.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	testutil.StartGroup(t, cmd)
	return &proc{cmd: cmd, log: logPath}
}

// The WSGI app every Python backend runs: it names itself and echoes what
// it was asked.
const wsgiApp = `import os
NAME = os.environ.get("APP_NAME", "?")
def application(env, start):
    body = "name=%s path=%s host=%s script=%s scheme=%s\n" % (NAME, env.get("PATH_INFO"), env.get("HTTP_HOST"), env.get("SCRIPT_NAME"), env.get("wsgi.url_scheme"))
    start("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
`

func writeApp(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startGunicorn serves the app as name on a unix socket it binds itself.
func startGunicorn(t *testing.T, dir, sock, name string) {
	t.Helper()
	testutil.NeedBinary(t, "gunicorn")
	writeApp(t, dir)
	p := startProc(t, filepath.Join(dir, name+".log"), nil, "gunicorn",
		"--chdir", dir, "--bind", "unix:"+sock, "--workers", "2", "-e", "APP_NAME="+name, "app:application")
	testutil.WaitSocket(t, sock, 20*time.Second, p.Log)
}

func startUWSGI(t *testing.T, dir, sock, name string) {
	t.Helper()
	testutil.NeedBinary(t, "uwsgi")
	writeApp(t, dir)
	p := startProc(t, filepath.Join(dir, name+".log"), nil, "uwsgi",
		"--plugin", "python3", "--socket", sock, "--chmod-socket=666", "--chdir", dir,
		"--wsgi-file", filepath.Join(dir, "app.py"), "--env", "APP_NAME="+name, "--die-on-term")
	testutil.WaitSocket(t, sock, 20*time.Second, p.Log)
}

// startFPM runs PHP-FPM with one pool per socket and a document root
// holding index.php, which echoes what PHP resolved. It returns the root.
func startFPM(t *testing.T, dir string, socks ...string) string {
	t.Helper()
	fpm, _ := testutil.PHPFPM(t)
	root := filepath.Join(dir, "www")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	php := `<?php echo "SCRIPT_FILENAME=", $_SERVER['SCRIPT_FILENAME'], " PATH_INFO=", $_SERVER['PATH_INFO'] ?? '', " SCRIPT_NAME=", $_SERVER['SCRIPT_NAME'], "\n";`
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte(php), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("[global]\nerror_log = %s/fpm.log\ndaemonize = no\n", dir)
	for i, sock := range socks {
		conf += fmt.Sprintf("[pool%d]\nuser = www-data\ngroup = www-data\nlisten = %s\nlisten.mode = 0666\npm = static\npm.max_children = 2\n", i, sock)
	}
	cf := filepath.Join(dir, "fpm.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, filepath.Join(dir, "fpm.out"), nil, fpm, "-F", "-y", cf)
	for _, sock := range socks {
		testutil.WaitSocket(t, sock, 20*time.Second, p.Log)
	}
	return root
}

// loadHCL parses body as sockvisor.hcl with socket_dir = dir.
func loadHCL(t *testing.T, dir, body string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "sockvisor.hcl")
	src := fmt.Sprintf("socket_dir = %q\n%s", dir, body)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, src)
	}
	return cfg
}

// testApache starts a private Apache that Includes conf-enabled/*.conf
// under dir, as Debian's does, and returns a Layout pointing at it.
//
// Like Debian's, it reads conf-enabled, then sites-enabled; site, if not
// "", is written there as 000-default.conf first.
func testApache(t *testing.T, dir string, opts ...apachetest.Option) (*apachetest.Instance, Layout) {
	return testApacheSite(t, dir, "", opts...)
}

func testApacheSite(t *testing.T, dir, site string, opts ...apachetest.Option) (*apachetest.Instance, Layout) {
	t.Helper()
	testutil.NeedRoot(t)
	for _, d := range []string{"conf-available", "conf-enabled", "sites-available", "sites-enabled"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if site != "" {
		if err := os.WriteFile(filepath.Join(dir, "sites-enabled", "000-default.conf"), []byte(site), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := apachetest.Start(t, fmt.Sprintf("IncludeOptional %s/conf-enabled/*.conf\nIncludeOptional %s/sites-enabled/*.conf\n", dir, dir), opts...)
	l := Layout{
		Flavor:     "debian",
		ConfigFile: filepath.Join(dir, "conf-available", "sockvisor.conf"),
		EnableLink: filepath.Join(dir, "conf-enabled", "sockvisor.conf"),
		SitesFile:  filepath.Join(dir, "sites-available", "sockvisor.conf"),
		SitesLink:  filepath.Join(dir, "sites-enabled", "sockvisor.conf"),
		IncludeDir: filepath.Join(dir, "sockvisor-sites"),
		Apachectl:  in.Command(),
		Unit:       "apache2.service",
		RunUser:    "www-data",
		RunGroup:   "www-data",
	}
	return in, l
}

// countingReloader counts reloads of a real reloader.
type countingReloader struct {
	Reloader
	n atomic.Int32
}

func (c *countingReloader) Reload(ctx context.Context) error {
	c.n.Add(1)
	return c.Reloader.Reload(ctx)
}

func newTestManager(t *testing.T, l Layout) (*Manager, *countingReloader) {
	t.Helper()
	r := &countingReloader{Reloader: &ApachectlReloader{Apachectl: l.Apachectl}}
	m := NewManager(Options{Layout: l, Reloader: r, Logger: testutil.Logger("test", hclog.Debug)})
	t.Cleanup(func() { m.Close() })
	return m, r
}

func mustApply(t *testing.T, m *Manager, cfg *config.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	changed, err := m.Apply(ctx, cfg)
	if err != nil || !changed {
		t.Fatalf("Apply = %v, %v", changed, err)
	}
}

func wantGet(t *testing.T, in *apachetest.Instance, path string, fragments ...string) string {
	t.Helper()
	code, body, err := in.Get(path)
	if err != nil || code != 200 {
		t.Fatalf("GET %s = %d %q %v\n%s", path, code, body, err, in.Log())
	}
	for _, f := range fragments {
		if !strings.Contains(body, f) {
			t.Errorf("GET %s = %q, want %q in it", path, body, f)
		}
	}
	return body
}
