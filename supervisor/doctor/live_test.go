package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

// sockvisor is a real daemon, in process, in front of a private Apache
// that Includes the file it renders.
type sockvisor struct {
	t       *testing.T
	dir     string
	cfgPath string
	logFile string
	in      *apachetest.Instance
	d       *daemon.Daemon
	client  *control.Client
	cancel  context.CancelFunc
	done    chan error
}

// startSockvisor starts Apache with extraSite after the Include (may be
// ""), writes the sockvisor config (global settings, then backends) and
// runs the daemon until it is running. prepare runs between Apache's start
// and the daemon's, to break Apache under it.
func startSockvisor(t *testing.T, dir, global, backends string, prepare func(in *apachetest.Instance)) *sockvisor {
	t.Helper()
	testutil.NeedRoot(t)
	conf := filepath.Join(dir, "sockvisor.conf")
	sv := &sockvisor{t: t, dir: dir, cfgPath: filepath.Join(dir, "sv.hcl"), logFile: filepath.Join(dir, "sockvisor.log")}
	sv.in = apachetest.Start(t, "IncludeOptional "+conf+"\n")
	if prepare != nil {
		prepare(sv.in)
	}
	sv.write(global, backends)
	f, err := os.Create(sv.logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	log := hclog.New(&hclog.LoggerOptions{Name: "sockvisor", Level: hclog.Info, Output: io.MultiWriter(f, os.Stderr)})
	d, err := daemon.New(daemon.Options{
		ConfigPath: sv.cfgPath, Log: log, Executable: os.Args[0], StateDir: filepath.Join(dir, "state"),
		Apache: func(cfg *config.Config, log hclog.Logger) (*apache.Manager, error) {
			l := apache.Layout{Flavor: "debian", ConfigFile: conf, Apachectl: sv.in.Command(), RunUser: "www-data", RunGroup: "www-data"}
			return apache.NewManager(apache.Options{Layout: l, Reloader: &apache.ApachectlReloader{Apachectl: sv.in.Command()}, Logger: log}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sv.d = d
	ctx, cancel := context.WithCancel(context.Background())
	sv.cancel, sv.done = cancel, make(chan error, 1)
	go func() { sv.done <- d.Run(ctx) }()
	t.Cleanup(sv.stop)
	sv.client = control.NewClient(filepath.Join(dir, "ctl"))
	for st := sv.status(); st.Phase != "running"; st = sv.status() {
		time.Sleep(100 * time.Millisecond)
	}
	return sv
}

func (sv *sockvisor) write(global, backends string) {
	sv.t.Helper()
	src := fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\n%s\n%s", filepath.Join(sv.dir, "s"), filepath.Join(sv.dir, "ctl"), global, backends)
	if err := os.WriteFile(sv.cfgPath, []byte(src), 0o644); err != nil {
		sv.t.Fatal(err)
	}
}

func (sv *sockvisor) stop() {
	if sv.cancel == nil {
		return
	}
	sv.cancel()
	select {
	case err := <-sv.done:
		if err != nil {
			sv.t.Errorf("daemon Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		sv.t.Error("daemon did not stop in 60 s")
	}
	sv.cancel = nil
}

func (sv *sockvisor) status() *daemon.StatusReport {
	sv.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		raw, err := sv.client.Status(context.Background())
		if err == nil {
			var st daemon.StatusReport
			if err := json.Unmarshal(raw, &st); err != nil {
				sv.t.Fatal(err)
			}
			return &st
		}
		if time.Now().After(deadline) {
			sv.t.Fatalf("daemon not answering: %v", err)
		}
		select {
		case err := <-sv.done:
			sv.t.Fatalf("daemon exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitBackend polls status until ok(backend) holds, bounded.
func (sv *sockvisor) waitBackend(name string, ok func(daemon.BackendReport) bool) daemon.BackendReport {
	sv.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, b := range sv.status().Backends {
			if b.Name == name && ok(b) {
				return b
			}
		}
		if time.Now().After(deadline) {
			sv.t.Fatalf("backend %s never reached the wanted state: %+v", name, sv.status())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// diagnose runs the doctor with the daemon's config, control socket and log.
func (sv *sockvisor) diagnose() *Report {
	sv.t.Helper()
	cfg, err := config.Load(sv.cfgPath)
	if err != nil {
		sv.t.Fatal(err)
	}
	return diagnose(sv.t, sv.in, Options{Sockvisor: cfg, SockvisorLogs: []string{sv.logFile}})
}

func gunicornBackend(name, mount, extra string) string {
	apps, _ := filepath.Abs("../../packaging/examples/apps")
	return fmt.Sprintf(`
backend %q {
  preset  = "gunicorn"
  command = ["/usr/bin/gunicorn", "--workers", "1", "--chdir", %q, "hello:app"]
  mount   = %q
  user    = "www-data"
  stop_timeout = "5s"
  %s
}
`, name, apps, mount, extra)
}

// stuckBackend is gunicorn with one worker and a short listen queue.
var stuckBackend = strings.Replace(gunicornBackend("stuck", "/stuck/", ""), `"--workers", "1",`, `"--workers", "1", "--backlog", "16",`, 1)

// crashing is a backend whose process exits at once, every time.
const crashing = `
backend "down" {
  command = ["/bin/sh", "-c", "echo 'cannot open database' >&2; exit 3"]
  mount   = "/down/"
  user    = "www-data"
  ready { timeout = "2s" }
  restart {
    min_delay = "50ms"
    max_delay = "200ms"
  }
  proxy { timeout = "2s" }
}
`

// holdConns opens n connections to sock that nobody accepts, as blocked
// Apache threads do, until EAGAIN when full is set; cleanup closes them.
func holdConns(t *testing.T, sock string, n int, full bool) int {
	t.Helper()
	held := 0
	for i := 0; i < n; i++ {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(c) })
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: sock}); err != nil {
			if full && err == unix.EAGAIN {
				return held
			}
			t.Fatalf("connect %s: %v", sock, err)
		}
		held++
	}
	return held
}

func TestLiveStateFailedAndStuckBackends(t *testing.T) {
	needApache(t)
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	dir := testutil.ShortDir(t)
	sv := startSockvisor(t, dir, "backlog = 64", gunicornBackend("web", "/web/", "")+crashing+stuckBackend, nil)
	if code, body, err := sv.in.Get("/web/"); err != nil || code != 200 {
		t.Fatalf("GET /web/ = %d %q %v", code, body, err)
	}
	sv.waitBackend("down", func(b daemon.BackendReport) bool { return b.State == "failed" })
	// Seven clients wait on the failed backend's socket; one request goes
	// through Apache and times out, as users see it.
	downSock := filepath.Join(dir, "s", "down.sock")
	holdConns(t, downSock, 7, false)
	if code, _, err := sv.in.Get("/down/"); err != nil || code < 500 {
		t.Fatalf("GET /down/ = %d %v, want a 5xx", code, err)
	}
	// The stuck backend: its only worker is busy, the queue fills up.
	stuckSock := filepath.Join(dir, "s", "stuck.sock")
	holdConns(t, stuckSock, 200, true)

	r := sv.diagnose()
	f := wantProblem(t, r, IDBackendDown)
	mustContain(t, "what", f.What, `"down"`, "failed", downSock, "queued")
	ev := strings.Join(f.Evidence, "\n")
	mustContain(t, "evidence", ev, "state failed", "last exit:", "code 3", "connection(s) queued, backlog 64")
	mustContain(t, "fix", f.Fix, "sockvisor restart down")
	if f.LogCount == 0 || !strings.Contains(strings.Join(f.Log, "\n"), "AH01102") {
		t.Errorf("Apache's timeout lines are not attached to the failed backend: %+v", f)
	}
	for _, p := range r.Find(IDPastError) {
		if strings.Contains(strings.Join(p.Log, "\n"), "down.sockvisor") {
			t.Errorf("the failed backend's log lines were filed as past errors: %+v", p)
		}
	}
	// The stuck one is the maximum-backlog row, with sockvisor's view.
	s := wantProblem(t, r, IDBacklogFull)
	mustContain(t, "what", s.What, "listen queue is full", `backend "stuck" ready`)
	mustContain(t, "evidence", strings.Join(s.Evidence, "\n"), `backend "stuck" instance 0 state ready`)
	mustContain(t, "fix", s.Fix, "sockvisor restart stuck")
	mustContain(t, "evidence", ev, "its output: cannot open database")
	for _, tg := range r.Targets {
		if tg.Backend == "down" && tg.has(IDBacklogHigh, IDProtocolUnknown) {
			t.Errorf("notes the failed backend explains are still there: %+v", tg.Findings)
		}
	}
	for _, tg := range r.Targets {
		if tg.Backend == "web" && tg.Verdict != "ok" {
			t.Errorf("the healthy backend got findings: %+v", tg.Findings)
		}
	}

	// Fixed: the crashing command replaced, the stuck queue drained.
	sv2 := startSockvisor(t, testutil.ShortDir(t), "backlog = 64", gunicornBackend("web", "/web/", "")+gunicornBackend("down", "/down/", ""), nil)
	if code, _, err := sv2.in.Get("/down/"); err != nil || code != 200 {
		t.Fatalf("fixed: GET /down/ = %d %v", code, err)
	}
	r2 := sv2.diagnose()
	wantHealthy(t, r2)
	if r2.Sockvisor == nil || r2.Sockvisor.Status == nil || len(r2.Sockvisor.Status.Backends) != 2 {
		t.Errorf("the report lacks the daemon's status: %+v", r2.Sockvisor)
	}
}

func TestFailedApacheApplyIsReported(t *testing.T) {
	needApache(t)
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	dir := testutil.ShortDir(t)
	broken := func(in *apachetest.Instance) {
		// A hand-written line Apache rejects: every configtest fails, so
		// sockvisor's apply is rolled back.
		f, err := os.OpenFile(in.Site, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, "ProxyTimeout soon")
		f.Close()
	}
	sv := startSockvisor(t, dir, "", gunicornBackend("web", "/web/", ""), broken)
	st := sv.status()
	a := st.LastApacheApply
	if a == nil || a.OK || a.Step != "configtest" || !strings.Contains(a.Error, "Proxy Timeout") {
		t.Fatalf("status last_apache_apply = %+v, want a failed configtest", a)
	}
	r := sv.diagnose()
	f := wantProblem(t, r, IDApacheApply)
	mustContain(t, "what", f.What, "configtest", "previous config")
	mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "Syntax error", "Proxy Timeout")
	mustContain(t, "fix", f.Fix, "sockvisor reload")
	n := wantProblem(t, r, IDNotInApache)
	mustContain(t, "fix", n.Fix, IDApacheApply, "sockvisor reload")

	// Fixed: the bad line removed and `sockvisor reload`.
	if err := os.WriteFile(sv.in.Site, []byte("IncludeOptional "+filepath.Join(dir, "sockvisor.conf")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sv.client.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if a := sv.status().LastApacheApply; a == nil || !a.OK {
		t.Fatalf("after the fix, last_apache_apply = %+v", a)
	}
	if code, _, err := sv.in.Get("/web/"); err != nil || code != 200 {
		t.Fatalf("fixed: GET /web/ = %d %v", code, err)
	}
	wantHealthy(t, sv.diagnose())
}

// slowPHP is a script that takes eight seconds.
const slowPHP = `<?php sleep(8); echo "slow ok";`

func TestPHPMaxChildrenWhileRequestsQueue(t *testing.T) {
	needApache(t)
	fpm, _ := testutil.PHPFPM(t)
	for _, fixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "broken", true: "fixed"}[fixed], func(t *testing.T) {
			dir := testutil.ShortDir(t)
			www := filepath.Join(dir, "www")
			os.Mkdir(www, 0o755)
			if err := os.WriteFile(filepath.Join(www, "slow.php"), []byte(slowPHP), 0o644); err != nil {
				t.Fatal(err)
			}
			// Five children, then the fix the doctor names: room for the load.
			pool := `fpm { max_children = 5 }`
			if fixed {
				pool = `fpm {
    pm = "static"
    max_children = 12
  }`
			}
			sv := startSockvisor(t, dir, "", fmt.Sprintf(`
backend "blog" {
  preset = "php-fpm"
  command = [%q]
  mount = "/blog/"
  document_root = %q
  user = "www-data"
  stop_timeout = "5s"
  %s
}
`, fpm, www, pool), nil)
			// Twelve clients at once against at most five children
			// (sockvisor's generated pool, pm = dynamic): PHP-FPM spawns
			// up to five within about three seconds, warns, and the rest
			// wait in the socket's queue.
			var wg sync.WaitGroup
			for i := 0; i < 12; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &http.Client{Timeout: 30 * time.Second}
					resp, err := c.Get(sv.in.URL("/blog/slow.php"))
					if err != nil {
						fmt.Fprintf(os.Stderr, "GET slow.php: %v\n", err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					fmt.Fprintf(os.Stderr, "GET slow.php: %d %q\n", resp.StatusCode, b)
				}()
			}
			// Wait for the pool to hit its limit (the fixed one never does:
			// give it as long), while the requests still run.
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if b, _ := os.ReadFile(sv.logFile); strings.Contains(string(b), "reached pm.max_children") {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			r := sv.diagnose()
			wg.Wait()
			if fixed {
				wantHealthy(t, r)
				return
			}
			f := wantProblem(t, r, IDPHPMaxChildren)
			mustContain(t, "what", f.What, "[blog]", "pm.max_children (5)", "wait in the socket's queue")
			mustContain(t, "fix", f.Fix, "fpm { max_children = N }", "sockvisor reload")
			if f.Severity != SevError {
				t.Errorf("max_children with a queue is %s, want error", f.Severity)
			}
		})
	}
}
