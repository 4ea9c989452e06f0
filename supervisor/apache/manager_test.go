package apache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// TestConfigTestEveryScheme runs Apache's configtest on the golden config,
// which has every scheme, balancers of each and WebSocket.
func TestConfigTestEveryScheme(t *testing.T) {
	in := apachetest.Start(t, "")
	if err := os.WriteFile(in.Site, Render(loadConfig(t, "testdata/all-schemes.hcl")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := in.ConfigTest(); err != nil {
		t.Fatalf("configtest: %v\n%s", err, out)
	}
}

// TestThreeBackends is the done-when: Gunicorn at /, PHP-FPM at
// /php/ and uWSGI at /u/, all through one real Apache running only
// sockvisor's generated config.
func TestThreeBackends(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startGunicorn(t, dir, dir+"/app.sock", "app")
	root := startFPM(t, dir, dir+"/php.sock", dir+"/pool.sock", dir+"/pool-1.sock")
	startUWSGI(t, dir, dir+"/u.sock", "u")
	// One document root per backend: Apache's <Directory> hands a tree's
	// .php files to one PHP-FPM only.
	poolRoot := filepath.Join(dir, "pool-www")
	if err := os.CopyFS(poolRoot, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	cfg := loadHCL(t, dir, fmt.Sprintf(`
backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
}
backend "php" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/php/"
  document_root = %q
}
backend "u" {
  preset  = "uwsgi"
  command = ["/bin/true"]
  mount   = "/u/"
}
backend "pool" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/pool"
  instances     = 2
  document_root = %q
}
`, root, poolRoot))
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)

	host := fmt.Sprintf("host=127.0.0.1:%d", in.Port)
	wantGet(t, in, "/", "name=app path=/ ", host) // ProxyPreserveHost On by default
	wantGet(t, in, "/some/where", "name=app path=/some/where ")
	wantGet(t, in, "/php/index.php", "SCRIPT_FILENAME="+root+"/index.php ", "PATH_INFO= ", "SCRIPT_NAME=/php/index.php")
	wantGet(t, in, "/php/index.php/extra/bit?q=1", "SCRIPT_FILENAME="+root+"/index.php ", "PATH_INFO=/extra/bit ")
	wantGet(t, in, "/u/x/y", "name=u path=/x/y ", "script=/u ")
	// PHP-FPM behind a balancer: SCRIPT_FILENAME must not carry the
	// balancer's name.
	for i := 0; i < 4; i++ {
		wantGet(t, in, "/pool/index.php/p", "SCRIPT_FILENAME="+poolRoot+"/index.php ", "PATH_INFO=/p ", "SCRIPT_NAME=/pool/index.php")
	}
	// The PHP source never leaks, whatever the path.
	if _, body, _ := in.Get("/php/index.php"); strings.Contains(body, "<?php") {
		t.Error("PHP source served")
	}

	// The enable link is relative, like a2enconf's.
	if target, err := os.Readlink(l.EnableLink); err != nil || target != "../conf-available/sockvisor.conf" {
		t.Errorf("enable link -> %q, %v", target, err)
	}
}

// TestBackendsDoNotShareWorkers is the regression test for the worker
// sharing trap: with one host for every socket, all of these requests would
// reach the first socket. It also shows preserve_host is per backend.
func TestBackendsDoNotShareWorkers(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	for _, n := range []string{"a", "b", "c"} {
		startGunicorn(t, dir, dir+"/"+n+".sock", n)
	}
	cfg := loadHCL(t, dir, `
backend "a" {
  preset  = "gunicorn"
  command = ["/bin/true"]
}
backend "b" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  mount   = "/b/"
  proxy {
    preserve_host = false
  }
}
backend "c" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  mount   = "/b/c"
}
`)
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	host := fmt.Sprintf("host=127.0.0.1:%d", in.Port)
	wantGet(t, in, "/x", "name=a path=/x ", host)
	wantGet(t, in, "/b/x", "name=b path=/x ", "host=b.sockvisor.invalid", "script=/b ")
	wantGet(t, in, "/b/c/x", "name=c path=/x ", host)
	// Gunicorn gets the mount as SCRIPT_NAME; the mount itself is the
	// app's root, an empty PATH_INFO (PEP 3333).
	wantGet(t, in, "/b/c", "name=c path= ")
	wantGet(t, in, "/b/cx", "name=b path=/cx ")
	wantGet(t, in, "/bx", "name=a path=/bx ")
}

func TestBalancerSpreads(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startGunicorn(t, dir, dir+"/pool.sock", "pool0")
	startGunicorn(t, dir, dir+"/pool-1.sock", "pool1")
	cfg := loadHCL(t, dir, `
backend "pool" {
  preset    = "gunicorn"
  command   = ["/bin/true"]
  mount     = "/p/"
  instances = 2
}
`)
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	count := map[string]int{}
	for i := 0; i < 40; i++ {
		body := wantGet(t, in, "/p/x", "path=/x ")
		name, _, _ := strings.Cut(strings.TrimPrefix(body, "name="), " ")
		count[name]++
	}
	fmt.Fprintf(os.Stderr, "balancer spread over 40 requests: %v\n", count)
	if count["pool0"] < 10 || count["pool1"] < 10 {
		t.Errorf("requests per instance = %v, want both instances used", count)
	}
}

// TestWebsocket proves websocket = true makes Apache pass the upgrade: the
// backend is a minimal Go server on a unix socket that answers 101 and
// echoes.
func TestWebsocket(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	for _, n := range []string{"ws", "plain"} {
		ln, err := net.Listen("unix", dir+"/"+n+".sock")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir+"/"+n+".sock", 0o666)
		srv := &http.Server{Handler: http.HandlerFunc(echoUpgrade)}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	cfg := loadHCL(t, dir, `
backend "ws" {
  command   = ["/bin/true"]
  mount     = "/ws/"
  websocket = true
}
backend "plain" {
  command = ["/bin/true"]
  mount   = "/plain/"
}
`)
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	if got := upgrade(t, in.Port, "/ws/chat"); got != "101 echo:hello" {
		t.Errorf("upgrade through websocket = true: %q\n%s", got, in.Log())
	}
	if got := upgrade(t, in.Port, "/plain/chat"); strings.HasPrefix(got, "101") {
		t.Errorf("upgrade passed without websocket = true: %q", got)
	}
}

func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "no upgrade", http.StatusUpgradeRequired)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	rw.Flush()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := rw.ReadString('\n')
	rw.WriteString("echo:" + line)
	rw.Flush()
}

