// Package testutil holds the helpers sockvisor's tests share: short temp
// dirs, root and binary gates, a stderr logger, child processes in their own
// process group, unix sockets, and re-executing the test binary in another
// role.
//
// Invariant: every resource a helper creates (a directory, a file, an fd, a
// process group) is released by t.Cleanup, even when the test fails.
package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// ShortDir returns a fresh directory with a short path, so unix socket paths
// below it stay within sun_path (107 bytes), which t.TempDir paths can
// exceed. It is mode 0755 so Apache's www-data workers and children running
// as other users can reach sockets below it; t.Cleanup removes it.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Unavailable reports that something the test needs is missing: locally
// it skips with that sentence; in CI (CI set), where `make test` runs as
// root after installing every dependency, it fails instead, so a missing
// package or privilege can never turn into a silently skipped test.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := t.Name() + ": " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI installs every dependency with scripts/install-deps.sh and runs as root)", msg)
	}
	t.Skip(msg)
}

// NeedRoot skips the test unless it runs as root; in CI it fails.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// NeedBinary skips the test unless every name is installed (in CI it
// fails): a bare name must be a command in PATH, a name with a slash a
// file that exists (a binary, or a plugin it loads).
func NeedBinary(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		var err error
		if strings.Contains(name, "/") {
			_, err = os.Stat(name)
		} else {
			_, err = exec.LookPath(name)
		}
		if err != nil {
			Unavailable(t, "needs %s (scripts/install-deps.sh installs it)", name)
		}
	}
}

// PHPFPM returns the installed PHP-FPM binary and its version ("8.2" on
// Debian 12, "8.4" on Debian 13), so tests never pin a release. Without
// one it skips the test (fails it in CI).
func PHPFPM(t testing.TB) (bin, version string) {
	t.Helper()
	if bin, version = FindPHPFPM(); bin == "" {
		Unavailable(t, "needs PHP-FPM (apt-get install php-fpm)")
	}
	return bin, version
}

// FindPHPFPM returns the newest /usr/sbin/php-fpmX.Y and its version, or
// "" when none is installed.
func FindPHPFPM() (bin, version string) {
	bins, _ := filepath.Glob("/usr/sbin/php-fpm[0-9]*")
	if len(bins) == 0 {
		return "", ""
	}
	ver := func(b string) string { return strings.TrimPrefix(filepath.Base(b), "php-fpm") }
	sort.Slice(bins, func(i, j int) bool { return versionLess(ver(bins[i]), ver(bins[j])) })
	bin = bins[len(bins)-1]
	return bin, ver(bin)
}

// versionLess compares dotted numeric versions: 8.9 < 8.10.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.Atoi(as[i])
		y, _ := strconv.Atoi(bs[i])
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

// CopySelf copies the running test binary to path, mode 0755, and returns
// path: go test builds it in a directory only root can enter, and a copy
// is what a child running as another user can execute. t.Cleanup removes it.
func CopySelf(t testing.TB, path string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// Logger returns a logger writing to stderr, where go test shows it for a
// failed or verbose test.
func Logger(name string, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: os.Stderr, Level: level})
}

// StartGroup starts cmd in a process group of its own, failing the test if
// it cannot. t.Cleanup kills the whole group with SIGKILL and waits for cmd,
// reporting an error if it has not exited within 10 s.
func StartGroup(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Args[0], err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit", cmd.Args[0], cmd.Process.Pid)
		}
	})
}

// WaitSocket waits up to timeout until something accepts connections on
// the unix socket at path, and fails the test if nothing does. Each detail
// is called on failure and what it returns (a backend's log, say) ends the
// message.
func WaitSocket(t testing.TB, path string, timeout time.Duration, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			var more strings.Builder
			for _, d := range detail {
				more.WriteString("\n" + d())
			}
			t.Fatalf("%s never accepted connections within %v: %v%s", path, timeout, err, more.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ListenUnix binds a raw AF_UNIX stream socket (close-on-exec) at path
// and returns its fd, listening with backlog unless backlog < 0 (bound
// only, as a crashed server leaves it). t.Cleanup closes the fd and
// removes the socket file.
func ListenUnix(t testing.TB, path string, backlog int) int {
	t.Helper()
	if len(path) > 107 {
		t.Fatalf("socket path %s is too long", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if backlog >= 0 {
		if err := unix.Listen(fd, backlog); err != nil {
			t.Fatal(err)
		}
	}
	return fd
}

// RunRole is for TestMain: when the test binary was re-executed as
// `binary arg ...` (the exec shim's shim.Arg, say), it exits with
// main(the rest of the arguments); otherwise it returns.
func RunRole(arg string, main func(args []string) int) {
	if len(os.Args) > 1 && os.Args[1] == arg {
		os.Exit(main(os.Args[2:]))
	}
}

// HostCommand runs name with args in dir, with env appended to the
// environment minus the outer make's MAKEFLAGS, MFLAGS and MAKELEVEL: under
// `make test`, its flags and jobserver fds must not leak into the tools a
// test runs (make package, git, dpkg).
func HostCommand(dir string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}
