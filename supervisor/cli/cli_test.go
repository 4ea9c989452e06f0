package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestMain lets the test binary be sockvisor itself: with SV_CLI_MAIN set, or
// as the exec shim (whose environment is an allow-list that drops
// SV_CLI_MAIN), it runs Main on its arguments, so `run` is tested for real.
// Otherwise it runs the tests and fails the run on leaked goroutines or
// child processes (testutil.Main).
func TestMain(m *testing.M) {
	if os.Getenv("SV_CLI_MAIN") == "1" || (len(os.Args) > 1 && os.Args[1] == "exec-shim") {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	testutil.Main(m)
}

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "sv.hcl")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageAndVersion(t *testing.T) {
	if code, out, _ := run("--help"); code != ExitOK || !strings.Contains(out, "doctor") || strings.Contains(out, "exec-shim") {
		t.Errorf("--help: %d %q", code, out)
	}
	if code, _, errOut := run("frobnicate"); code != ExitFailure || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, out, _ := run("version"); code != ExitOK || !strings.HasPrefix(out, "sockvisor ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errOut := run("check", "--bogus"); code != ExitFailure || !strings.Contains(errOut, "--help") {
		t.Errorf("bad flag: %d %q", code, errOut)
	}
	if code, out, _ := run("restart", "--help"); code != ExitOK || !strings.Contains(out, "BACKEND") {
		t.Errorf("restart --help: %d %q", code, out)
	}
	// Every documented command has --help, and the man page lists it.
	_, man, _ := run("man")
	for name, c := range commands {
		if c.hidden {
			continue
		}
		if code, _, _ := run(name, "--help"); code != ExitOK {
			t.Errorf("%s --help exit %d", name, code)
		}
		if !strings.Contains(man, "sockvisor "+strings.ReplaceAll(name, "-", `\-`)) {
			t.Errorf("man page lacks %s", name)
		}
	}
}

// The acceptance of issue [A]: check names the limit and the length.
func TestCheckPathBudgets(t *testing.T) {
	dir := testutil.ShortDir(t)
	pad := func(total int) string { return "/run/" + strings.Repeat("p", total-len("/run/")-len("/a.sock")) }
	cases := []struct {
		total int
		mount string
		want  []string
	}{
		{108, `""`, []string{"108 bytes", "kernel limit (sun_path) is 107"}},
		{96, `"/"`, []string{"96 bytes", "Apache's limit for a ProxyPass socket is 95"}},
	}
	for _, c := range cases {
		cfg := writeConfig(t, dir, fmt.Sprintf("socket_dir = %q\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = %s\n}\n", pad(c.total), c.mount))
		code, _, errOut := run("check", "--config", cfg)
		if code != ExitProblems {
			t.Errorf("%d-byte path: exit %d, want 1", c.total, code)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%d-byte path: %q lacks %q", c.total, errOut, w)
			}
		}
		if !strings.Contains(errOut, "sv.hcl:1:") {
			t.Errorf("no file:line in %q", errOut)
		}
	}
	cfg := writeConfig(t, dir, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  handoff = \"self\"\n}\n")
	code, out, _ := run("check", "--config", cfg)
	if code != ExitOK || !strings.Contains(out, "/run/sockvisor/a.sock") || !strings.Contains(out, "can fail while it restarts") {
		t.Errorf("valid check: %d %q", code, out)
	}
	if code, _, errOut := run("check", "--config", filepath.Join(dir, "missing.hcl")); code != ExitFailure || !strings.Contains(errOut, "does not exist") {
		t.Errorf("missing config: %d %q", code, errOut)
	}
}