// upgrade asks Apache for a WebSocket upgrade and returns the status code
// and, after a 101, the echo of "hello".
func upgrade(t *testing.T, port int, path string) string {
	t.Helper()
	return upgradeHost(t, port, "localhost", path)
}

// upgradeHost is upgrade with a Host header of its own.
func upgradeHost(t *testing.T, port int, host, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	f := strings.Fields(status)
	if len(f) < 2 {
		return status
	}
	if f[1] != "101" {
		return f[1]
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	fmt.Fprintf(c, "hello\n")
	echo, _ := br.ReadString('\n')
	return "101 " + strings.TrimSpace(echo)
}

// TestApplyUnchanged: the same config again writes nothing and reloads
// nothing; a missing enable link is put back.
func TestApplyUnchanged(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startGunicorn(t, dir, dir+"/app.sock", "app")
	cfg := loadHCL(t, dir, `
backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
}
`)
	m, r := newTestManager(t, l)
	mustApply(t, m, cfg)
	st1, _ := os.Stat(l.ConfigFile)
	changed, err := m.Apply(context.Background(), cfg)
	if err != nil || changed {
		t.Fatalf("second Apply = %v, %v; want false, nil", changed, err)
	}
	st2, _ := os.Stat(l.ConfigFile)
	if !os.SameFile(st1, st2) || !st1.ModTime().Equal(st2.ModTime()) {
		t.Error("unchanged Apply rewrote the file")
	}
	if n := r.n.Load(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}

	os.Remove(l.EnableLink)
	mustApply(t, m, cfg)
	if _, err := os.Lstat(l.EnableLink); err != nil {
		t.Errorf("link not restored: %v", err)
	}
	if n := r.n.Load(); n != 2 {
		t.Errorf("%d reloads, want 2", n)
	}
	wantGet(t, in, "/x", "name=app")
}

// TestMissingModule: a module the config needs is not loaded, so Apply
// names the a2enmod command and writes nothing.
func TestMissingModule(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, apachetest.Binary)
	dir := testutil.ShortDir(t)
	// An Apache config that is never started: only -M runs against it.
	var conf strings.Builder
	for _, mod := range apachetest.Modules {
		if mod != "proxy_uwsgi" {
			fmt.Fprintf(&conf, "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", mod, mod)
		}
	}
	fmt.Fprintf(&conf, "ServerName localhost\nListen 127.0.0.1:%d\nPidFile %s/pid\nDefaultRuntimeDir %s\nErrorLog %s/error.log\n",
		apachetest.FreePort(t), dir, dir, dir)
	if err := os.WriteFile(dir+"/apache2.conf", []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir+"/conf-available", 0o755)
	os.Mkdir(dir+"/conf-enabled", 0o755)
	l := Layout{
		Flavor:     "debian",
		ConfigFile: dir + "/conf-available/sockvisor.conf",
		EnableLink: dir + "/conf-enabled/sockvisor.conf",
		Apachectl:  []string{apachetest.Binary, "-d", dir, "-f", dir + "/apache2.conf"},
	}
	cfg := loadHCL(t, dir, `
backend "u" {
  preset  = "uwsgi"
  command = ["/bin/true"]
  mount   = "/u/"
}
`)
	m, r := newTestManager(t, l)
	_, err := m.Apply(context.Background(), cfg)
	if !errors.Is(err, ErrModuleMissing) {
		t.Fatalf("Apply = %v, want ErrModuleMissing", err)
	}
	fmt.Fprintf(os.Stderr, "missing module error: %v\n", err)
	if !strings.Contains(err.Error(), `"a2enmod proxy_uwsgi"`) {
		t.Errorf("error does not name the command: %v", err)
	}
	for _, p := range []string{l.ConfigFile, l.EnableLink} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed Apply", p)
		}
	}
	if r.n.Load() != 0 {
		t.Error("reloaded after a failed Apply")
	}
}

