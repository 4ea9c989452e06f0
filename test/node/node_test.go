package node

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNodeBoots(t *testing.T) {
	SkipUnlessAvailable(t)

	// Proves the host's /tmp is not touched by the node's boot-time clean-up.
	marker, err := os.CreateTemp("/tmp", "sockvisor-node-host-marker-")
	if err != nil {
		t.Fatal(err)
	}
	marker.Close()
	t.Cleanup(func() { os.Remove(marker.Name()) })

	EnsureRootfs(t)
	start := time.Now()
	n := Boot(t)
	t.Logf("node booted in %s (dir %s)", time.Since(start).Round(time.Millisecond), n.Dir)

	pid := n.PID(t)
	if got := nsPID(t, pid); got != "1" {
		t.Errorf("node init is pid %s in its namespace, want 1", got)
	}
	if got := n.MustRun(t, "cat", "/proc/1/comm"); got != "systemd" {
		t.Errorf("PID 1 in node is %q, want systemd", got)
	}
	if got := n.MustRun(t, "hostname"); got != "sockvisor-node" {
		t.Errorf("hostname in node = %q", got)
	}
	if links := n.MustRun(t, "ip", "-o", "link", "show"); strings.Count(links, "\n") != 0 || !strings.Contains(links, ": lo:") {
		t.Errorf("node should only have loopback, got:\n%s", links)
	}
	if got := n.MustRun(t, "systemctl", "is-active", "apache2"); got != "active" {
		t.Errorf("apache2 is %q", got)
	}
	if got := n.MustRun(t, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1/"); got != "200" {
		t.Errorf("GET http://127.0.0.1/ in node: %q, want 200", got)
	}
	out := n.MustRun(t, "busctl", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
		"org.freedesktop.systemd1.Manager", "ReloadUnit", "ss", "apache2.service", "replace")
	if !strings.HasPrefix(out, `o "/org/freedesktop/systemd1/job/`) {
		t.Errorf("ReloadUnit over D-Bus returned %q", out)
	}
	if _, err := os.Stat(marker.Name()); err != nil {
		t.Fatalf("host /tmp marker vanished after boot: %v", err)
	}

	// CopyIn + a change under /var/lib must survive a restart.
	token := randHex(t)
	src := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(src, []byte(token+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	n.CopyIn(t, src, "/var/lib/sockvisor-node-test/token")
	if got := n.MustRun(t, "stat", "-c", "%a", "/var/lib/sockvisor-node-test/token"); got != "640" {
		t.Errorf("copied file mode = %s, want 640", got)
	}
	n.MustRun(t, "touch", "/run/sockvisor-node-test-volatile")

	n.Restart(t)
	pid2 := n.PID(t)
	if pid2 == pid {
		t.Errorf("PID 1 host pid unchanged (%d) after restart", pid)
	}
	if _, err := os.Stat(procPath(pid)); err == nil {
		t.Errorf("old PID 1 (%d) still alive after restart", pid)
	}
	if got := n.MustRun(t, "cat", "/var/lib/sockvisor-node-test/token"); got != token {
		t.Errorf("/var/lib file after restart = %q, want %q", got, token)
	}
	if _, err := n.Run(t, "test", "!", "-e", "/run/sockvisor-node-test-volatile"); err != nil {
		t.Errorf("/run should be empty after restart: %v", err)
	}
	if got := n.MustRun(t, "systemctl", "is-active", "apache2"); got != "active" {
		t.Errorf("apache2 after restart is %q", got)
	}

	cg := n.Cgroup()
	n.Stop(t)
	for _, p := range []int{pid, pid2} {
		if _, err := os.Stat(procPath(p)); err == nil {
			t.Errorf("node process %d still alive after stop", p)
		}
	}
	if m := mountsUnder(t, n.Dir); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", n.Dir, m)
	}
	if _, err := os.Stat(n.Dir); !os.IsNotExist(err) {
		t.Errorf("node dir %s not removed: %v", n.Dir, err)
	}
	if cg == "" {
		t.Error("node had no cgroup")
	} else if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("node cgroup %s not removed: %v", cg, err)
	}
	if _, err := os.Stat(marker.Name()); err != nil {
		t.Errorf("host /tmp marker vanished: %v", err)
	}
}

func procPath(pid int) string { return filepath.Join("/proc", strconv.Itoa(pid)) }

// nsPID returns the innermost namespace pid of host pid (from NSpid).
func nsPID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(procPath(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" {
			return f[len(f)-1]
		}
	}
	t.Fatalf("no NSpid for %d", pid)
	return ""
}

// mountsUnder lists the host's mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var res []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			res = append(res, f[4])
		}
	}
	return res
}

func randHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
