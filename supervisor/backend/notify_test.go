package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// waitStatus polls until ok holds for instance 0, or fails after d.
func waitStatus(t *testing.T, be *Backend, d time.Duration, what string, ok func(InstanceStatus) bool) InstanceStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		is := be.Status().Instances[0]
		if ok(is) {
			return is
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance never %s: %+v", what, is)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNotifyContract: the backend gets a NOTIFY_SOCKET that is a socket
// file in its private state directory (not an abstract name), and every
// message of the contract works for the process's whole life: READY=1,
// STATUS=, RELOADING=1 then READY=1, MAINPID= of a process of its group,
// WATCHDOG=1.
func TestNotifyContract(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "notifier" }
mount = ""
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	socks := e.sockets(b)
	be := e.start(b, socks, Options{})
	waitReady(t, be, 20*time.Second)

	addr := fetch(t, socks[0].Path(), "/")
	dir := filepath.Join(e.state, "app")
	if filepath.Dir(addr) != dir || !strings.HasPrefix(filepath.Base(addr), notifyPrefix) {
		t.Errorf("NOTIFY_SOCKET=%q; want a socket file in the private directory %s", addr, dir)
	}
	if fi, err := os.Lstat(addr); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("notify socket %s: %v %v; want a socket, mode 0660", addr, fi.Mode(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("state directory %s: %v %v; want mode 0750", dir, fi.Mode(), err)
	}
	// The kernel lists it under its path, not as an abstract "@" name.
	if tbl, err := os.ReadFile("/proc/net/unix"); err != nil || !strings.Contains(string(tbl), " "+addr+"\n") {
		t.Errorf("/proc/net/unix does not list %s as a path name (%v)", addr, err)
	}

	pid := be.Status().PID
	next := func() { fetch(t, socks[0].Path(), "/next") }
	next()
	waitStatus(t, be, 5*time.Second, "reloading", func(is InstanceStatus) bool { return is.Reloading && is.StatusText == "reloading" })
	next()
	is := waitStatus(t, be, 5*time.Second, "reloaded with a new main pid", func(is InstanceStatus) bool {
		return !is.Reloading && is.StatusText == "reloaded" && is.MainPID != 0
	})
	next() // WATCHDOG=1 needs nothing
	if !is.Notified || !is.Ready || is.PID != pid {
		t.Errorf("after the reload %+v; want notified, ready, pid %d", is, pid)
	}
	if members := procfs.GroupMembers(pid); len(members) != 2 || !containsInt(members, is.MainPID) || is.MainPID == pid {
		t.Errorf("MAINPID %d; want the child in group %v", is.MainPID, members)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// sendAs sends msg to the notify socket at path with the given
// credentials attached (root may claim any).
func sendAs(t *testing.T, path, msg string, uid uint32) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	oob := unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uid, Gid: uid})
	if _, err := unix.SendmsgN(fd, []byte(msg), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		t.Fatalf("sending as uid %d: %v", uid, err)
	}
}

