package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
)

// The deploy tests run real servers from Debian's packages behind a private
// Apache and deploy broken and good versions of their apps, the way a user
// would: the files change on disk, then `sockvisor restart` or `reload`.

const deployApps = "testdata/deploy"

// appDir copies the deploy apps to a directory www-data can read, so a test
// can break and repair them in place.
func appDir(t *testing.T, parent string) string {
	t.Helper()
	dir := filepath.Join(parent, "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(deployApps)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(deployApps, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// server is one real app server and how to deploy a broken version of it.
type server struct {
	name string
	bins []string
	// hcl is the backend block's body (mount and user are added).
	hcl func(app, sock string) string
	// file is overwritten with broken to deploy a broken version.
	file, broken string
	// reason is a fragment of what the broken version writes to stderr.
	reason string
}

var servers = []server{
	{
		name: "gunicorn", bins: []string{"/usr/bin/gunicorn"},
		// No --preload: the arbiter sends READY=1 before a worker imports the app.
		hcl: func(app, _ string) string {
			return fmt.Sprintf(`preset = "gunicorn"
  command = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", %q, "wsgi:app"]`, app)
		},
		file: "wsgi.py", broken: "def app(:\n", reason: "SyntaxError",
	},
	{
		name: "uvicorn", bins: []string{"/usr/bin/uvicorn"},
		hcl: func(app, _ string) string {
			return fmt.Sprintf(`command = ["/usr/bin/uvicorn", "--fd", "3", "--no-access-log", "--app-dir", %q, "asgi:app"]`, app)
		},
		file: "asgi.py", broken: "async def app(:\n", reason: "SyntaxError",
	},
	{
		name: "puma", bins: []string{"/usr/bin/puma"},
		// Puma takes the inherited socket whose path matches its bind.
		hcl: func(app, sock string) string {
			return fmt.Sprintf(`command = ["/usr/bin/puma", "-b", "unix://%s", "-t", "2:4", %q]
  directory = %q`, sock, filepath.Join(app, "config.ru"), app)
		},
		// An app that checks its settings at boot. (A bare raise works too,
		// but Ruby's backtrace pushes the message out of the 10-line tail.)
		file: "config.ru", broken: "abort \"broken deploy: no DATABASE_URL\"\n", reason: "broken deploy: no DATABASE_URL",
	},
	{
		name: "generic", bins: []string{"/usr/bin/python3"},
		hcl: func(app, _ string) string {
			return fmt.Sprintf(`command = ["/usr/bin/python3", %q]`, filepath.Join(app, "generic.py"))
		},
		// Boots for 3 s, then exits 1.
		file: "mode", broken: "broken\n", reason: "cannot read settings.ini",
	},
}

// deployHarness starts sockvisor with one backend "app" of srv at /app/.
func deployHarness(t *testing.T, srv server, extra string) (*harness, string) {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, srv.bins...)
	parent := testutil.ShortDir(t)
	app := appDir(t, parent)
	sock := filepath.Join(parent, "s", "app.sock")
	hcl := fmt.Sprintf(`
backend "app" {
  %s
  mount = "/app/"
  user  = "www-data"
  stop_timeout = "5s"
  %s
}
`, srv.hcl(app, sock), extra)
	return newHarnessIn(t, parent, hcl), app
}

// statusExitRe matches how a failure names the exit status.
var statusExitRe = regexp.MustCompile(`(status|code) \d+`)

// A broken new version is refused at once with its own reason, the old
// process keeps serving, and no request fails through Apache; a good new
// version then replaces the process.
func TestBrokenDeployChangesNothing(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			h, app := deployHarness(t, srv, "")
			before := h.waitStatus().Backends[0].PID
			if body := h.get("/app/"); !strings.Contains(body, "hello from pid") {
				t.Fatalf("body = %q", body)
			}
			good, err := os.ReadFile(filepath.Join(app, srv.file))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}

			stop := make(chan struct{})
			total, failed, wait := h.load("/app/", stop)
			time.Sleep(300 * time.Millisecond)
			if err := os.WriteFile(filepath.Join(app, srv.file), []byte(srv.broken), 0o644); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			err = h.client.Restart(context.Background(), "app")
			took := time.Since(began)
			time.Sleep(time.Second) // the old process must keep serving after the attempt too
			close(stop)
			wait()
			t.Logf("%s: broken restart answered in %s: %v", srv.name, took.Round(time.Millisecond), err)
			switch {
			case err == nil:
				t.Fatalf("restart of a broken %s succeeded", srv.name)
			case !errors.Is(err, control.ErrRefused):
				t.Errorf("error is not a refusal (the CLI would exit 2, not 1): %v", err)
			case !strings.Contains(err.Error(), `"app"`) || !strings.Contains(err.Error(), srv.reason) || !statusExitRe.MatchString(err.Error()):
				t.Errorf("error does not name the backend, the exit status and %q: %v", srv.reason, err)
			}
			if took > 15*time.Second {
				t.Errorf("broken restart took %s; it must fail as soon as the new process fails", took)
			}
			if *failed != 0 || *total < 20 {
				t.Errorf("%d of %d requests failed through Apache during the broken restart\n%s", *failed, *total, h.apache.Log())
			}
			if pid := h.waitStatus().Backends[0].PID; pid != before {
				t.Errorf("pid %d -> %d: the broken version replaced the old process", before, pid)
			}
			if body := h.get("/app/"); !strings.Contains(body, fmt.Sprintf("pid %d", before)) && srv.name != "gunicorn" {
				t.Errorf("after the broken restart, answered by %q, want the old pid %d", body, before)
			}

			// Repair it: the good version replaces the process.
			if good == nil {
				os.Remove(filepath.Join(app, srv.file))
			} else if err := os.WriteFile(filepath.Join(app, srv.file), good, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := h.client.Restart(context.Background(), "app"); err != nil {
				t.Fatalf("restart of the repaired %s: %v", srv.name, err)
			}
			after := h.waitStatus().Backends[0].PID
			if after == before || after == 0 {
				t.Fatalf("pid %d -> %d: not replaced", before, after)
			}
			// gunicorn answers from a worker, a child of the pid in status.
			// The old process may take one more request while it stops
			// (uvicorn notices SIGTERM on its next 100 ms tick).
			if srv.name != "gunicorn" {
				want := fmt.Sprintf("pid %d", after)
				body := h.get("/app/")
				for deadline := time.Now().Add(5 * time.Second); !strings.Contains(body, want) && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
					body = h.get("/app/")
				}
				if !strings.Contains(body, want) {
					t.Errorf("after the good restart, answered by %q, want pid %d", body, after)
				}
			}
		})
	}
}

