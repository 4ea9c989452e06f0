package backend

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// Issue [K] item 6: a grandchild that calls setsid(2) and keeps fd 3 (and
// the output pipes) left the backend's process group, so Stop never
// signalled it: it kept serving after the stop and outlived sockvisor. Now
// Stop finds it by the socket and pipes it holds, stops it, and names it.
func TestStopStopsSetsidGrandchild(t *testing.T) {
	for name, redirect := range map[string]string{
		"socket and output pipes": "",
		"socket only":             " >/dev/null 2>&1",
	} {
		t.Run(name, func(t *testing.T) { testSetsidGrandchild(t, redirect) })
	}
}

func testSetsidGrandchild(t *testing.T, redirect string) {
	e := newEnv(t)
	pidDir := filepath.Join(e.dir, "pids")
	if err := os.Mkdir(pidDir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(pidDir, 0o777)
	pidFile := filepath.Join(pidDir, "stray")
	script := fmt.Sprintf(`setsid /bin/sh -c 'echo $$ > %s; exec sleep 60%s' & exec %s`, pidFile, redirect, e.exe)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = ["/bin/sh", "-c", %q]
environment = { SV_ROLE = "http" }
mount = ""
stop_timeout = "2s"
}
`, script))
	b := cfg.Backends[0]
	userOwn(b)
	logs := &testutil.SyncBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Info, Output: io.MultiWriter(logs, os.Stderr)})
	be := e.start(b, e.sockets(b), Options{Logger: log})
	waitReady(t, be, 20*time.Second)

	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; {
		if raw, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the setsid grandchild never wrote its pid")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, err := procfs.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if now, err := procfs.ReadStat(pid); err == nil && now.StartTime == st.StartTime && !now.Zombie() {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
	if main := be.Status().PID; st.PGID == main {
		t.Fatalf("grandchild %d is still in the backend's group %d; setsid did not happen", pid, main)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := be.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if now, err := procfs.ReadStat(pid); err == nil && now.StartTime == st.StartTime && !now.Zombie() {
		t.Fatalf("setsid grandchild %d still runs after Stop", pid)
	}
	if want := "pid=" + strconv.Itoa(pid); !strings.Contains(logs.String(), want) {
		t.Errorf("the stop log does not name the stray (%s)", want)
	}
}

// kill(2) on 0, 1, -1 reaches the caller's group, init, or everything.
func TestSafeKillTarget(t *testing.T) {
	for target, want := range map[int]bool{0: false, 1: false, -1: false, 2: true, -2: true, 4242: true, -4242: true} {
		if got := safeKillTarget(target); got != want {
			t.Errorf("safeKillTarget(%d) = %v, want %v", target, got, want)
		}
	}
}
