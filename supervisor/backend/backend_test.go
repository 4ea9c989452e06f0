package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

const (
	gunicornBin = "/usr/bin/gunicorn"
	uwsgiBin    = "/usr/bin/uwsgi"
)

// asgiApp answers "ok <pid> <path>" like testdata/app.py.
const asgiApp = `import os


async def app(scope, receive, send):
    assert scope["type"] == "http"
    body = ("ok %d %s\\n" % (os.getpid(), scope["path"])).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
`

func writeApp(e *env, name, src string) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// fpmBin is the installed PHP-FPM, whatever its version ("php-fpm" when
// none is, so the gate names what is missing).
var fpmBin = func() string {
	if bin, _ := testutil.FindPHPFPM(); bin != "" {
		return bin
	}
	return "php-fpm"
}()

// presetCase is one way to run a backend and talk to it.
type presetCase struct {
	name string
	bins []string
	hcl  func(e *env) string
	req  func(e *env, path string) requester
	// reload: also check the native reload signal keeps the pid.
	reload bool
}

var presetCases = []presetCase{
	{
		name: "gunicorn", bins: []string{gunicornBin}, reload: true,
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "gunicorn"
command = [%q, "--workers", "2", "--chdir", %q, "app:app"]`, gunicornBin, e.dir)
		},
		req: func(e *env, path string) requester { return httpRequester(path, "/") },
	},
	{
		name: "uwsgi", bins: []string{uwsgiBin, "/usr/lib/uwsgi/plugins/python3_plugin.so"}, reload: true,
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "uwsgi"
command = [%q, "--wsgi-file", %q, "--processes", "2", "--disable-logging"]`, uwsgiBin, filepath.Join(e.dir, "app.py"))
		},
		req: func(e *env, path string) requester { return uwsgiRequester(path) },
	},
	{
		name: "uwsgi-http", bins: []string{uwsgiBin, "/usr/lib/uwsgi/plugins/python3_plugin.so"},
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "uwsgi"
protocol = "http"
command = [%q, "--wsgi-file", %q, "--processes", "2", "--disable-logging"]`, uwsgiBin, filepath.Join(e.dir, "app.py"))
		},
		req: func(e *env, path string) requester { return httpRequester(path, "/") },
	},
	{
		name: "uwsgi-fcgi", bins: []string{uwsgiBin, "/usr/lib/uwsgi/plugins/python3_plugin.so"},
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "uwsgi"
protocol = "fcgi"
command = [%q, "--wsgi-file", %q, "--processes", "2", "--disable-logging"]`, uwsgiBin, filepath.Join(e.dir, "app.py"))
		},
		req: func(e *env, path string) requester { return fcgiRequester(path, "/x", "ok ") },
	},
	{
		name: "php-fpm", bins: []string{fpmBin}, reload: true,
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "php-fpm"
command = [%q]`, fpmBin)
		},
		req: func(e *env, path string) requester {
			return fcgiRequester(path, filepath.Join(e.dir, "hello.php"), "hello from php")
		},
	},
	{
		name: "uvicorn", bins: []string{uvicornBin},
		hcl: func(e *env) string {
			writeApp(e, "asgi.py", asgiApp)
			return fmt.Sprintf(`preset = "uvicorn"
command = [%q, "--app-dir", %q, "--no-access-log", "asgi:app"]`, uvicornBin, e.dir)
		},
		req: func(e *env, path string) requester { return httpRequester(path, "/") },
	},
	{
		name: "puma", bins: []string{pumaBin},
		hcl: func(e *env) string {
			copyFile(e.t, filepath.Join("testdata", "config.ru"), filepath.Join(e.dir, "config.ru"), 0o644)
			return fmt.Sprintf(`preset = "puma"
command = [%q, "--environment", "production", %q]`, pumaBin, filepath.Join(e.dir, "config.ru"))
		},
		req: func(e *env, path string) requester { return httpRequester(path, "/") },
	},
	{
		name: "generic",
		hcl: func(e *env) string {
			return fmt.Sprintf(`command = [%q]
environment = { SV_ROLE = "http" }`, e.exe)
		},
		req: func(e *env, path string) requester { return httpRequester(path, "/") },
	},
	{
		name: "generic-stdin",
		hcl: func(e *env) string {
			return fmt.Sprintf(`command = [%q]
protocol = "fcgi"
handoff = "stdin"
environment = { SV_ROLE = "fcgi-stdin" }`, e.exe)
		},
		req: func(e *env, path string) requester { return fcgiRequester(path, "/whoami", "pid=") },
	},
}

// TestPresets: for each preset the backend serves through the socket the
// supervisor owns, the socket keeps its inode and mode, a Restart under a
// steady stream of requests loses none, and (where native) the reload
// signal keeps the process.
func TestPresets(t *testing.T) {
	testutil.NeedRoot(t)
	for _, c := range presetCases {
		t.Run(c.name, func(t *testing.T) {
			testutil.NeedBinary(t, c.bins...)
			e := newEnv(t)
			cfg := e.parse(fmt.Sprintf("backend \"app\" {\n%s\nmount = \"\"\nstop_timeout = \"10s\"\n}\n", c.hcl(e)))
			b := cfg.Backends[0]
			socks := e.sockets(b)
			path := socks[0].Path()
			ino := inode(t, path)
			be := e.start(b, socks, Options{})
			waitReady(t, be, 30*time.Second)
			do := c.req(e, path)
			for i := range 3 {
				if err := do(context.Background()); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
			}
			st := be.Status()
			oldPID := st.PID
			if st.State != StateReady || !st.Ready || oldPID == 0 {
				t.Fatalf("status %+v; want ready with a pid", st)
			}

			// Restart under load.
			stop := make(chan struct{})
			res, wait := runLoad(4, do, stop)
			time.Sleep(time.Second)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := be.Restart(ctx)
			cancel()
			took := time.Since(start)
			time.Sleep(500 * time.Millisecond)
			close(stop)
			wait()
			if err != nil {
				t.Fatalf("Restart: %v", err)
			}
			t.Logf("restart took %v under load: %s", took.Round(time.Millisecond), res)
			fmt.Fprintf(os.Stderr, "MEASURE %s restart: %v, %s\n", c.name, took.Round(time.Millisecond), res)
			if res.failed.Load() != 0 || res.ok.Load() == 0 {
				t.Errorf("restart under load: %s; want no failures", res)
			}
			st = be.Status()
			if st.PID == oldPID || !st.Ready {
				t.Errorf("after Restart pid %d (old %d) ready %t; want a new ready process", st.PID, oldPID, st.Ready)
			}
			if got := inode(t, path); got != ino {
				t.Errorf("socket inode changed from %d to %d", ino, got)
			}
			if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o660 {
				t.Errorf("socket mode %v, %v; want 0660 untouched", fi.Mode(), err)
			}

			if c.reload {
				pid := st.PID
				stop := make(chan struct{})
				res, wait := runLoad(2, do, stop)
				time.Sleep(300 * time.Millisecond)
				if err := be.Reload(context.Background()); err != nil {
					t.Fatalf("Reload: %v", err)
				}
				time.Sleep(1500 * time.Millisecond)
				close(stop)
				wait()
				fmt.Fprintf(os.Stderr, "MEASURE %s reload signal: %s\n", c.name, res)
				if res.failed.Load() != 0 {
					t.Errorf("reload signal under load: %s; want no failures", res)
				}
				if err := do(context.Background()); err != nil {
					t.Errorf("after reload: %v", err)
				}
				if st := be.Status(); st.PID != pid {
					t.Errorf("reload signal changed pid %d to %d", pid, st.PID)
				}
			}
		})
	}
}

// TestKill9: requests sent while the backend is dead wait in the backlog of
// the socket the supervisor keeps, and succeed once it is back.
func TestKill9(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, gunicornBin)
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
preset = "gunicorn"
command = [%q, "--workers", "2", "--chdir", %q, "app:app"]
mount = ""
restart { min_delay = "200ms" }
}
`, gunicornBin, e.dir))
	b := cfg.Backends[0]
	socks := e.sockets(b)
	be := e.start(b, socks, Options{})
	waitReady(t, be, 30*time.Second)
	pid := be.Status().PID

	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	do := httpRequester(socks[0].Path(), "/")
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs <- do(ctx)
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("request during the outage: %v", err)
		}
	}
	t.Logf("8 requests sent while down all succeeded after %v", time.Since(start).Round(time.Millisecond))
	// The restarted gunicorn proves itself after those 8 (its probe waits
	// behind them in the queue). Let both workers boot before the cleanup
	// stops it: gunicorn 20.1 loses a TERM that reaches a booting worker.
	waitReady(t, be, 30*time.Second)
	newPID := be.Status().PID
	for deadline := time.Now().Add(10 * time.Second); len(procfs.GroupMembers(newPID)) < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	st := be.Status()
	if st.PID == pid || st.Restarts != 1 || st.LastExit == nil || st.LastExit.Code != 128+9 || st.LastExit.Signal != "SIGKILL" {
		t.Errorf("status after kill -9: pid %d (was %d) restarts %d last exit %+v; want new pid, 1 restart, code 137 SIGKILL", st.PID, pid, st.Restarts, st.LastExit)
	}
}