// A reload that changes a backend's environment to a version that cannot
// start is refused fast; the old process keeps serving throughout.
func TestReloadToBrokenVersionRejected(t *testing.T) {
	srv := servers[1] // uvicorn; asgi.py refuses to start with APP_BREAK set
	h, app := deployHarness(t, srv, "")
	before := h.waitStatus().Backends[0].PID
	stop := make(chan struct{})
	total, failed, wait := h.load("/app/", stop)
	time.Sleep(300 * time.Millisecond)
	sock := filepath.Join(h.dir, "s", "app.sock")
	h.write(fmt.Sprintf(`
backend "app" {
  %s
  mount = "/app/"
  user  = "www-data"
  stop_timeout = "5s"
  environment = { APP_BREAK = "1" }
}
`, srv.hcl(app, sock)))
	began := time.Now()
	err := h.client.Reload(context.Background())
	took := time.Since(began)
	time.Sleep(time.Second)
	close(stop)
	wait()
	t.Logf("broken reload answered in %s: %v", took.Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "APP_BREAK is set") || !strings.Contains(err.Error(), "config not reloaded") {
		t.Fatalf("reload to a broken version = %v", err)
	}
	if took > 15*time.Second {
		t.Errorf("rejected reload took %s", took)
	}
	if *failed != 0 {
		t.Errorf("%d of %d requests failed during the rejected reload\n%s", *failed, *total, h.apache.Log())
	}
	st := h.waitStatus()
	if st.Backends[0].PID != before || !st.Backends[0].Ready {
		t.Errorf("after the rejected reload: %+v, want pid %d ready", st.Backends[0], before)
	}
	if !strings.Contains(st.LastReloadError, "APP_BREAK") {
		t.Errorf("status last_reload_error = %q", st.LastReloadError)
	}
}

