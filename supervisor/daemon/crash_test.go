package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/control"
)

// buildSockvisor builds the real binary once per test.
func buildSockvisor(t *testing.T, dir string) string {
	t.Helper()
	testutil.NeedBinary(t, "go")
	bin := filepath.Join(dir, "sockvisor")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/sockvisor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runningSV is one `sockvisor run` process.
type runningSV struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startSV(t *testing.T, bin, cfg string, log io.Writer) *runningSV {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own group, so the test's signals never reach it by accident; its
	// backends make their own groups anyway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &runningSV{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// waitRunning waits until the daemon at ctl reports phase "running".
func waitRunning(t *testing.T, ctl string, s *runningSV) *StatusReport {
	t.Helper()
	c := control.NewClient(ctl)
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := c.Status(context.Background())
		if err == nil {
			var st StatusReport
			if json.Unmarshal(raw, &st) == nil && st.Phase == "running" {
				return &st
			}
		}
		select {
		case <-s.done:
			t.Fatalf("sockvisor exited before it was running: %v", s.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockvisor not running after 60 s: %v", err)
		}
	}
}

// unixLoad sends GETs straight to sock from 4 clients until stop is closed
// (at most 90 s and 200,000 requests) and counts failures.
func unixLoad(sock string, stop <-chan struct{}) (total, failed *atomic.Int64, errs *sync.Map, wait func()) {
	total, failed, errs = new(atomic.Int64), new(atomic.Int64), new(sync.Map)
	var wg sync.WaitGroup
	deadline := time.Now().Add(90 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for time.Now().Before(deadline) && total.Load() < 200000 {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				resp, err := c.Get("http://backend/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					errs.Store(err.Error(), true)
				}
			}
		}()
	}
	return total, failed, errs, wg.Wait
}

// Issue [K] item 4: without systemd, kill -9 of sockvisor used to leave a
// next `sockvisor run` unable to start ("socket ... is in use: pid <the
// dead sockvisor>"). Now the new sockvisor takes the sockets back from the
// backends the dead one left, starts fresh ones and retires the old ones
// gracefully: no request fails across the crash and the restart.
func TestCrashRecoveryWithoutSystemd(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	dir := testutil.ShortDir(t)
	bin := buildSockvisor(t, dir)
	apps, _ := filepath.Abs(helloApp)
	sockDir := filepath.Join(dir, "s")
	sock := filepath.Join(sockDir, "app.sock")
	ctl := filepath.Join(dir, "ctl")
	cfg := filepath.Join(dir, "sv.hcl")
	src := fmt.Sprintf(`socket_dir = %q
control_socket = %q
apache {
  config_file = %q
  reload = "none"
}
backend "app" {
  preset  = "gunicorn"
  command = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", %q, "hello:app"]
  mount   = ""
  user    = "www-data"
  stop_timeout = "10s"
}
`, sockDir, ctl, filepath.Join(dir, "apache.conf"), apps)
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	state := statePath(backend.DefaultStateDir, sockDir)
	t.Cleanup(func() { os.Remove(state) })
	log := &testutil.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sockvisor output:\n%s", log.String())
		}
	})

	first := startSV(t, bin, cfg, log)
	st := waitRunning(t, ctl, first)
	oldPID := st.Backends[0].PID
	// The leftovers are reparented to init when sockvisor dies: kill their
	// groups at the end whatever happens.
	t.Cleanup(func() { killGroupIfAlive(oldPID) })
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file: %v", err)
	}

	stop := make(chan struct{})
	total, failed, errs, wait := unixLoad(sock, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wait()
	}()
	time.Sleep(time.Second)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	killedAt := time.Now()
	time.Sleep(500 * time.Millisecond) // the orphans keep serving meanwhile
	if !sameGroupAlive(oldPID) {
		t.Fatal("the backend died with sockvisor")
	}

	second := startSV(t, bin, cfg, log)
	st = waitRunning(t, ctl, second)
	newPID := st.Backends[0].PID
	t.Cleanup(func() { killGroupIfAlive(newPID) })
	took := time.Since(killedAt)
	if newPID == oldPID || newPID == 0 {
		t.Fatalf("backend pid %d after the restart (was %d)", newPID, oldPID)
	}
	// The old generation was stopped gracefully before "running".
	for deadline := time.Now().Add(15 * time.Second); sameGroupAlive(oldPID); {
		if time.Now().After(deadline) {
			t.Fatalf("leftover backend %d still running", oldPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wait()
	var kinds []string
	errs.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
	t.Logf("kill -9 of sockvisor and a restart without systemd: %d requests, %d failed; running again %v after the kill", total.Load(), failed.Load(), took.Round(time.Millisecond))
	if failed.Load() != 0 || total.Load() < 100 {
		t.Fatalf("%d of %d requests failed: %s", failed.Load(), total.Load(), strings.Join(kinds, "; "))
	}
	if !strings.Contains(log.String(), "took the socket back") {
		t.Error("the new sockvisor did not say it took the socket back")
	}
}

// sameGroupAlive reports whether process group pgid has a live (not
// zombie) member.
func sameGroupAlive(pgid int) bool { return len(procfs.GroupMembers(pgid)) > 0 }

func killGroupIfAlive(pgid int) {
	if pgid > 0 && sameGroupAlive(pgid) {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