// TestCrashLoop: a command that exits at once backs off with growing
// delays up to max_delay, is marked failed, keeps being retried, and does
// not disturb another backend.
func TestCrashLoop(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`
backend "bad" {
  command = [%q]
  environment = { SV_ROLE = "exit1" }
  mount = "/bad"
  stop_timeout = "999s"
  restart {
    min_delay = "1s"
    max_delay = "16s"
  }
}
backend "good" {
  command = [%q]
  environment = { SV_ROLE = "http" }
  mount = "/good"
}
`, e.exe, e.exe))
	clock := newFakeClock()
	for _, b := range cfg.Backends {
		userOwn(b)
	}
	bad, good := cfg.Backends[0], cfg.Backends[1]
	goodSocks := e.sockets(good)
	gb := e.start(good, goodSocks, Options{})
	waitReady(t, gb, 20*time.Second)
	bb := e.start(bad, e.sockets(bad), Options{Clock: clock})

	stop := make(chan struct{})
	res, wait := runLoad(2, httpRequester(goodSocks[0].Path(), "/"), stop)
	// The bad backend's clock moves only here: each backoff timer fires
	// as soon as it is armed, so no backoff delay is waited out.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := bb.Status()
		if st.State == StateFailed && st.Restarts >= CrashLoopAfter+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad backend never failed: %+v", st)
		}
		if d, ok := clock.next(time.Second, 16*time.Second); ok {
			clock.advance(d)
		} else {
			time.Sleep(5 * time.Millisecond) // the next crash is real
		}
	}
	close(stop)
	wait()

	st := bb.Status()
	if st.Ready || st.LastExit == nil || st.LastExit.Code != 1 || !strings.Contains(st.LastError, "exited with status 1") {
		t.Errorf("bad status %+v; want not ready, last exit 1", st)
	}
	delays := clock.delays(time.Second)
	delays = slices.DeleteFunc(delays, func(d time.Duration) bool { return d > 16*time.Second })
	t.Logf("backoff delays: %v", delays)
	if len(delays) < CrashLoopAfter+1 {
		t.Fatalf("only %d backoff delays recorded: %v", len(delays), delays)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] < delays[i-1] {
			t.Errorf("backoff shrank: %v", delays)
		}
	}
	if delays[0] >= 2*time.Second || delays[len(delays)-1] != 16*time.Second {
		t.Errorf("backoff %v; want to start below 2s and settle at max_delay 16s", delays)
	}
	if res.failed.Load() != 0 || res.ok.Load() == 0 {
		t.Errorf("good backend during the crash loop: %s; want no failures", res)
	}
	if gs := gb.Status(); gs.Restarts != 0 || !gs.Ready {
		t.Errorf("good backend disturbed: %+v", gs)
	}

	// A manual restart of a failed backend starts it at once and reports
	// that it did not become ready.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bb.Restart(ctx); err == nil || !strings.Contains(err.Error(), "exited with status 1") {
		t.Errorf("Restart of a crashing backend: %v; want the exit reason", err)
	}
}