// Switching handoff between an inherited socket and self is refused in
// both directions, with the way to do it; renaming the backend does it
// without a failed request.
func TestReloadHandoffChange(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/uvicorn")
	inheritedHCL := func(name, app string) string {
		return fmt.Sprintf(`
backend %q {
  command = ["/usr/bin/uvicorn", "--fd", "3", "--no-access-log", "--app-dir", %q, "asgi:app"]
  mount = "/app/"
  user  = "www-data"
  stop_timeout = "5s"
}
`, name, app)
	}
	selfHCL := func(name, app, sockDir string) string {
		return fmt.Sprintf(`
backend %q {
  command = ["/usr/bin/uvicorn", "--uds", %q, "--no-access-log", "--app-dir", %q, "asgi:app"]
  handoff = "self"
  mount = "/app/"
  user  = "www-data"
  stop_timeout = "5s"
}
`, name, filepath.Join(sockDir, name+".sock"), app)
	}
	testutil.NeedRoot(t)
	parent := testutil.ShortDir(t)
	app := appDir(t, parent)
	sockDir := filepath.Join(parent, "s")
	// A self-binding backend's user must be able to create its socket.
	const dirMode = "socket_dir_mode = \"2770\"\n"
	h := newHarnessIn(t, parent, dirMode+inheritedHCL("app", app))
	pid := h.waitStatus().Backends[0].PID

	refused := func(what string) {
		t.Helper()
		// check says so first, from the running sockvisor's state file.
		next, err := config.Load(h.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		// The state file follows the daemon within a housekeeping round.
		ws := HandoffChanges(next, filepath.Join(h.dir, "state"))
		for deadline := time.Now().Add(2 * time.Second); len(ws) != 1 && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			ws = HandoffChanges(next, filepath.Join(h.dir, "state"))
		}
		if len(ws) != 1 || !strings.Contains(ws[0], "will refuse handoff") {
			t.Errorf("%s: HandoffChanges = %q", what, ws)
		}
		err = h.client.Reload(context.Background())
		if err == nil || !strings.Contains(err.Error(), "changes handoff") || !strings.Contains(err.Error(), "new name") {
			t.Fatalf("%s: reload = %v", what, err)
		}
		if st := h.waitStatus(); st.Backends[0].PID != pid {
			t.Errorf("%s: pid %d -> %d after a refused reload", what, pid, st.Backends[0].PID)
		}
		h.get("/app/")
	}
	h.write(dirMode + selfHCL("app", app, sockDir))
	refused("listen-fds -> self")

	// The way the refusal suggests: a new name, under load.
	move := func(hcl string) {
		t.Helper()
		h.write(dirMode + hcl)
		stop := make(chan struct{})
		total, failed, wait := h.load("/app/", stop)
		time.Sleep(300 * time.Millisecond)
		err := h.client.Reload(context.Background())
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wait()
		if err != nil {
			t.Fatalf("reload to a renamed backend: %v", err)
		}
		if *failed != 0 {
			t.Errorf("%d of %d requests failed while the mount moved to the renamed backend\n%s", *failed, *total, h.apache.Log())
		}
	}
	move(selfHCL("app2", app, sockDir))
	pid = h.waitStatus().Backends[0].PID
	if cfg, err := config.Load(h.cfgPath); err != nil {
		t.Fatal(err)
	} else if ws := HandoffChanges(cfg, filepath.Join(h.dir, "state")); len(ws) != 0 {
		t.Errorf("HandoffChanges for the running config = %q", ws)
	}

	h.write(dirMode + inheritedHCL("app2", app))
	refused("self -> listen-fds")
	move(inheritedHCL("app", app))
	if st := h.waitStatus(); len(st.Backends) != 1 || st.Backends[0].Name != "app" {
		t.Errorf("backends after moving back = %+v", st.Backends)
	}
}

