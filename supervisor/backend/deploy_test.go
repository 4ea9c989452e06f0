package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

const (
	uvicornBin = "/usr/bin/uvicorn"
	pumaBin    = "/usr/bin/puma"
)

// deployCase is a server whose app can be swapped for a broken one.
type deployCase struct {
	name string
	bins []string
	hcl  func(e *env) string
	// good and broken install the working and the broken app.
	good, broken func(t *testing.T, e *env)
	// tail is a substring of a line the broken process writes.
	tail string
	// procs is how many processes the group has once fully booted.
	procs int
	// reload deploys with Reload (reload_signal = "replace").
	reload bool
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var deployCases = []deployCase{
	{
		// Without --preload the arbiter sends READY=1 before its workers
		// import the app: READY=1 alone would pass a broken deploy.
		name: "gunicorn", bins: []string{gunicornBin},
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "gunicorn"
command = [%q, "--workers", "2", "--chdir", %q, "app:app"]`, gunicornBin, e.dir)
		},
		good: func(t *testing.T, e *env) {
			copyFile(t, filepath.Join("testdata", "app.py"), filepath.Join(e.dir, "app.py"), 0o644)
		},
		broken: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.dir, "app.py"), "raise RuntimeError('broken app')\n")
		},
		tail: "Worker failed to boot",
		// Every worker must have imported the good app before it is
		// broken: a gunicorn without --preload imports it in each worker
		// it (re)spawns, so a late worker of the old one would die too.
		procs: 3,
	},
	{
		// With --preload the arbiter imports the app itself.
		name: "gunicorn-preload", bins: []string{gunicornBin},
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "gunicorn"
command = [%q, "--preload", "--workers", "2", "--chdir", %q, "app:app"]`, gunicornBin, e.dir)
		},
		good: func(t *testing.T, e *env) {
			copyFile(t, filepath.Join("testdata", "app.py"), filepath.Join(e.dir, "app.py"), 0o644)
		},
		broken: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.dir, "app.py"), "raise RuntimeError('broken app')\n")
		},
		tail:  "broken app",
		procs: 3,
	},
	{
		// --need-app: without it uWSGI keeps running without the app and
		// answers 500, and the deploy fails only at ready.timeout.
		name: "uwsgi-need-app", bins: []string{uwsgiBin, "/usr/lib/uwsgi/plugins/python3_plugin.so"},
		hcl: func(e *env) string {
			return fmt.Sprintf(`preset = "uwsgi"
protocol = "http"
command = [%q, "--need-app", "--wsgi-file", %q, "--processes", "2", "--disable-logging"]`, uwsgiBin, filepath.Join(e.dir, "app.py"))
		},
		good: func(t *testing.T, e *env) {
			copyFile(t, filepath.Join("testdata", "app.py"), filepath.Join(e.dir, "app.py"), 0o644)
		},
		broken: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.dir, "app.py"), "raise RuntimeError('broken app')\n")
		},
		tail:  "GAME OVER",
		procs: 3,
	},
	{
		name: "uvicorn", bins: []string{uvicornBin},
		hcl: func(e *env) string {
			return fmt.Sprintf(`command = [%q, "--fd", "3", "--app-dir", %q, "asgi:app"]`, uvicornBin, e.dir)
		},
		good: func(t *testing.T, e *env) {
			copyFile(t, filepath.Join("testdata", "asgi.py"), filepath.Join(e.dir, "asgi.py"), 0o644)
		},
		broken: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.dir, "asgi.py"), "def app(:\n")
		},
		tail: "SyntaxError",
	},
	{
		// Socket activation: Puma adopts the LISTEN_FDS socket that
		// matches its -b path.
		name: "puma", bins: []string{pumaBin},
		hcl: func(e *env) string {
			return fmt.Sprintf(`command = [%q, "-b", "unix://%s/app.sock", %q]`, pumaBin, e.dir, filepath.Join(e.dir, "config.ru"))
		},
		good: func(t *testing.T, e *env) {
			copyFile(t, filepath.Join("testdata", "config.ru"), filepath.Join(e.dir, "config.ru"), 0o644)
		},
		broken: func(t *testing.T, e *env) {
			writeFile(t, filepath.Join(e.dir, "config.ru"), "raise 'broken app'\n")
		},
		tail: "/usr/bin/puma",
	},
	{
		// Boots for 3 s, then exits 1.
		name: "generic",
		hcl: func(e *env) string {
			return fmt.Sprintf(`command = [%q]
environment = { SV_ROLE = "switchable", SV_MODE_FILE = %q, SV_DELAY = "3s" }`, e.exe, filepath.Join(e.dir, "mode"))
		},
		good:   func(t *testing.T, e *env) { writeFile(t, filepath.Join(e.dir, "mode"), "good\n") },
		broken: func(t *testing.T, e *env) { writeFile(t, filepath.Join(e.dir, "mode"), "broken\n") },
		tail:   "RuntimeError: broken app",
	},
	{
		// The same through Reload with reload_signal = "replace".
		name: "generic-reload", reload: true,
		hcl: func(e *env) string {
			return fmt.Sprintf(`command = [%q]
reload_signal = "replace"
environment = { SV_ROLE = "switchable", SV_MODE_FILE = %q, SV_DELAY = "3s" }`, e.exe, filepath.Join(e.dir, "mode"))
		},
		good:   func(t *testing.T, e *env) { writeFile(t, filepath.Join(e.dir, "mode"), "good\n") },
		broken: func(t *testing.T, e *env) { writeFile(t, filepath.Join(e.dir, "mode"), "broken\n") },
		tail:   "RuntimeError: broken app",
	},
}