// TestStopKillsGroup: a backend that ignores SIGTERM and forked a
// grandchild (also ignoring it) is SIGKILLed after stop_timeout, and no
// process of its group survives.
func TestStopKillsGroup(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "stubborn" }
mount = ""
stop_timeout = "1s"
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	be, err := New(b, e.sockets(b), Options{Logger: testutil.Logger("test", hclog.Info), Executable: e.exe, StateDir: e.state})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- be.Run(context.Background()) }()
	t.Cleanup(func() { be.Stop(context.Background()); <-runErr })
	waitReady(t, be, 20*time.Second)
	pid := be.Status().PID
	deadline := time.Now().Add(5 * time.Second)
	for len(procfs.GroupMembers(pid)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild never appeared in group %d", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	members := procfs.GroupMembers(pid)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := be.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(start)
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	runErr <- nil // for the cleanup
	if left := procfs.GroupMembers(pid); len(left) > 0 {
		t.Fatalf("group %d (was %v) still has %v after Stop", pid, members, left)
	}
	if took < time.Second || took > 1*time.Second+killWait {
		t.Errorf("Stop took %v; want stop_timeout (1s) then SIGKILL", took)
	}
	st := be.Status()
	if st.State != StateStopped || st.LastExit == nil || st.LastExit.Signal != "SIGKILL" {
		t.Errorf("status after Stop %+v; want stopped, killed by SIGKILL", st)
	}
	t.Logf("group %v killed after %v", members, took.Round(time.Millisecond))
}

