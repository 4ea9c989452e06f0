package sockets

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// The test binary re-executes itself to play a child process holding a
// socket, so PIDs and cross-process behaviour are real.
const roleEnv = "SOCKETS_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(playRole(role, os.Getenv("SOCKETS_TEST_PATH")))
	}
	os.Exit(runTests(m))
}

// publicBinary is a copy of the test binary that other users may execute:
// go test builds it in a directory only root can enter.
var publicBinary string

func runTests(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "svbin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		publicBinary = dir + "/sockets.test"
		if err := copyExecutable(os.Args[0], publicBinary); err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return testutil.RunChecked(m)
}

func copyExecutable(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// playRole: "listen" binds and listens, "bound" binds only; both print
// "ready" and hold the socket until stdin closes. "dial" connects and exits
// 0 on success, 1 with the error on stderr.
func playRole(role, path string) int {
	if role == "dial" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	}
	if err == nil && role == "listen" {
		err = unix.Listen(fd, 8)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// childRace stops a -race child from sleeping a second at exit.
const childRace = "GORACE=atexit_sleep_ms=0"

// child is a re-executed test binary holding a socket.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startChild runs role on path and, unless wait is false, waits for "ready".
// The process is stopped in t.Cleanup even if the test fails.
func startChild(t *testing.T, role, path string, wait bool, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "SOCKETS_TEST_PATH="+path, childRace)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(c.stop)
	if !wait {
		go io.Copy(io.Discard, stdout)
		return c
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("child %s on %s: %v", role, path, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("child %s on %s never became ready", role, path)
	}
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// dialAs connects to path as uid:gid from a child process, reporting whether
// the kernel let that user connect.
func dialAs(t *testing.T, path string, uid, gid uint32) error {
	t.Helper()
	cmd := exec.Command(publicBinary)
	cmd.Env = append(os.Environ(), roleEnv+"=dial", "SOCKETS_TEST_PATH="+path, childRace)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// testConfig parses a real config with socket_dir at dir, owner daemon,
// group www-data and backend "app" with instances sockets of mode 0660.
func testConfig(t *testing.T, dir string, instances int, extra string) *config.Config {
	t.Helper()
	src := fmt.Sprintf(`
socket_dir   = %q
socket_owner = "daemon"
socket_group = "www-data"
%s
backend "app" {
  command     = ["/bin/sleep", "1"]
  socket_mode = "0660"
  instances   = %d
  mount       = ""
}
`, dir, extra, instances)
	cfg, err := config.Parse([]byte(src), "test.hcl")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, s := range cfg.AllSockets() {
		if len(s.Path) > config.MaxSocketPath {
			t.Fatalf("socket path %s is too long for the test", s.Path)
		}
	}
	return cfg
}

// testLog logs to stderr and into the returned buffer.
func testLog() (hclog.Logger, *testutil.SyncBuffer) {
	buf := &testutil.SyncBuffer{}
	return hclog.New(&hclog.LoggerOptions{
		Name:   "sockets-test",
		Level:  hclog.Debug,
		Output: io.MultiWriter(os.Stderr, buf),
	}), buf
}

// staleSocket leaves a socket file at path with nobody behind it.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// oneSentence checks a user-facing error: one line, naming path.
func oneSentence(t *testing.T, err error, path string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, path) {
		t.Errorf("error %q should be one line naming %s", msg, path)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mkdir creates path with raw chmod bits (setgid, sticky included).
func mkdir(t *testing.T, path string, mode uint32, uid, gid int) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