// SIGTERM 2 s into a start-up whose backend never gets ready: sockvisor
// exits within 5 s, writes no Apache config and never sends READY=1.
func TestStopDuringStartup(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, apachetest.Binary)
	dir := testutil.ShortDir(t)
	notifyPath := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	t.Setenv("NOTIFY_SOCKET", notifyPath)
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()

	cfgPath := filepath.Join(dir, "sv.hcl")
	confFile := filepath.Join(dir, "sockvisor.conf")
	// sleep never answers the probe: connections wait in the backlog.
	src := fmt.Sprintf(`socket_dir = %q
control_socket = %q
backend "never" {
  command = ["/bin/sleep", "600"]
  mount = "/never/"
  user  = "www-data"
  stop_timeout = "3s"
}
`, filepath.Join(dir, "s"), filepath.Join(dir, "ctl"))
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	log := testutil.Logger("sockvisor", hclog.Info)
	d, err := New(Options{
		ConfigPath: cfgPath, Log: log, Executable: os.Args[0], StateDir: filepath.Join(dir, "state"),
		Apache: func(cfg *config.Config, log hclog.Logger) (*apache.Manager, error) {
			ac := []string{apachetest.Binary, "-d", dir, "-f", filepath.Join(dir, "apache2.conf")}
			l := apache.Layout{Flavor: "debian", ConfigFile: confFile, Apachectl: ac, RunUser: "www-data", RunGroup: "www-data"}
			return apache.NewManager(apache.Options{Layout: l, Reloader: &apache.ApachectlReloader{Apachectl: ac}, Logger: log}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	time.Sleep(2 * time.Second)
	if st := d.report(); st.Phase != "starting" {
		t.Fatalf("phase 2 s into start-up = %q", st.Phase)
	}
	// A restart sent during start-up waits for it; the stop must refuse it.
	restarted := make(chan error, 1)
	go func() {
		restarted <- control.NewClient(filepath.Join(dir, "ctl")).Restart(context.Background(), "never")
	}()
	time.Sleep(100 * time.Millisecond)
	sent := time.Now()
	// Run's signal handler catches it; the test binary is not stopped.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sockvisor did not stop within 20 s of SIGTERM")
	}
	took := time.Since(sent)
	t.Logf("stopped %s after SIGTERM", took.Round(time.Millisecond))
	if err := <-restarted; err == nil {
		t.Error("a restart sent during start-up ran after SIGTERM")
	} else {
		t.Logf("restart during start-up: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("stopping took %s, want < 5 s (stop_timeout 3 s + 1 s)", took)
	}
	if _, err := os.Stat(confFile); err == nil {
		t.Error("Apache config written after SIGTERM")
	}
	nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var msgs []string
	for m := range got {
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		if strings.Contains(m, "READY=1") {
			t.Errorf("READY=1 sent during a stopped start-up: %q", msgs)
		}
	}
	if !strings.Contains(strings.Join(msgs, "\n"), "STOPPING=1") {
		t.Errorf("no STOPPING=1 among %q", msgs)
	}
	if _, err := control.NewClient(filepath.Join(dir, "ctl")).Status(context.Background()); err == nil {
		t.Error("control socket still answers after the stop")
	}
}

// wrkRun is what one bounded wrk run reports.
type wrkRun struct {
	requests, non2xx, sockErrs int64
	rps                        float64
}

var (
	wrkReqs  = regexp.MustCompile(`(\d+) requests in`)
	wrkRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockE = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func parseWrkOut(out string) (wrkRun, error) {
	var r wrkRun
	m := wrkReqs.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk's output %q", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m := wrkRPS.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := wrkNon2.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSockE.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.sockErrs += n
		}
	}
	return r, nil
}

// restartsUnderWrk runs wrk -c8 for d through Apache while restarting the
// backend n times, and returns what wrk saw.
func restartsUnderWrk(t *testing.T, h *harness, n int, d time.Duration) wrkRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wrk", "-t2", "-c8", fmt.Sprintf("-d%ds", int(d/time.Second)), "--timeout", "10s", h.apache.URL("/app/"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	gap := (d - 3*time.Second) / time.Duration(n)
	for i := 0; i < n; i++ {
		if err := h.client.Restart(context.Background(), "app"); err != nil {
			t.Errorf("restart %d: %v", i, err)
		}
		time.Sleep(gap)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wrk: %v\n%s", err, out.String())
	}
	r, err := parseWrkOut(out.String())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// steadyWrk runs wrk -c8 for d through Apache without restarts.
func steadyWrk(t *testing.T, h *harness, d time.Duration) wrkRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", "-t2", "-c8", fmt.Sprintf("-d%ds", int(d/time.Second)), "--timeout", "10s", h.apache.URL("/app/")).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	r, err := parseWrkOut(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// 10 restarts of uvicorn (which closes idle keep-alive connections when it
// stops) under wrk -c8 through Apache. With the default proxy.keepalive =
// false Apache never reuses a connection the old process closed (with
// keepalive = true: 4-9 non-2xx and 61 socket errors).
//
// With preset = "uvicorn" nothing else fails: the preset's patch lets
// uvicorn read the connections it has accepted before it stops (see
// backend's uvicornFix). Started by hand as a generic backend (`--fd 3`),
// uvicorn 0.17 closes those unread, and no ordering of signals on a shared
// socket avoids that (measured: 6 to 14 failures in 46,000-62,000 requests;
// SIGSTOP before SIGTERM no better): that variant is bounded at 0.1 % to
// keep the residue visible, and the README recommends the preset.
// SOCKVISOR_MEASURE_KEEPALIVE=1 also measures keepalive = true and steady
// throughput, for the README's numbers.
func TestRestartsUnderWrkKeepalive(t *testing.T) {
	testutil.NeedBinary(t, "wrk")
	measure := os.Getenv("SOCKVISOR_MEASURE_KEEPALIVE") != ""
	preset := servers[1]
	preset.hcl = func(app, _ string) string {
		return fmt.Sprintf(`preset = "uvicorn"
  command = ["/usr/bin/uvicorn", "--no-access-log", "--app-dir", %q, "asgi:app"]`, app)
	}
	type variant struct {
		name  string
		srv   server
		extra string
		// allowed is the most failures per 1,000 requests; -1 measures only.
		allowed int
	}
	variants := []variant{
		{"preset uvicorn, keepalive=false (default)", preset, "", 0},
		{"generic --fd 3, keepalive=false (default)", servers[1], "", 1},
	}
	if measure {
		variants = append(variants, variant{"generic --fd 3, keepalive=true", servers[1], "proxy {\n    keepalive = true\n  }", -1})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			h, _ := deployHarness(t, v.srv, v.extra)
			if measure {
				s := steadyWrk(t, h, 8*time.Second)
				t.Logf("uvicorn, %s, no restarts, wrk -c8 8 s: %.0f req/s, %d non-2xx, %d socket errors", v.name, s.rps, s.non2xx, s.sockErrs)
				if os.Getenv("SOCKVISOR_MEASURE_KEEPALIVE") == "steady" {
					return
				}
			}
			r := restartsUnderWrk(t, h, 10, 15*time.Second)
			t.Logf("uvicorn, %s, 10 restarts under wrk -c8 15 s: %d requests, %.0f req/s, %d non-2xx, %d socket errors", v.name, r.requests, r.rps, r.non2xx, r.sockErrs)
			if v.allowed >= 0 && ((r.non2xx+r.sockErrs)*1000 > r.requests*int64(v.allowed) || r.requests < 1000) {
				t.Errorf("%d non-2xx and %d socket errors in %d requests (at most %d per 1,000 allowed)\n%s", r.non2xx, r.sockErrs, r.requests, v.allowed, h.apache.Log())
			}
		})
	}
}