// The acceptance of issue [A]: a sweep removes only the stale socket.
func TestSweep(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	sdir := filepath.Join(dir, "s")
	os.Mkdir(sdir, 0o750)
	stale := filepath.Join(sdir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	live, err := net.Listen("unix", filepath.Join(sdir, "live.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	os.WriteFile(filepath.Join(dir, "target"), []byte("x"), 0o644)
	os.Symlink(filepath.Join(dir, "target"), filepath.Join(sdir, "link"))
	os.WriteFile(filepath.Join(sdir, "notes.txt"), []byte("keep"), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf("socket_dir = %q\n", sdir))

	code, out, errOut := run("sweep", "--dry-run", "--config", cfg)
	if code != ExitOK || !strings.Contains(out, "would remove") || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("dry run: %d %q %q", code, out, errOut)
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Fatal("dry run removed the stale socket")
	}
	code, out, errOut = run("sweep", "--config", cfg)
	if code != ExitOK {
		t.Fatalf("sweep: %d %q %q", code, out, errOut)
	}
	if _, err := os.Lstat(stale); err == nil {
		t.Error("stale socket kept")
	}
	for _, keep := range []string{"live.sock", "link", "notes.txt"} {
		if _, err := os.Lstat(filepath.Join(sdir, keep)); err != nil {
			t.Errorf("%s was touched: %v", keep, err)
		}
	}
	if !strings.Contains(out, fmt.Sprint(os.Getpid())) {
		t.Errorf("live socket not reported with our pid %d:\n%s", os.Getpid(), out)
	}
}

// The acceptance of issue [A]: run creates socket_dir and the sockets as
// configured and leaves the socket files after SIGTERM.
func TestRunAndSIGTERM(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	sdir := filepath.Join(dir, "s")
	// A tiny backend on the inherited fd 3: python3 accepts and answers HTTP.
	app := filepath.Join(dir, "app.py")
	os.WriteFile(app, []byte(`import socket, os
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    try:
        c.recv(4096)
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass  # a prober that hangs up early
    c.close()
`), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf(`socket_dir      = %q
socket_dir_mode = "2750"
socket_group    = "www-data"
control_socket  = %q
apache {
  reload = "none"
}
backend "py" {
  command     = ["/usr/bin/python3", %q]
  mount       = ""
  instances   = 2
  socket_mode = "0640"
  user        = "nobody"
  stop_timeout = "2s"
}
`, sdir, filepath.Join(dir, "ctl"), app))
	cmd := exec.Command(os.Args[0], "run", "--config", cfg)
	cmd.Env = append(os.Environ(), "SV_CLI_MAIN=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	// Wait for status to answer with both instances ready.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, _ := runAs(t, "status", "--config", cfg)
		if code == ExitOK && strings.Count(out, "py-1.sock") == 1 && strings.Contains(out, "ready") && !strings.Contains(out, "starting") && !strings.Contains(out, "sockvisor is") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready: %d %s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	di, err := os.Stat(sdir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o750 || di.Mode()&os.ModeSetgid == 0 || di.Sys().(*syscall.Stat_t).Gid != 33 {
		t.Errorf("socket_dir: %v gid %d", di.Mode(), di.Sys().(*syscall.Stat_t).Gid)
	}
	for _, name := range []string{"py.sock", "py-1.sock"} {
		fi, err := os.Lstat(filepath.Join(sdir, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 || st.Uid != 0 || st.Gid != 33 {
			t.Errorf("%s: %v uid %d gid %d", name, fi.Mode(), st.Uid, st.Gid)
		}
		c, err := net.Dial("unix", filepath.Join(sdir, name))
		if err != nil {
			t.Fatalf("connect %s: %v", name, err)
		}
		fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Close()
		if !strings.Contains(string(buf[:n]), "200 OK") {
			t.Errorf("%s answered %q", name, buf[:n])
		}
	}
	code, out, _ := runAs(t, "status", "--json", "--config", cfg)
	if code != ExitOK || !strings.Contains(out, `"pid"`) || !strings.Contains(out, `"restarts"`) {
		t.Errorf("status --json: %d %s", code, out)
	}

	// Issue [K] item 2: SIGHUP with a config nested 100,000 deep killed
	// the daemon (stack overflow). The reload is refused; it keeps serving.
	deep := "backend \"py\" {\n  command = " + strings.Repeat("[", 100_000) + "\"x\"" + strings.Repeat("]", 100_000) + "\n}\n"
	good, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, []byte(deep), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(time.Second)
	select {
	case err := <-exited:
		t.Fatalf("run died on SIGHUP with a deeply nested config: %v", err)
	default:
	}
	if err := os.WriteFile(cfg, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runAs(t, "status", "--config", cfg); code != ExitOK || !strings.Contains(out, "ready") {
		t.Errorf("status after the refused reload: %d %s", code, out)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("run exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after SIGTERM")
	}
	for _, name := range []string{"py.sock", "py-1.sock"} {
		if _, err := os.Lstat(filepath.Join(sdir, name)); err != nil {
			t.Errorf("%s gone after SIGTERM: %v", name, err)
		}
	}
	// No backend survived: nothing is left in sockvisor's process group
	// or any backend's (each backend has its own).
	if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
		t.Error("processes left in sockvisor's group")
	}
	code, _, errOut := runAs(t, "status", "--config", cfg)
	if code != ExitFailure || !strings.Contains(errOut, "not running") {
		t.Errorf("status without daemon: %d %q", code, errOut)
	}
}

// runAs runs a client command in-process with a timeout.
func runAs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- Main(args, &o, &e) }()
	select {
	case code := <-done:
		return code, o.String(), e.String()
	case <-ctx.Done():
		t.Fatalf("%v timed out", args)
		return 0, "", ""
	}
}

// check refuses a command that `run` could not start: a uvicorn --port
// beside the socket sockvisor passes.
func TestCheckPresetCommand(t *testing.T) {
	dir := testutil.ShortDir(t)
	cfg := writeConfig(t, dir, fmt.Sprintf(`socket_dir = %q
control_socket = %q
backend "asgi" {
  preset  = "uvicorn"
  command = ["/bin/true", "--port", "8000", "app:app"]
  user    = "root"
  mount   = "/asgi/"
}
`, filepath.Join(dir, "s"), filepath.Join(dir, "ctl")))
	code, _, errOut := run("check", "--config", cfg)
	if code != ExitProblems || !strings.Contains(errOut, "sv.hcl:3:1: backend \"asgi\"") || !strings.Contains(errOut, "remove that flag") {
		t.Errorf("check: exit %d %q; want 1 naming the backend's line and the flag", code, errOut)
	}
	code, r, _ := checkOut(t, "--config", cfg)
	if code != ExitProblems || r.Valid || len(r.Problems) != 1 || r.Problems[0].Line != 3 || !strings.Contains(r.Problems[0].Message, "remove that flag") {
		t.Errorf("check --json: exit %d %+v; want one problem at line 3", code, r)
	}
}