// TestShimCredentials: through the whole spawn path the backend gets
// LISTEN_PID == its pid, the configured umask, uid, gid and exactly the
// configured supplementary groups (no leading group 0), fd 3 in blocking
// mode, and a private NOTIFY_SOCKET instead of sockvisor's own.
func TestShimCredentials(t *testing.T) {
	testutil.NeedRoot(t)
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "http" }
mount = ""
user = "nobody"
umask = "0027"
}
`, e.exe))
	b := cfg.Backends[0]
	b.Groups = []uint32{33, 65534}
	socks := e.sockets(b)
	be := e.start(b, socks, Options{Environ: []string{"PATH=/usr/bin:/bin", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=4", "WATCHDOG_USEC=1"}})
	waitReady(t, be, 20*time.Second)
	got := fetch(t, socks[0].Path(), "/whoami")
	pid := be.Status().PID
	want := fmt.Sprintf("pid=%d listen_pid=%d listen_fds=1 fdnames=app.sock uid=65534 gid=65534 umask=0027 groups=[33 65534] notify=true nonblock=false", pid, pid)
	// nonblock=false: the test socket was left non-blocking on purpose and
	// the spawn put it back in blocking mode before the backend started.
	if got != want {
		t.Errorf("backend reports\n  %s\nwant\n  %s", got, want)
	}
}

func fetch(t *testing.T, path, urlPath string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, body, err := httpGet(ctx, path, urlPath)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", urlPath, code, err)
	}
	return strings.TrimSpace(body)
}

// TestSelfHandoff: gunicorn binds the path itself (the preset adds
// --bind); the stale file is swept first, the fix-up callback runs before
// readiness, and Restart stops then starts it. One worker: gunicorn 20.1
// loses a TERM that reaches a worker still booting (measured: killed only
// after the 30s graceful timeout), and with one worker "ready" means booted.
func TestSelfHandoff(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, gunicornBin)
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`socket_dir_mode = "2770"
backend "app" {
preset = "gunicorn"
handoff = "self"
command = [%q, "--workers", "1", "--chdir", %q, "app:app"]
mount = ""
}
`, gunicornBin, e.dir))
	b := cfg.Backends[0]
	path := b.Sockets[0].Path
	// A self-binding backend must be able to create its socket file.
	if err := os.Chown(e.dir, 0, b.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.dir, 0o770|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	// A stale socket from a crash: bound, nobody listening.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)

	fixed := make(chan string, 4)
	fix := func(s config.Socket) error {
		fixed <- s.Path
		return os.Chmod(s.Path, 0o660)
	}
	be := e.start(b, nil, Options{FixUp: fix})
	waitReady(t, be, 30*time.Second)
	if got := <-fixed; got != path {
		t.Fatalf("fix-up got %s; want %s", got, path)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v %v; want 0660 from the fix-up", fi.Mode(), err)
	}
	if err := httpRequester(path, "/")(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := be.Status().PID
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := be.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if st := be.Status(); st.PID == old || !st.Ready {
		t.Fatalf("after Restart %+v; want a new ready process", st)
	}
	if len(fixed) != 1 {
		t.Errorf("fix-up ran %d times after the restart; want once", len(fixed))
	}
	if err := httpRequester(path, "/")(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestEnsurePathAfterExit: a backend that unlinks its socket path on exit
// (as PHP-FPM does) gets it back, same inode, before the next start.
func TestEnsurePathAfterExit(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "unlinker" }
mount = ""
restart { min_delay = "50ms" }
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	b.Environment["SV_SOCKET"] = b.Sockets[0].Path
	socks := e.sockets(b)
	path := socks[0].Path()
	ino := inode(t, path)
	be := e.start(b, socks, Options{})
	waitReady(t, be, 20*time.Second)
	pid := be.Status().PID
	syscall.Kill(pid, syscall.SIGTERM) // it unlinks the path and exits 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := be.Status()
		if st.Ready && st.PID != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never restarted: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := inode(t, path); got != ino {
		t.Fatalf("path restored with inode %d; want the listening socket's %d", got, ino)
	}
	if err := httpRequester(path, "/")(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestNotReady: a process that never answers the probe is stopped after
// ready.timeout, and WaitReady reports why.
func TestNotReady(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "http" }
protocol = "uwsgi"
mount = ""
ready { timeout = "1s" }
restart { min_delay = "10s" }
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	be := e.start(b, e.sockets(b), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := be.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "not ready within ready.timeout 1s") {
		t.Fatalf("WaitReady: %v; want the readiness timeout", err)
	}
	if st := be.Status(); st.State != StateBackoff || st.PID != 0 {
		t.Fatalf("status %+v; want backoff without a process", st)
	}
}

// TestInstances: instances = 2 runs one process per socket.
func TestInstances(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "http" }
mount = ""
instances = 2
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	socks := e.sockets(b)
	be := e.start(b, socks, Options{})
	waitReady(t, be, 20*time.Second)
	st := be.Status()
	if len(st.Instances) != 2 || st.Instances[0].PID == st.Instances[1].PID {
		t.Fatalf("instances %+v; want two processes", st.Instances)
	}
	for i, s := range socks {
		got := fetch(t, s.Path(), "/whoami")
		if !strings.HasPrefix(got, "pid="+strconv.Itoa(st.Instances[i].PID)+" ") {
			t.Errorf("socket %d served by %q; want instance %d's pid %d", i, got, i, st.Instances[i].PID)
		}
	}
	if err := be.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	st2 := be.Status()
	for i := range st2.Instances {
		if st2.Instances[i].PID == st.Instances[i].PID {
			t.Errorf("instance %d not replaced", i)
		}
	}
	// With no traffic the old processes must still stop gracefully at
	// once: the spawn must not have flipped the shared socket to blocking
	// under them (they would sit in accept(2) until SIGKILL).
	start := time.Now()
	for _, in := range st.Instances {
		for len(procfs.GroupMembers(in.PID)) > 0 {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("old process %d still running 5s after the restart (stop_timeout 30s)", in.PID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if ex := be.Status().LastExit; ex == nil || ex.Code != 0 {
		t.Errorf("old process exit %+v; want a graceful exit 0", ex)
	}
}

func TestBackoffDelay(t *testing.T) {
	min, max := 100*time.Millisecond, 30*time.Second
	for _, r := range []float64{0, 0.5, 0.999} {
		prev := time.Duration(0)
		for n := 1; n <= CrashLoopAfter+2; n++ {
			d := backoffDelay(min, max, n, r)
			if d < min || d > max || d < prev {
				t.Fatalf("r=%v n=%d: %v after %v", r, n, d, prev)
			}
			prev = d
		}
		if prev != max {
			t.Fatalf("crash loop delay %v; want max %v", prev, max)
		}
	}
	if d := backoffDelay(min, max, 1, 0); d != min {
		t.Fatalf("first delay %v; want %v", d, min)
	}
	if d := backoffDelay(time.Second, 2*time.Second, 3, 0.9); d != 2*time.Second {
		t.Fatalf("capped delay %v; want max", d)
	}
}

// TestReloadReplace: reload_signal = "replace" starts a new process and
// retires the old one, as Restart does.
func TestReloadReplace(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "http" }
mount = ""
reload_signal = "replace"
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	be := e.start(b, e.sockets(b), Options{})
	waitReady(t, be, 20*time.Second)
	old := be.Status().PID
	if err := be.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := be.Status(); st.PID == old || !st.Ready {
		t.Fatalf("after Reload %+v; want a new ready process (old %d)", st, old)
	}
}
