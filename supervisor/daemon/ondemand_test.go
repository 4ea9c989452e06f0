package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/backend"
)

// waitAll polls the status until every backend satisfies ok.
func (h *harness) waitAll(d time.Duration, what string, ok func(BackendReport) bool) *StatusReport {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := h.waitStatus()
		bad := []string{}
		for _, b := range st.Backends {
			if !ok(b) {
				bad = append(bad, fmt.Sprintf("%s:%s", b.Name, b.State))
			}
		}
		if len(bad) == 0 {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %s not every backend is %s: %v", d, what, bad)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func isIdle(b BackendReport) bool { return b.State == backend.StateIdle && b.PID == 0 }

// TestOnDemandFiftyGunicorn: 50 on-demand Gunicorn backends. sockvisor
// reaches its running phase (READY=1) with no backend process; each
// one's first request through Apache succeeds; after idle_timeout (5 s)
// their processes are gone and status shows idle with last_ran_at; a
// restart of an idle backend does nothing and says so.
func TestOnDemandFiftyGunicorn(t *testing.T) {
	const n = 50
	var hcl strings.Builder
	for i := range n {
		hcl.WriteString(backendHCL(fmt.Sprintf("a%02d", i), fmt.Sprintf("/a%02d/", i), `start = "on-demand"
  idle_timeout = "5s"`))
	}
	// --workers 2 for 50 apps is 150 processes; one worker keeps the
	// boots of 50 apps within the test budget on 2 cores.
	src := strings.ReplaceAll(hcl.String(), `"--workers", "2"`, `"--workers", "1"`)
	start := time.Now()
	h := newHarness(t, src)
	t.Logf("running phase after %s", time.Since(start).Round(time.Millisecond))
	st := h.waitStatus()
	if len(st.Backends) != n {
		t.Fatalf("%d backends, want %d", len(st.Backends), n)
	}
	for _, b := range st.Backends {
		if !isIdle(b) {
			t.Fatalf("backend %s is %s with pid %d at READY; want idle without a process", b.Name, b.State, b.PID)
		}
	}
	msg, err := h.client.RestartMessage(context.Background(), "a00")
	if err != nil || !strings.Contains(msg, "idle") {
		t.Fatalf("restart of an idle backend: %q, %v; want success saying it is idle", msg, err)
	}

	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 10)
	client := &http.Client{Timeout: 60 * time.Second}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := client.Get(h.apache.URL(fmt.Sprintf("/a%02d/", i)))
			if err != nil {
				failed.Add(1)
				fmt.Fprintf(os.Stderr, "first request to a%02d: %v\n", i, err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
				fmt.Fprintf(os.Stderr, "first request to a%02d: %d\n", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d first requests failed\n%s", f, n, h.apache.Log())
	}
	var pids []int
	for _, b := range h.waitStatus().Backends {
		if b.PID != 0 {
			pids = append(pids, b.PID)
		}
	}
	t.Logf("%d first requests served in %s; %d processes running", n, time.Since(start).Round(time.Millisecond), len(pids))
	st = h.waitAll(40*time.Second, "idle again", func(b BackendReport) bool { return isIdle(b) && b.LastRunAt != nil })
	for _, pid := range pids {
		if procfs.Exists(pid) {
			t.Errorf("process %d still runs after its backend went idle", pid)
		}
	}
	m, err := h.client.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`sockvisor_backend_cold_starts_total{backend="a07"} 1`,
		`sockvisor_backend_idle_stops_total{backend="a07"} 1`,
		`sockvisor_backend_cold_start_seconds_count{backend="a07"} 1`,
		`sockvisor_backend_state{backend="a07",state="idle"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestOnDemandRequestsDuringIdleStop: 200 requests through Apache that
// arrive while an idle stop is in progress all succeed: they wait in the
// backlog and the next process serves them.
func TestOnDemandRequestsDuringIdleStop(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/app/", `start = "on-demand"
  idle_timeout = "0s"`))
	client := &http.Client{Timeout: 60 * time.Second}
	var failed atomic.Int64
	total := 0
	for round := range 4 {
		h.get("/app/") // running (a cold start on round 0)
		var wg sync.WaitGroup
		stopped := make(chan error, 1)
		go func() {
			_, err := h.client.Stop(context.Background(), "app")
			stopped <- err
		}()
		for i := range 50 {
			total++
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i*10) * time.Millisecond) // across the stop
				resp, err := client.Get(h.apache.URL("/app/"))
				if err != nil {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "round %d request %d: %v\n", round, i, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					fmt.Fprintf(os.Stderr, "round %d request %d: %d\n", round, i, resp.StatusCode)
				}
			}()
		}
		wg.Wait()
		if err := <-stopped; err != nil {
			t.Fatalf("round %d: sockvisor stop: %v", round, err)
		}
	}
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d requests racing an idle stop failed\n%s", f, total, h.apache.Log())
	}
	m, _ := h.client.Metrics(context.Background())
	if !strings.Contains(m, `sockvisor_backend_idle_stops_total{backend="app"} 4`) {
		t.Errorf("metrics do not count 4 idle stops")
	}
}

// TestOnDemandPresets: real uWSGI and PHP-FPM (pm = "ondemand" inside the
// pool: both stack) start on the first request through Apache and go
// idle after idle_timeout.
func TestOnDemandPresets(t *testing.T) {
	testutil.NeedRoot(t)
	fpm, _ := testutil.FindPHPFPM()
	if fpm == "" {
		fpm = "php-fpm"
	}
	testutil.NeedBinary(t, "/usr/bin/uwsgi", "/usr/lib/uwsgi/plugins/python3_plugin.so", fpm)
	dir := testutil.ShortDir(t)
	apps, _ := filepath.Abs(helloApp)
	docroot := filepath.Join(dir, "www")
	if err := os.MkdirAll(docroot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(docroot, "index.php"), []byte("<?php echo \"php on demand\\n\";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarnessIn(t, dir, fmt.Sprintf(`
backend "uw" {
  preset  = "uwsgi"
  command = ["/usr/bin/uwsgi", "--need-app", "--wsgi-file", %q, "--callable", "app", "--processes", "1", "--disable-logging"]
  mount   = "/uw/"
  user    = "www-data"
  stop_timeout = "5s"
  start = "on-demand"
  idle_timeout = "2s"
}
backend "php" {
  preset  = "php-fpm"
  command = [%q]
  mount   = "/php/"
  document_root = %q
  user    = "www-data"
  stop_timeout = "5s"
  start = "on-demand"
  idle_timeout = "2s"
  ready { path = "/index.php" }
  fpm { pm = "ondemand" }
}
`, filepath.Join(apps, "hello.py"), fpm, docroot))
	h.waitAll(10*time.Second, "idle", isIdle)
	h.get("/uw/")
	if body := h.get("/php/index.php"); !strings.Contains(body, "php on demand") {
		t.Fatalf("php answered %q", body)
	}
	st := h.waitStatus()
	for _, b := range st.Backends {
		if b.State != backend.StateReady && b.State != backend.StateStarting {
			t.Errorf("after the first request %s is %s; want running", b.Name, b.State)
		}
	}
	h.waitAll(20*time.Second, "idle again", func(b BackendReport) bool { return isIdle(b) && b.LastRunAt != nil })
	// And once more: the watch is armed again after an idle stop.
	h.get("/uw/")
	h.get("/php/index.php")
}