// listenNotify plays systemd for the daemon: NOTIFY_SOCKET for the test,
// and a channel of every datagram.
func listenNotify(t *testing.T, dir string) <-chan string {
	t.Helper()
	path := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	got := make(chan string, 256)
	go func() {
		defer close(got)
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			select {
			case got <- string(buf[:n]):
			default:
			}
		}
	}()
	return got
}

// SIGTERM 1 s into a reload whose new backend never gets ready: the reload
// is abandoned, nothing new reaches Apache, no READY=1 follows RELOADING=1,
// and sockvisor exits within the backends' stop_timeout plus 1 s.
func TestStopDuringReload(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	dir := testutil.ShortDir(t)
	msgs := listenNotify(t, dir)
	h := newHarnessIn(t, dir, backendHCL("app", "/app/", ""))
	h.write(backendHCL("app", "/app/", "") + `
backend "never" {
  command = ["/bin/sleep", "600"]
  mount = "/never/"
  user  = "www-data"
  stop_timeout = "3s"
}
`)
	reloaded := make(chan error, 1)
	go func() { reloaded <- h.client.Reload(context.Background()) }()
	time.Sleep(time.Second)
	sent := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.done:
		h.cancel = nil
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sockvisor did not stop within 20 s of SIGTERM")
	}
	took := time.Since(sent)
	t.Logf("stopped %s after SIGTERM during a reload", took.Round(time.Millisecond))
	// gunicorn's stop_timeout is 5 s; it stops in well under that.
	if took > 6*time.Second {
		t.Errorf("stopping took %s, want < stop_timeout + 1 s", took)
	}
	if err := <-reloaded; err == nil {
		t.Error("the reload cut short by SIGTERM reported success")
	} else {
		t.Logf("reload: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sockvisor.conf")); strings.Contains(string(b), "/never/") {
		t.Errorf("the abandoned reload's backend reached Apache's config:\n%s", b)
	}
	var all []string
	for deadline := time.After(300 * time.Millisecond); ; {
		select {
		case m, ok := <-msgs:
			if ok {
				all = append(all, m)
				continue
			}
		case <-deadline:
		}
		break
	}
	reloading := -1
	for i, m := range all {
		if strings.Contains(m, "RELOADING=1") {
			reloading = i
		}
		if reloading >= 0 && i > reloading && strings.Contains(m, "READY=1") {
			t.Errorf("READY=1 after RELOADING=1 during a stopped reload: %q", all)
		}
	}
	if reloading < 0 {
		t.Errorf("no RELOADING=1 among %q", all)
	}
}