// TestNotifyForeignCredentials: datagrams whose credentials are neither
// root's nor the backend user's are dropped before parsing; the others
// are delivered.
func TestNotifyForeignCredentials(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	n, err := listenNotify(dir, &config.Backend{UID: 4242, GID: 4242}, testutil.Logger("test", hclog.Info))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.read(func(_ int, vars map[string]string) { got <- vars["STATUS"] })
	}()
	defer func() { n.Close(); <-done }()

	sendAs(t, n.addr, "STATUS=foreign", 12345)
	sendAs(t, n.addr, "STATUS=backend", 4242)
	sendAs(t, n.addr, "STATUS=root", 0)
	for _, want := range []string{"backend", "root"} {
		select {
		case s := <-got:
			if s != want {
				t.Errorf("delivered %q; want %q (the foreign one dropped)", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("datagram %q never delivered", want)
		}
	}
	if d := n.dropped.Load(); d != 1 {
		t.Errorf("%d datagrams dropped; want 1", d)
	}
	if !strings.HasPrefix(n.addr, dir+"/") {
		t.Errorf("notify socket %q is not a file in %s", n.addr, dir)
	}
}

// TestNotifyUnreachableByOthers: another user cannot even reach the
// socket (the state directory is root:<backend group> 0750), while the
// backend's user can.
func TestNotifyUnreachableByOthers(t *testing.T) {
	testutil.NeedRoot(t)
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
mount = ""
}
`, e.exe))
	b := cfg.Backends[0] // runs as www-data
	be, err := New(b, e.sockets(b), Options{Executable: e.exe, StateDir: e.state})
	if err != nil {
		t.Fatal(err)
	}
	n, err := be.openNotify()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.read(func(_ int, vars map[string]string) { got <- vars["STATUS"] })
	}()
	defer func() { n.Close(); <-done }()

	send := func(uid, gid int) error {
		cmd := exec.Command(e.exe)
		cmd.Env = []string{"SV_ROLE=notify-send", "SV_NOTIFY=" + n.addr, fmt.Sprintf("SV_MESSAGE=STATUS=from %d", uid)}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := send(65534, 65534); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("nobody sending: %v; want permission denied", err)
	}
	if err := send(b.UID, b.GID); err != nil {
		t.Fatalf("the backend's user sending: %v", err)
	}
	select {
	case s := <-got:
		if s != fmt.Sprintf("from %d", b.UID) {
			t.Errorf("delivered %q; want the backend user's", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the backend user's datagram never arrived")
	}
}

// TestNotifyOff: notify = false sets no NOTIFY_SOCKET and passes the one
// from environment unchanged; readiness is the probe alone.
func TestNotifyOff(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "notifier", NOTIFY_SOCKET = "/nonexistent/mine" }
notify = false
mount = ""
}
`, e.exe))
	b := cfg.Backends[0]
	userOwn(b)
	socks := e.sockets(b)
	be := e.start(b, socks, Options{})
	waitReady(t, be, 20*time.Second)
	if got := fetch(t, socks[0].Path(), "/"); got != "/nonexistent/mine" {
		t.Errorf("NOTIFY_SOCKET=%q; want the configured /nonexistent/mine", got)
	}
	if is := be.Status().Instances[0]; is.Notified {
		t.Errorf("status %+v; want no notification", is)
	}
}

// TestNotifyClients: servers that speak sd_notify through their own
// libraries run unchanged and are credited with READY=1: Python's
// systemd.daemon.notify (python3-systemd) and Puma with the sd_notify gem.
func TestNotifyClients(t *testing.T) {
	testutil.NeedRoot(t)
	for _, c := range []struct {
		name   string
		bins   []string
		hcl    func(e *env) string
		status string
	}{
		{
			name: "python3-systemd", bins: []string{"/usr/bin/python3", "/usr/lib/python3/dist-packages/systemd/daemon.py"},
			hcl: func(e *env) string {
				return fmt.Sprintf(`command = ["/usr/bin/python3", %q]`, filepath.Join(e.dir, "notify.py"))
			},
			status: "python ready",
		},
		{
			name: "puma-sd_notify", bins: []string{pumaBin, "/usr/share/rubygems-integration/all/gems/sd_notify-0.1.1/lib/sd_notify.rb"},
			hcl: func(e *env) string {
				return fmt.Sprintf(`command = [%q, "-b", "unix://%s/app.sock", %q]`, pumaBin, e.dir, filepath.Join(e.dir, "config.ru"))
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			testutil.NeedBinary(t, c.bins...)
			e := newEnv(t)
			copyFile(t, filepath.Join("testdata", "notify.py"), filepath.Join(e.dir, "notify.py"), 0o644)
			copyFile(t, filepath.Join("testdata", "config.ru"), filepath.Join(e.dir, "config.ru"), 0o644)
			cfg := e.parse(fmt.Sprintf("backend \"app\" {\n%s\nmount = \"\"\nstop_timeout = \"10s\"\n}\n", c.hcl(e)))
			b := cfg.Backends[0]
			socks := e.sockets(b)
			be := e.start(b, socks, Options{})
			waitReady(t, be, 30*time.Second)
			is := waitStatus(t, be, 10*time.Second, "notified", func(is InstanceStatus) bool { return is.Notified })
			if is.StatusText != c.status {
				t.Errorf("STATUS=%q; want %q", is.StatusText, c.status)
			}
			if g := servedBy(t, socks[0].Path()); g != is.PID {
				t.Errorf("answered by group %d; want %d", g, is.PID)
			}
			old := is.PID
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := be.Restart(ctx); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if is := be.Status().Instances[0]; is.PID == old || !is.Notified {
				t.Errorf("after Restart %+v; want a new, notified process", is)
			}
		})
	}
}

