package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/shim"
)

// TestMain lets the test binary serve as sockvisor's exec shim; otherwise
// it runs the tests and checks for leaks (testutil.Main).
func TestMain(m *testing.M) {
	testutil.RunRole(shim.Arg, shim.Main)
	testutil.Main(m)
}

type harness struct {
	t       *testing.T
	dir     string // short, world-searchable temp dir
	cfgPath string
	apache  *apachetest.Instance
	d       *Daemon
	cancel  context.CancelFunc
	done    chan error
	client  *control.Client
}

const helloApp = "../../packaging/examples/apps"

// backendHCL is a gunicorn backend serving the hello app.
func backendHCL(name, mount string, extra string) string {
	apps, _ := filepath.Abs(helloApp)
	return fmt.Sprintf(`
backend %q {
  preset  = "gunicorn"
  command = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", %q, "hello:app"]
  mount   = %q
  user    = "www-data"
  stop_timeout = "5s"
  %s
}
`, name, apps, mount, extra)
}

func newHarness(t *testing.T, backends string) *harness {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	return newHarnessIn(t, testutil.ShortDir(t), backends)
}

// newHarnessIn starts sockvisor with backends in dir (a testutil.ShortDir).
func newHarnessIn(t *testing.T, dir, backends string) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, cfgPath: filepath.Join(dir, "sv.hcl")}
	confFile := filepath.Join(dir, "sockvisor.conf")
	h.apache = apachetest.Start(t, "IncludeOptional "+confFile+"\n")
	h.write(backends)
	log := testutil.Logger("sockvisor", hclog.Info)
	d, err := New(Options{
		ConfigPath: h.cfgPath,
		Log:        log,
		Executable: os.Args[0],
		StateDir:   filepath.Join(dir, "state"),
		Apache: func(cfg *config.Config, log hclog.Logger) (*apache.Manager, error) {
			l := apache.Layout{Flavor: "debian", ConfigFile: confFile, Apachectl: h.apache.Command(), RunUser: "www-data", RunGroup: "www-data"}
			return apache.NewManager(apache.Options{Layout: l, Reloader: &apache.ApachectlReloader{Apachectl: h.apache.Command()}, Logger: log}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- d.Run(ctx) }()
	t.Cleanup(h.stop)
	h.client = control.NewClient(filepath.Join(dir, "ctl"))
	// Start-up waits at most for the slowest ready.timeout (30 s by
	// default) plus the probe budget; twice that is a hang.
	deadline := time.Now().Add(90 * time.Second)
	for st := h.waitStatus(); st.Phase != "running"; st = h.waitStatus() {
		if time.Now().After(deadline) {
			t.Fatalf("sockvisor still in phase %q after 90 s, backends: %+v\n%s", st.Phase, st.Backends, h.apache.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return h
}

func (h *harness) write(backends string) {
	h.t.Helper()
	src := fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\n%s", filepath.Join(h.dir, "s"), filepath.Join(h.dir, "ctl"), backends)
	if err := os.WriteFile(h.cfgPath, []byte(src), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		h.t.Error("daemon did not stop in 60 s")
	}
	h.cancel = nil
}

// waitStatus waits for the control socket and returns the status.
func (h *harness) waitStatus() *StatusReport {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := h.client.Status(context.Background())
		if err == nil {
			var st StatusReport
			if err := json.Unmarshal(raw, &st); err != nil {
				h.t.Fatal(err)
			}
			return &st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("daemon not answering: %v", err)
		}
		select {
		case err := <-h.done:
			h.t.Fatalf("daemon exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *harness) get(path string) string {
	h.t.Helper()
	code, body, err := h.apache.Get(path)
	if err != nil || code != 200 {
		h.t.Fatalf("GET %s = %d %q %v\n%s", path, code, body, err, h.apache.Log())
	}
	return body
}

// load sends requests through Apache from 4 clients until stop is closed
// (bounded by 60 s) and returns totals.
func (h *harness) load(path string, stop <-chan struct{}) (total, failed *int64, wait func()) {
	var t, f int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(h.apache.URL(path))
				atomic.AddInt64(&t, 1)
				if err != nil {
					if atomic.AddInt64(&f, 1) <= 5 {
						fmt.Fprintf(os.Stderr, "load: GET %s failed at %s: %v\n", path, time.Now().UTC().Format("15:04:05.000"), err)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					if atomic.AddInt64(&f, 1) <= 5 {
						fmt.Fprintf(os.Stderr, "load: GET %s answered %d at %s\n", path, resp.StatusCode, time.Now().UTC().Format("15:04:05.000"))
					}
				}
			}
		}()
	}
	return &t, &f, wg.Wait
}

func TestRunServesThroughApache(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/app/", ""))
	st := h.waitStatus()
	if len(st.Backends) != 1 || st.Backends[0].PID == 0 || !st.Backends[0].Ready {
		t.Fatalf("status = %+v", st)
	}
	if st.ConfigFile != h.cfgPath {
		t.Errorf("status names config file %q, want %q", st.ConfigFile, h.cfgPath)
	}
	if q := st.Backends[0].Queues; len(q) != 1 || q[0].Backlog == 0 {
		t.Errorf("queues = %+v", q)
	}
	if body := h.get("/app/x"); !strings.Contains(body, "hello from pid") {
		t.Fatalf("body = %q", body)
	}
	sock := filepath.Join(h.dir, "s", "app.sock")
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	sys := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || sys.Uid != 0 || sys.Gid != 33 {
		t.Errorf("socket %s: mode %v uid %d gid %d", sock, fi.Mode(), sys.Uid, sys.Gid)
	}
	di, _ := os.Stat(filepath.Join(h.dir, "s"))
	if di.Mode()&os.ModeSetgid == 0 || di.Mode().Perm() != 0o750 {
		t.Errorf("socket_dir mode = %v", di.Mode())
	}

	// Stopping leaves the socket file in place (Apache then gets refused
	// connections, not missing files, and the next start sweeps it).
	h.stop()
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("socket file gone after stop: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(h.dir, "ctl")); err == nil {
		t.Error("control socket left behind after stop")
	}
}

func TestRestartUnderLoadDropsNothing(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/", ""))
	before := h.waitStatus().Backends[0].PID
	stop := make(chan struct{})
	total, failed, wait := h.load("/", stop)
	time.Sleep(time.Second)
	for i := 0; i < 3; i++ {
		if err := h.client.Restart(context.Background(), "app"); err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wait()
	t.Logf("3 restarts under load: %d requests, %d failed", *total, *failed)
	if *failed != 0 || *total < 50 {
		t.Fatalf("%d of %d requests failed during restarts\n%s", *failed, *total, h.apache.Log())
	}
	if after := h.waitStatus().Backends[0].PID; after == before || after == 0 {
		t.Errorf("pid %d -> %d: not restarted", before, after)
	}
	if err := h.client.Restart(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), `no backend named "nope"`) {
		t.Errorf("restart of unknown backend: %v", err)
	}
}

func TestReloadAppliesDifference(t *testing.T) {
	h := newHarness(t, backendHCL("a", "/a/", "")+backendHCL("b", "/b/", ""))
	st := h.waitStatus()
	pidA, pidB := st.Backends[0].PID, st.Backends[1].PID

	// Remove b, change a's environment (replace), add c.
	h.write(backendHCL("a", "/a/", `environment = { GREETING = "x" }`) + backendHCL("c", "/c/", ""))
	if err := h.client.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	st = h.waitStatus()
	names := []string{}
	for _, b := range st.Backends {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "a,c" {
		t.Fatalf("backends after reload = %v", names)
	}
	if st.Backends[0].PID == pidA {
		t.Error("changed backend a kept its process")
	}
	if _, err := os.Lstat(filepath.Join(h.dir, "s", "b.sock")); err == nil {
		t.Error("removed backend b's socket is still there")
	}
	if err := syscall.Kill(pidB, 0); err == nil {
		t.Errorf("removed backend b's process %d still runs", pidB)
	}
	h.get("/c/")
	h.get("/a/")
	if code, _, _ := h.apache.Get("/b/"); code == 200 {
		t.Error("Apache still routes /b/")
	}

	// An unchanged reload touches nothing.
	pidC := st.Backends[1].PID
	if err := h.client.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.waitStatus().Backends[1].PID != pidC {
		t.Error("unchanged backend c was restarted")
	}

	// A broken config is refused with its position; the old one serves on.
	os.WriteFile(h.cfgPath, []byte("backend \"a\" {\n  bogus = 1\n}\n"), 0o644)
	err := h.client.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "sv.hcl:2") {
		t.Fatalf("broken reload = %v", err)
	}
	h.get("/c/")
	if st := h.waitStatus(); !strings.Contains(st.LastReloadError, "bogus") || len(st.Backends) != 2 {
		t.Errorf("status after broken reload = %+v", st)
	}

	// A new backend that never becomes ready is rolled back.
	h.write(backendHCL("a", "/a/", `environment = { GREETING = "x" }`) + backendHCL("c", "/c/", "") +
		`backend "bad" {
  command = ["/bin/false"]
  mount   = "/bad/"
  user    = "www-data"
  ready { timeout = "2s" }
}
`)
	if err := h.client.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("reload with a failing backend = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(h.dir, "s", "bad.sock")); err == nil {
		t.Error("rolled-back backend's socket left behind")
	}
	if n := len(h.waitStatus().Backends); n != 2 {
		t.Errorf("%d backends after a rolled-back reload, want 2", n)
	}
	h.get("/c/")
}

// The metrics show the accept queue growing while a stopped backend leaves
// connections waiting, and they drain once it runs again.
func TestMetricsQueueGrows(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/", ""))
	pid := h.waitStatus().Backends[0].PID
	sock := filepath.Join(h.dir, "s", "app.sock")
	queue := func() string {
		t.Helper()
		text, err := h.client.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "sockvisor_socket_queue_length{") && strings.Contains(l, sock) {
				return l[strings.LastIndexByte(l, ' ')+1:]
			}
		}
		t.Fatalf("no queue metric for %s in:\n%s", sock, text)
		return ""
	}
	if q := queue(); q != "0" {
		t.Fatalf("idle queue = %s", q)
	}
	// Freeze the whole backend (master and workers) so nothing accepts.
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-pid, syscall.SIGCONT)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(n int) {
		for i := 0; i < n; i++ {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	}
	dial(3)
	if q := queue(); q != "3" {
		t.Errorf("queue with 3 waiting = %s", q)
	}
	dial(4)
	if q := queue(); q != "7" {
		t.Errorf("queue with 7 waiting = %s", q)
	}
	if text, _ := h.client.Metrics(context.Background()); !strings.Contains(text, `sockvisor_backend_ready{backend="app"} 1`) {
		t.Errorf("metrics lack readiness:\n%s", text)
	}
	// Idle clients would each pin a sync worker; hang up, then resume.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	syscall.Kill(-pid, syscall.SIGCONT)
	deadline := time.Now().Add(10 * time.Second)
	for queue() != "0" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if q := queue(); q != "0" {
		t.Errorf("queue after the backend resumed = %s", q)
	}
}