// TestBrokenConfigRolledBack: a config Apache rejects (a socket path over
// Apache's 95 bytes, which validation would normally stop) never reaches the
// running Apache, the previous file comes back, and Apache keeps serving.
func TestBrokenConfigRolledBack(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startGunicorn(t, dir, dir+"/app.sock", "app")
	good := loadHCL(t, dir, `
backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
}
`)
	bad := loadHCL(t, dir, `
backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
}
`)
	bad.Backends[0].Sockets[0].Path = "/run/" + strings.Repeat("x", 100) + ".sock"

	// First apply ever, and broken: nothing may stay behind.
	m, r := newTestManager(t, l)
	_, err := m.Apply(context.Background(), bad)
	if !errors.Is(err, ErrConfigTest) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("Apply(bad) = %v, want ErrConfigTest with Apache's message", err)
	}
	fmt.Fprintf(os.Stderr, "configtest error: %v\n", err)
	for _, p := range []string{l.ConfigFile, l.EnableLink} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind by a failed first Apply", p)
		}
	}

	mustApply(t, m, good)
	want, _ := os.ReadFile(l.ConfigFile)
	pid := in.PID()
	if _, err := m.Apply(context.Background(), bad); !errors.Is(err, ErrConfigTest) {
		t.Fatalf("Apply(bad) = %v, want ErrConfigTest", err)
	}
	if got, _ := os.ReadFile(l.ConfigFile); string(got) != string(want) {
		t.Errorf("config file not restored:\n%s", got)
	}
	if _, err := os.Lstat(l.EnableLink); err != nil {
		t.Errorf("enable link gone: %v", err)
	}
	if r.n.Load() != 1 {
		t.Errorf("%d reloads, want 1 (the good config only)", r.n.Load())
	}
	if !in.Alive() || in.PID() != pid {
		t.Fatal("Apache restarted or died")
	}
	wantGet(t, in, "/x", "name=app")
	if entries, _ := os.ReadDir(filepath.Dir(l.ConfigFile)); len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

// TestReloadThatKillsApache: a config that passes configtest but kills
// Apache's parent on graceful (an ErrorLog it cannot open) is caught by the
// post-reload check, the previous file is restored and Apache started again.
func TestReloadThatKillsApache(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startGunicorn(t, dir, dir+"/app.sock", "app")
	cfg := loadHCL(t, dir, `
backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
}
`)
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	want, _ := os.ReadFile(l.ConfigFile)
	// Apache started again by the Manager is a daemon, not the test's child.
	t.Cleanup(func() { stopDaemon(t, in.Dir+"/apache2.pid", in.PID()) })

	// Fault injection: an ErrorLog that is a directory passes -t.
	m.render = func(c *config.Config) []File {
		fs := RenderFiles(c)
		fs[0].Data = append(fs[0].Data, fmt.Sprintf("ErrorLog %s\n", dir)...)
		return fs
	}
	start := time.Now()
	changed, err := m.Apply(context.Background(), cfg)
	fmt.Fprintf(os.Stderr, "fatal reload detected and recovered in %s: %v\n", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, ErrApacheDied) || changed {
		t.Fatalf("Apply = %v, %v; want ErrApacheDied", changed, err)
	}
	if !strings.Contains(err.Error(), "started Apache again") {
		t.Errorf("error does not say Apache was started again: %v", err)
	}
	if got, _ := os.ReadFile(l.ConfigFile); string(got) != string(want) {
		t.Errorf("config not restored:\n%s", got)
	}
	if in.Alive() {
		t.Error("the original Apache survived; the test did not kill it")
	}
	wantGet(t, in, "/x", "name=app")
}

