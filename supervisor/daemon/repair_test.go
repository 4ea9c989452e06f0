package daemon

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// Issue [K] item 3: one unprivileged shutdown(2) of the shared listener by
// a backend used to kill the socket for good (Gunicorn crash-looped in
// accept, clients were refused). Now the next backend exit replaces the
// socket at the same path and serving resumes within a restart back-off.
func TestShutDownSocketIsReplaced(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/python3")
	h := newHarness(t, backendHCL("app", "/app/", "restart {\n min_delay = \"100ms\"\n max_delay = \"1s\"\n }"))
	h.get("/app/")
	h.d.mu.Lock()
	var l interface{ File() *os.File }
	for _, s := range h.d.socks {
		l = s
	}
	h.d.mu.Unlock()
	fd, err := unix.FcntlInt(l.File().Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	dup := os.NewFile(uintptr(fd), "dup")
	cmd := exec.Command("/usr/bin/python3", "-c", "import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RDWR)")
	cmd.ExtraFiles = []*os.File{dup}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 33, Gid: 33, Groups: []uint32{}}}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	dup.Close()
	if err != nil {
		t.Fatalf("shutdown helper: %v %s", err, out)
	}
	shut := time.Now()
	deadline := shut.Add(30 * time.Second)
	for {
		code, body, err := h.apache.Get("/app/")
		if err == nil && code == 200 && strings.Contains(body, "hello") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not serving 30 s after the socket was shut down: %d %v\n%s", code, err, h.apache.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("serving again %v after the shutdown", time.Since(shut).Round(time.Millisecond))
}
