package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestRunBackendFDs reproduces issue [K] item 5 end to end: after
// `exec 7>>/root/secret.log; sockvisor run`, the www-data backend had fd 7
// open for writing. Here sockvisor inherits fd 7 on a root-only file; the
// backend (running as nobody) lists its own fds and must hold only 0-3.
func TestRunBackendFDs(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "/usr/bin/python3")
	dir := testutil.ShortDir(t)
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o777)
	report := filepath.Join(out, "fds.json")
	app := filepath.Join(dir, "app.py")
	os.WriteFile(app, []byte(fmt.Sprintf(`import json, os, socket
fds = {}
for name in os.listdir("/proc/self/fd"):
    try:
        fds[name] = os.readlink("/proc/self/fd/" + name)
    except OSError:
        pass
with open(%q + ".tmp", "w") as f:
    json.dump(fds, f)
os.rename(%q + ".tmp", %q)
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    try:
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    c.close()
`, report, report, report)), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf(`socket_dir     = %q
socket_group   = "www-data"
control_socket = %q
apache {
  reload = "none"
}
backend "py" {
  command      = ["/usr/bin/python3", %q]
  mount        = ""
  user         = "nobody"
  stop_timeout = "2s"
}
`, filepath.Join(dir, "s"), filepath.Join(dir, "ctl"), app))
	secret, err := os.OpenFile(filepath.Join(dir, "secret.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer secret.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	cmd := exec.Command(os.Args[0], "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "SV_CLI_MAIN=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.ExtraFiles = []*os.File{devnull, devnull, devnull, devnull, secret} // fd 7
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	var fds map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(report); err == nil && json.Unmarshal(b, &fds) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the backend never reported its fds")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for fd, target := range fds {
		switch {
		case fd == "0" || fd == "1" || fd == "2":
		case fd == "3" && strings.HasPrefix(target, "socket:"):
		case strings.HasSuffix(target, "/fd"): // the listing's own fd
		default:
			t.Errorf("backend inherited fd %s -> %s; want only 0-2 and the socket at 3", fd, target)
		}
	}
}
