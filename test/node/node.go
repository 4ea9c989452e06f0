// Package node boots a real Debian 12 systemd "node" for integration tests.
//
// The heavy lifting is done by node.sh (next to this file): systemd runs as
// PID 1 inside new pid, mount, net, uts, ipc and cgroup namespaces,
// pivot_root'ed into an overlayfs over a cached mmdebstrap rootfs, with its own
// /dev, /proc, /run, /tmp, a read-only /sys, a dedicated cgroup2 sub-tree and
// loopback-only networking. Nothing is mounted on the host.
//
// Tests use Boot to get a running node; it is stopped and removed by
// t.Cleanup. The tests need root; they skip otherwise or when
// SOCKVISOR_SKIP_NODE=1.
package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// DefaultTimeout bounds a single command run inside a node.
const DefaultTimeout = 2 * time.Minute

// Script returns the path of node.sh.
func Script() string {
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "node.sh")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := filepath.Abs("node.sh")
	return p
}

// SkipUnlessAvailable skips the test when nodes cannot (or must not) be
// used; in CI (CI set) that fails the test instead, since CI must run it.
func SkipUnlessAvailable(t testing.TB) {
	t.Helper()
	if os.Getenv("SOCKVISOR_SKIP_NODE") == "1" {
		testutil.Unavailable(t, "node tests disabled by SOCKVISOR_SKIP_NODE=1")
	}
	if os.Geteuid() != 0 {
		testutil.Unavailable(t, "node tests need root (they create namespaces, mounts and cgroups); run as root or set SOCKVISOR_SKIP_NODE=1")
	}
}

// script runs node.sh with args and returns its stdout; stderr goes to the test log.
func script(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Script(), args...)
	cmd.Env = append(os.Environ(), "SOCKVISOR_NODE_OWNER="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Logf("node.sh %s (%s):\n%s", args[0], time.Since(start).Round(time.Millisecond), s)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("node.sh %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

// EnsureRootfs builds the cached rootfs if needed and returns its tarball path.
// A build from scratch takes a few minutes; run `go test -timeout 30m` the
// first time on a machine.
func EnsureRootfs(t testing.TB) string {
	t.Helper()
	SkipUnlessAvailable(t)
	rootfsMu.Lock()
	defer rootfsMu.Unlock()
	if rootfsPath == "" {
		out, err := script(t, 30*time.Minute, "rootfs")
		if err != nil {
			t.Fatalf("building the node rootfs: %v", err)
		}
		rootfsPath = strings.TrimSpace(out)
	}
	return rootfsPath
}

var (
	rootfsMu   sync.Mutex
	rootfsPath string
)

// Node is a booted node. Dir holds its state (overlay upper layer, pid, ...).
type Node struct {
	Dir string
}

// Boot boots a fresh node and registers its teardown with t.Cleanup.
func Boot(t testing.TB) *Node {
	t.Helper()
	SkipUnlessAvailable(t)
	EnsureRootfs(t)
	// Keep DIR short: paths below it may end up in unix socket addresses (108 bytes max).
	dir, err := os.MkdirTemp("", "svn")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Dir: dir}
	t.Cleanup(func() { n.Stop(t) })
	if _, err := script(t, 5*time.Minute, "boot", dir); err != nil {
		t.Fatalf("booting node: %v", err)
	}
	return n
}

// PID returns the host pid of the node's PID 1.
func (n *Node) PID(t testing.TB) int {
	t.Helper()
	out, err := script(t, time.Minute, "pid", n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("bad pid %q: %v", out, err)
	}
	return pid
}

// Cgroup returns the host path of the node's cgroup (empty once stopped).
func (n *Node) Cgroup() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "cgroup"))
	return strings.TrimSpace(string(b))
}

// Exec runs args inside the node with the given stdin (may be nil) and
// returns stdout and stderr. The error is an *exec.ExitError for a non-zero
// exit status.
func (n *Node) Exec(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, Script(), append([]string{"exec", n.Dir}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// Command returns an unstarted command that runs args inside the node, for
// callers that stream its stdin, stdout or stderr while it runs (Exec
// collects them). Cancelling ctx kills the host side; the process inside
// ends with its stdin or when the node stops.
func (n *Node) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, Script(), append([]string{"exec", n.Dir}, args...)...)
}

// Run runs args inside the node and returns its stdout. On failure the error
// includes the exit status and stderr.
func (n *Node) Run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	out, errOut, err := n.Exec(ctx, nil, args...)
	if err != nil {
		return out, fmt.Errorf("%q in node: %w; stderr: %s", args, err, strings.TrimSpace(errOut))
	}
	return out, nil
}

// MustRun is Run that fails the test on error and trims the output.
func (n *Node) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// CopyIn copies the host file hostPath to nodePath (absolute) in the node,
// keeping its permission bits.
func (n *Node) CopyIn(t testing.TB, hostPath, nodePath string) {
	t.Helper()
	if _, err := script(t, DefaultTimeout, "cp-in", n.Dir, hostPath, nodePath); err != nil {
		t.Fatal(err)
	}
}

// Restart powers the node off and boots it again on the same root
// filesystem (changes persist; /run and /tmp start empty).
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if _, err := script(t, 5*time.Minute, "restart", n.Dir); err != nil {
		t.Fatalf("restarting node: %v", err)
	}
}

// Crash cuts the node's power (every process is SIGKILLed at once, nothing
// shuts down cleanly) and boots it again on the same root filesystem.
func (n *Node) Crash(t testing.TB) {
	t.Helper()
	if _, err := script(t, 5*time.Minute, "restart", n.Dir, "--hard"); err != nil {
		t.Fatalf("crashing and rebooting node: %v", err)
	}
}

// Stop powers the node off and removes everything it used. It is safe to
// call more than once.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if _, err := script(t, 5*time.Minute, "stop", n.Dir); err != nil {
		t.Errorf("stopping node: %v", err)
	}
}