// TestNotifySweepsStale: a notify socket a crashed sockvisor left behind
// (a file nobody reads) is removed; a live one is kept.
func TestNotifySweepsStale(t *testing.T) {
	dir := testutil.ShortDir(t)
	stale := filepath.Join(dir, notifyPrefix+"dead.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: stale}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	b := &config.Backend{UID: os.Getuid(), GID: os.Getgid()}
	live, err := listenNotify(dir, b, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	n, err := listenNotify(dir, b, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); err == nil {
		t.Errorf("stale notify socket %s was kept", stale)
	}
	if _, err := os.Lstat(live.addr); err != nil {
		t.Errorf("live notify socket %s was removed: %v", live.addr, err)
	}
	n.Close()
	if _, err := os.Lstat(n.addr); err == nil {
		t.Errorf("Close left %s behind", n.addr)
	}
}

// TestNotifyFlood floods the notify socket with datagrams carrying foreign
// credentials (none may reach the owner) and the backend's own (parsed),
// and reports the reader's CPU for each; SV_MEASURE=1 sends 100,000.
func TestNotifyFlood(t *testing.T) {
	testutil.NeedRoot(t)
	e := newEnv(t)
	count := 5000
	if os.Getenv("SV_MEASURE") != "" {
		count = 100000
	}
	for _, c := range []struct {
		name string
		uid  int
	}{{"foreign uid", 12345}, {"backend uid", 4242}} {
		n, err := listenNotify(e.dir, &config.Backend{UID: 4242, GID: 4242}, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		var got int
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.read(func(int, map[string]string) { got++ })
		}()
		var before, after unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &before)
		start := time.Now()
		cmd := exec.Command(e.exe)
		cmd.Env = []string{"SV_ROLE=notify-flood", "SV_NOTIFY=" + n.addr, fmt.Sprint("SV_COUNT=", count), fmt.Sprint("SV_UID=", c.uid)}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("flood: %v %s", err, out)
		}
		waitUntil(t, 10*time.Second, "the reader drained the notify queue", func() bool { return pendingDatagram(t, n.conn) == 0 })
		unix.Getrusage(unix.RUSAGE_SELF, &after)
		took := time.Since(start)
		n.Close()
		<-done
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
		fmt.Fprintf(os.Stderr, "MEASURE notify flood, %s: %d datagrams in %v, %d delivered, %d dropped, reader CPU %v (%.2f µs each)\n",
			c.name, count, took.Round(time.Millisecond), got, n.dropped.Load(), cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(count))
		if c.uid != 4242 && got != 0 {
			t.Errorf("%s: %d datagrams reached the owner; want none", c.name, got)
		}
		if c.uid == 4242 && got == 0 {
			t.Errorf("%s: no datagram reached the owner", c.name)
		}
	}
}

// pendingDatagram is the size of the next datagram queued on c, 0 if none.
func pendingDatagram(t *testing.T, c *net.UnixConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil || ierr != nil {
		t.Fatalf("SIOCINQ: %v", errors.Join(err, ierr))
	}
	return n
}
