package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// asStartError fails the test unless err is a *StartError wrapping
// ErrNotReady.
func asStartError(t *testing.T, err error) *StartError {
	t.Helper()
	var se *StartError
	if !errors.As(err, &se) || !errors.Is(err, ErrNotReady) {
		t.Fatalf("error %v (%T); want a *StartError wrapping ErrNotReady", err, err)
	}
	return se
}

// TestWaitReadyStartError: a first start whose process exits makes
// WaitReady return at once (not at ctx's end, not at ready.timeout) with a
// *StartError holding the exit status and the process's last output.
func TestWaitReadyStartError(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "boot-fail", SV_DELAY = "300ms" }
mount = ""
ready { timeout = "30s" }
restart { min_delay = "10s" }
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	be := e.start(b, e.sockets(b), Options{})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := be.WaitReady(ctx)
	took := time.Since(start)
	se := asStartError(t, err)
	if took > 3*time.Second {
		t.Errorf("WaitReady took %v; want it to return as soon as the process exited", took)
	}
	if se.Backend != "app" || se.Instance != 0 || se.PID == 0 || se.Exit == nil || se.Exit.Code != 1 || se.Replacing {
		t.Errorf("StartError %+v; want backend app, instance 0, a pid, exit 1, not replacing", se)
	}
	if !slices.Contains(se.Tail, "RuntimeError: broken app") || !slices.Contains(se.Tail, "booting") {
		t.Errorf("Tail %q; want the process's last stdout and stderr lines", se.Tail)
	}
	t.Logf("WaitReady after %v: %v", took.Round(time.Millisecond), err)
}

func TestOutputTailBounds(t *testing.T) {
	var tl outputTail
	long := string(make([]byte, 2*TailLineBytes))
	for i := range 3 * TailLines {
		tl.add(fmt.Sprint(i))
	}
	tl.add(long)
	got, _ := tl.lines()
	if len(got) != TailLines || got[0] != fmt.Sprint(2*TailLines+1) || len(got[TailLines-1]) != TailLineBytes {
		t.Errorf("tail has %d lines, first %q, last %d bytes; want %d lines, the newest, each at most %d bytes", len(got), got[0], len(got[len(got)-1]), TailLines, TailLineBytes)
	}
}

// The first error line is kept when a second report pushes it out of the
// last lines (gunicorn's arbiter after a worker's SyntaxError), and not
// repeated while the tail still holds it.
func TestOutputTailFirstError(t *testing.T) {
	var tl outputTail
	for _, l := range []string{"[INFO] Booting worker", `  File "/srv/app/app.py", line 2`, "    def (", "SyntaxError: invalid syntax"} {
		tl.add(l)
	}
	if tail, first := tl.lines(); first != "" || !slices.Contains(tail, "SyntaxError: invalid syntax") {
		t.Errorf("lines() = %q, %q; want the error in the tail and no separate first error", tail, first)
	}
	for i := range TailLines {
		tl.add(fmt.Sprintf("  File \"arbiter.py\", line %d, in halt", i))
	}
	tl.add("gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>")
	if tail, first := tl.lines(); first != "SyntaxError: invalid syntax" || slices.Contains(tail, first) {
		t.Errorf("lines() = %q, %q; want the SyntaxError kept as the first error", tail, first)
	}
	// Once the process is proven ready, its lines are no longer searched.
	var served outputTail
	served.proven()
	served.add("KeyError: 'user'")
	for range TailLines {
		served.add("GET / 200")
	}
	if _, first := served.lines(); first != "" {
		t.Errorf("a ready process's error line %q was kept as its first error", first)
	}
	se := &StartError{Backend: "app", PID: 7, Exit: &Exit{Code: 3}, FirstError: "SyntaxError: invalid syntax", Tail: []string{"x"}}
	if msg := se.Error(); !strings.Contains(msg, `its first error: "SyntaxError: invalid syntax"`) {
		t.Errorf("StartError text %q does not name the first error", msg)
	}
	for line, want := range map[string]bool{
		"ModuleNotFoundError: No module named 'app'":                   true,
		"django.core.exceptions.ImproperlyConfigured: SECRET_KEY":      false,
		"config.ru:3:in `block in <main>': boom (RuntimeError)":        true,
		"PHP Parse error:  syntax error, unexpected end of file":       true,
		"[2026-12-01 12:00:00 +0000] [42] [ERROR] Exception in worker": false,
		"KeyError":      true,
		"no error here": false,
	} {
		if got := errorLine.MatchString(line); got != want {
			t.Errorf("errorLine matches %q = %v, want %v", line, got, want)
		}
	}
}

// userOwn runs b as the test's user when the test is not root.
func userOwn(b *config.Backend) {
	if os.Geteuid() != 0 {
		b.UID, b.GID, b.Groups = os.Getuid(), os.Getgid(), nil
	}
}

// startLeftover starts a process outside any backend that serves HTTP on
// sock, as one left by a crashed sockvisor would, and waits until it
// answers.
func startLeftover(t *testing.T, e *env, sock Socket) int {
	t.Helper()
	cmd := exec.Command(e.exe)
	cmd.Env = []string{"SV_ROLE=leftover"}
	cmd.ExtraFiles = []*os.File{sock.File()}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	testutil.StartGroup(t, cmd)
	want := fmt.Sprintf("pid=%d ", cmd.Process.Pid)
	if got := fetch(t, sock.Path(), "/whoami"); !strings.HasPrefix(got, want) {
		t.Fatalf("leftover answers %q; want %q", got, want)
	}
	return cmd.Process.Pid
}