var servedPID = regexp.MustCompile(`^(?:ok |pid=)(\d+)`)

// servedBy asks the socket once and returns the process group of the
// process that answered.
func servedBy(t *testing.T, path string) int {
	t.Helper()
	body := fetch(t, path, "/")
	m := servedPID.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("answer %q names no pid", body)
	}
	pid, _ := strconv.Atoi(m[1])
	st, err := procfs.ReadStat(pid)
	if err != nil {
		t.Fatalf("process %d that answered: %v", pid, err)
	}
	return st.PGID
}

// TestBrokenDeploy: for each server, a Restart (or Reload that replaces)
// onto a broken app fails
// fast (well under ready.timeout) with the exit status and the server's
// own last words, while the old process keeps its pid and serves every
// request; a Restart onto a good app then replaces it and the new process
// serves.
func TestBrokenDeploy(t *testing.T) {
	testutil.NeedRoot(t)
	for _, c := range deployCases {
		t.Run(c.name, func(t *testing.T) {
			testutil.NeedBinary(t, c.bins...)
			e := newEnv(t)
			c.good(t, e)
			cfg := e.parse(fmt.Sprintf("backend \"app\" {\n%s\nmount = \"\"\nstop_timeout = \"10s\"\nready { timeout = \"30s\" }\n}\n", c.hcl(e)))
			b := cfg.Backends[0]
			socks := e.sockets(b)
			path := socks[0].Path()
			be := e.start(b, socks, Options{})
			waitReady(t, be, 30*time.Second)
			old := be.Status().PID
			if g := servedBy(t, path); g != old {
				t.Fatalf("answered by group %d; want the backend's %d", g, old)
			}
			for deadline := time.Now().Add(20 * time.Second); len(procfs.GroupMembers(old)) < c.procs; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("group %d has %v; want %d processes", old, procfs.GroupMembers(old), c.procs)
				}
			}
			time.Sleep(time.Second) // the last worker imports the app

			c.broken(t, e)
			stop := make(chan struct{})
			res, wait := runLoad(2, httpRequester(path, "/"), stop)
			start := time.Now()
			deploy := be.Restart
			if c.reload {
				deploy = be.Reload
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := deploy(ctx)
			cancel()
			took := time.Since(start)
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wait()
			fmt.Fprintf(os.Stderr, "MEASURE %s broken deploy: Restart failed after %v; old process served %s\n", c.name, took.Round(time.Millisecond), res)
			se := asStartError(t, err)
			if se.Exit == nil || se.Exit.Code == 0 || !se.Replacing || !strings.Contains(err.Error(), "the old process keeps serving") {
				t.Errorf("Restart: %v; want a failed replacement with its exit status", err)
			}
			if !tailHas(se.Tail, c.tail) {
				t.Errorf("Tail %q; want a line with %q", se.Tail, c.tail)
			}
			if took > 10*time.Second {
				t.Errorf("Restart took %v; want the failure reported well before ready.timeout 30s", took)
			}
			if res.failed.Load() != 0 || res.ok.Load() == 0 {
				t.Errorf("requests during the broken deploy: %s; want none failed", res)
			}
			if st := be.Status(); st.PID != old || !st.Ready {
				t.Errorf("after the broken deploy pid %d ready %t; want the old %d, ready", st.PID, st.Ready, old)
			}
			if g := servedBy(t, path); g != old {
				t.Errorf("answered by group %d after the broken deploy; want the old %d", g, old)
			}

			c.good(t, e)
			ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := deploy(ctx); err != nil {
				t.Fatalf("deploying the good app: %v", err)
			}
			st := be.Status()
			if st.PID == old || !st.Ready {
				t.Fatalf("after the good deploy pid %d ready %t; want a new ready process", st.PID, st.Ready)
			}
			// The old process may still be finishing; wait until only the
			// new one answers.
			deadline := time.Now().Add(15 * time.Second)
			for len(procfs.GroupMembers(old)) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if g := servedBy(t, path); g != st.PID {
				t.Errorf("answered by group %d after the good deploy; want the new %d", g, st.PID)
			}
		})
	}
}

func tailHas(tail []string, sub string) bool {
	for _, l := range tail {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