// stopDaemon stops an Apache this test caused to start, by its PidFile.
func stopDaemon(t *testing.T, pidFile string, original int) {
	pid, err := readPid(pidFile)
	if err != nil || pid == original || !alive(pid) {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// TestReloadsUnderLoad: 20 applies, each a graceful reload, while four
// clients keep requesting through Apache; no request may fail.
func TestReloadsUnderLoad(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startGunicorn(t, dir, dir+"/app.sock", "app")
	cfgs := []*config.Config{}
	for _, timeout := range []string{"60s", "61s"} {
		cfgs = append(cfgs, loadHCL(t, dir, fmt.Sprintf(`
backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  proxy {
    timeout = %q
  }
}
`, timeout)))
	}
	m, r := newTestManager(t, l)
	mustApply(t, m, cfgs[0])
	pid := in.PID()

	var total, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				resp, err := c.Get(in.URL("/load"))
				if err == nil {
					b := make([]byte, 512)
					k, _ := resp.Body.Read(b)
					resp.Body.Close()
					if resp.StatusCode != 200 || !strings.Contains(string(b[:k]), "name=app") {
						err = fmt.Errorf("status %d: %q", resp.StatusCode, b[:k])
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	start := time.Now()
	for i := 1; i <= 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		changed, err := m.Apply(ctx, cfgs[i%2])
		cancel()
		if err != nil || !changed {
			close(stop)
			wg.Wait()
			t.Fatalf("reload %d: %v, %v", i, changed, err)
		}
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	fmt.Fprintf(os.Stderr, "20 reloads in %s under load: %d requests, %d failed\n", elapsed.Round(time.Millisecond), total.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed; first: %v", failed.Load(), total.Load(), firstErr.Load())
	}
	if r.n.Load() != 21 {
		t.Errorf("%d reloads, want 21", r.n.Load())
	}
	if !in.Alive() || in.PID() != pid {
		t.Error("Apache's main process changed")
	}
	if total.Load() < 100 {
		t.Errorf("only %d requests: the load did not run", total.Load())
	}
}

// TestApplyRefusesNonRegular: sockvisor never replaces a symlink or other
// non-regular file at its config path.
func TestApplyRefusesNonRegular(t *testing.T) {
	dir := testutil.ShortDir(t)
	l := Layout{ConfigFile: dir + "/sockvisor.conf", Apachectl: []string{"/bin/false"}}
	target := dir + "/elsewhere.conf"
	os.WriteFile(target, []byte("keep"), 0o644)
	os.Symlink(target, l.ConfigFile)
	m := NewManager(Options{Layout: l, Logger: testutil.Logger("test", hclog.Debug)})
	defer m.Close()
	cfg := &config.Config{}
	if _, err := m.Apply(context.Background(), cfg); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Apply over a symlink = %v, want ErrNotRegular", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Error("symlink target changed")
	}

	l = Layout{ConfigFile: dir + "/conf-available/sv.conf", EnableLink: dir + "/conf-enabled/sv.conf", Apachectl: []string{"/bin/false"}}
	os.MkdirAll(dir+"/conf-available", 0o755)
	os.MkdirAll(dir+"/conf-enabled", 0o755)
	os.WriteFile(l.EnableLink, []byte("someone else's"), 0o644)
	m2 := NewManager(Options{Layout: l, Logger: testutil.Logger("test", hclog.Debug)})
	defer m2.Close()
	if _, err := m2.Apply(context.Background(), cfg); !errors.Is(err, ErrLinkConflict) {
		t.Fatalf("Apply with a foreign file at the link = %v, want ErrLinkConflict", err)
	}
	if b, _ := os.ReadFile(l.EnableLink); string(b) != "someone else's" {
		t.Error("foreign file at the link path changed")
	}
}

func TestReadPid(t *testing.T) {
	dir := testutil.ShortDir(t)
	os.WriteFile(dir+"/p", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if pid, err := readPid(dir + "/p"); err != nil || pid != os.Getpid() || !alive(pid) {
		t.Errorf("readPid = %d, %v", pid, err)
	}
	if alive(0) || alive(1<<22+1) {
		t.Error("alive for a pid that cannot exist")
	}
}

// A file sockvisor did not write is never replaced.
func TestApplyRefusesForeignFile(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "ssl.conf")
	os.WriteFile(path, []byte("SSLEngine on\n"), 0o644)
	m := NewManager(Options{Layout: Layout{Flavor: "rhel", ConfigFile: path}})
	defer m.Close()
	m.modules = func(context.Context) (map[string]bool, error) { return map[string]bool{}, nil }
	cfg, err := config.Parse([]byte("apache {\n  reload = \"none\"\n}\n"), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(context.Background(), cfg); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("Apply over a foreign file = %v, want ErrNotOurs", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "SSLEngine on\n" {
		t.Fatalf("foreign file changed to %q", b)
	}
}