// TestLeftoverIsNotReadiness: on a socket a leftover process still
// accepts on, a first start whose process never accepts is not ready (the
// leftover's answers do not count), and one whose process serves is.
func TestLeftoverIsNotReadiness(t *testing.T) {
	t.Run("never-accepts", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "silent" }
mount = ""
ready { timeout = "2s" }
restart { min_delay = "30s" }
}
`, e.exe))
		b := cfg.Backends[0]
		userOwn(b)
		socks := e.sockets(b)
		startLeftover(t, e, socks[0])
		be := e.start(b, socks, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := be.WaitReady(ctx)
		se := asStartError(t, err)
		if se.Exit != nil || !strings.Contains(err.Error(), "accepted by processes outside the new process group") {
			t.Errorf("WaitReady: %v; want not ready, naming the foreign acceptor", err)
		}
		if st := be.Status(); st.Ready {
			t.Errorf("status %+v; want not ready", st)
		}
	})
	t.Run("serves", func(t *testing.T) {
		e := newEnv(t)
		cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "http" }
mount = ""
ready { timeout = "10s" }
}
`, e.exe))
		b := cfg.Backends[0]
		userOwn(b)
		socks := e.sockets(b)
		startLeftover(t, e, socks[0])
		be := e.start(b, socks, Options{})
		waitReady(t, be, 15*time.Second)
	})
}

// queuedProbes samples the listen queue of sock until stop and returns the
// most connections it ever held.
func queuedProbes(t *testing.T, sock Socket, stop <-chan struct{}) <-chan int {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(sock.File().Fd()), &st); err != nil {
		t.Fatal(err)
	}
	out := make(chan int, 1)
	go func() {
		most := 0
		for {
			if pend, err := sockdiag.Pending(st.Ino); err == nil && len(pend) > most {
				most = len(pend)
			}
			select {
			case <-stop:
				out <- most
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return out
}

// TestProbesDoNotPileUp: behind processes that never accept, whether one
// waits out ready.timeout or each crashes after a while, the listen queue
// never holds more than one probe connection.
func TestProbesDoNotPileUp(t *testing.T) {
	for _, c := range []struct{ name, delay, timeout string }{
		{"stuck", "1m", "1s"},
		{"crash-loop", "300ms", "30s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "silent", SV_DELAY = %q }
mount = ""
ready { timeout = %q }
restart {
  min_delay = "50ms"
  max_delay = "100ms"
}
}
`, e.exe, c.delay, c.timeout))
			b := cfg.Backends[0]
			userOwn(b)
			socks := e.sockets(b)
			stop := make(chan struct{})
			most := queuedProbes(t, socks[0], stop)
			be := e.start(b, socks, Options{})
			// At least 3 failed starts: the parked probe must carry over.
			for deadline := time.Now().Add(15 * time.Second); be.Status().Restarts < 3 && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			close(stop)
			st := be.Status()
			n := <-most
			if n > 1 {
				t.Errorf("listen queue held %d connections; want at most 1 probe", n)
			}
			if st.Ready || st.Restarts < 3 {
				t.Errorf("status %+v; want not ready after at least 3 failed starts", st)
			}
			t.Logf("%d failed starts, at most %d connection in the listen queue", st.Restarts, n)
		})
	}
}

// TestDescendantOutsideGroup: a worker that left the new process's group
// (setsid) but descends from it proves readiness; nothing else answers.
func TestDescendantOutsideGroup(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "setsid-parent" }
mount = ""
ready { timeout = "10s" }
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	be := e.start(b, e.sockets(b), Options{})
	waitReady(t, be, 15*time.Second)
}

// TestRestartStuck: a new process that neither exits nor accepts fails
// the Restart at ready.timeout with a *StartError (no exit), and the old
// process keeps serving with its pid.
func TestRestartStuck(t *testing.T) {
	e := newEnv(t)
	mode := filepath.Join(e.dir, "mode")
	writeFile(t, mode, "good\n")
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "switchable", SV_MODE_FILE = %q }
mount = ""
stop_timeout = "5s"
ready { timeout = "2s" }
}
`, e.exe, mode))
	b := cfg.Backends[0]
	userOwn(b)
	socks := e.sockets(b)
	be := e.start(b, socks, Options{})
	waitReady(t, be, 20*time.Second)
	old := be.Status().PID
	writeFile(t, mode, "stuck\n")
	stop := make(chan struct{})
	res, wait := runLoad(2, httpRequester(socks[0].Path(), "/"), stop)
	start := time.Now()
	err := be.Restart(context.Background())
	took := time.Since(start)
	close(stop)
	wait()
	se := asStartError(t, err)
	if se.Exit != nil || !se.Replacing || !strings.Contains(err.Error(), "within ready.timeout 2s") {
		t.Errorf("Restart: %v; want not ready within ready.timeout, the old process serving", err)
	}
	if took < 2*time.Second || took > 6*time.Second {
		t.Errorf("Restart took %v; want about ready.timeout (2s)", took)
	}
	if res.failed.Load() != 0 {
		t.Errorf("requests during the stuck deploy: %s; want none failed", res)
	}
	if st := be.Status(); st.PID != old || !st.Ready {
		t.Errorf("after the stuck deploy pid %d ready %t; want the old %d, ready", st.PID, st.Ready, old)
	}
}
