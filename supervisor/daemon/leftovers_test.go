package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// A process that holds a backend's socket is mapped to that backend, and
// retiring it sends the backend's stop signal, then SIGKILL if it lingers.
func TestLeftoversMappedAndRetired(t *testing.T) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fd), "sock")
	defer sock.Close()
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	b := &config.Backend{Name: "app", StopSignal: syscall.SIGTERM, StopTimeout: time.Second}
	byInode := map[uint64]*config.Backend{st.Ino: b}

	start := func(script string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.ExtraFiles = []*os.File{sock}
		testutil.StartGroup(t, cmd)
		return cmd
	}
	graceful := start("exec sleep 60")
	stubborn := start("trap '' TERM; while :; do sleep 0.1; done")
	// Retiring must find the stubborn one already ignoring SIGTERM (else
	// it dies of SIGTERM, not of the SIGKILL after stop_timeout), and the
	// graceful one already exec'd into sleep, the process meant.
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10 s: %s", what)
			}
		}
	}
	waitFor("the graceful leftover runs sleep", func() bool {
		comm, err := os.ReadFile("/proc/" + strconv.Itoa(graceful.Process.Pid) + "/comm")
		return err == nil && string(comm) == "sleep\n"
	})
	waitFor("the stubborn leftover ignores SIGTERM", func() bool {
		status, _ := os.ReadFile("/proc/" + strconv.Itoa(stubborn.Process.Pid) + "/status")
		_, ign, _ := strings.Cut(string(status), "\nSigIgn:\t")
		mask, err := strconv.ParseUint(strings.SplitN(ign, "\n", 2)[0], 16, 64)
		return err == nil && mask&(1<<(syscall.SIGTERM-1)) != 0
	})

	var ls []leftover
	for _, c := range []*exec.Cmd{graceful, stubborn} {
		st, err := procfs.ReadStat(c.Process.Pid)
		if err != nil || st.PGID != c.Process.Pid {
			t.Fatalf("ReadStat(%d) = %+v %v", c.Process.Pid, st, err)
		}
		start := st.StartTime
		if got := ownerOf(c.Process.Pid, byInode); got != b {
			t.Fatalf("ownerOf(%d) = %v, want backend app", c.Process.Pid, got)
		}
		ls = append(ls, leftover{pid: c.Process.Pid, start: start, leader: true, backend: b})
	}
	if ownerOf(os.Getppid(), byInode) != nil {
		t.Error("an unrelated process was mapped to a backend")
	}

	// Reap in the background: leftovers are normally PID 1's children.
	done := make(chan struct{})
	go func() { graceful.Wait(); stubborn.Wait(); close(done) }()
	d := &Daemon{log: hclog.NewNullLogger()}
	began := time.Now()
	d.retireLeftovers(context.Background(), ls)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("leftovers still running after retireLeftovers")
	}
	if ws := graceful.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGTERM {
		t.Errorf("graceful leftover ended by %v, want SIGTERM", ws.Signal())
	}
	if ws := stubborn.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Errorf("stubborn leftover ended by %v, want SIGKILL after the timeout", ws.Signal())
	}
	if el := time.Since(began); el < 900*time.Millisecond {
		t.Errorf("stubborn leftover killed after %v, before stop_timeout", el)
	}
}

// Outside a systemd service, sockvisor shares its cgroup with strangers and
// must never treat them as leftovers.
func TestNoLeftoversOutsideAService(t *testing.T) {
	// Even with a service's environment, a process that is not the unit's
	// main process (our parent is go test, not PID 1) must not act.
	t.Setenv("INVOCATION_ID", "0123456789abcdef")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	if p := serviceCgroupProcs(); p != "" {
		t.Fatalf("serviceCgroupProcs as a non-main process = %q", p)
	}
}

// ownerOf returns the backend whose socket pid holds, as findLeftovers sees it.
func ownerOf(pid int, byInode map[uint64]*config.Backend) *config.Backend {
	links := map[string]bool{}
	for ino := range byInode {
		links[procfs.SocketLink(ino)] = true
	}
	for _, h := range procfs.HoldersIn([]int{pid}, links) {
		for ino, b := range byInode {
			if h.Link == procfs.SocketLink(ino) {
				return b
			}
		}
	}
	return nil
}

// findLeftovers learns an adopted socket's inode without (*os.File).Fd: the
// O_NONBLOCK a leftover backend set on the file description it shares with
// the fd store's copy survives, so that backend never blocks in accept(2).
func TestFindLeftoversKeepsNonblock(t *testing.T) {
	testutil.NeedRoot(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
socket_dir = %q
backend "app" {
  command = ["/bin/sleep", "1"]
  mount   = ""
}
`, filepath.Join(testutil.ShortDir(t), "s"))), "test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	log := hclog.NewNullLogger()
	if err := sockets.PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}
	spec := cfg.Backends[0].Sockets[0]
	first, err := sockets.Create(cfg, spec, log)
	if err != nil {
		t.Fatal(err)
	}
	// What the fd store hands back: another descriptor of the description.
	var stored, other int
	rc, err := first.File().SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		stored, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
		other, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	})
	first.Close()
	if stored <= 0 || other <= 0 {
		t.Fatal("dup failed")
	}
	defer unix.Close(other)
	f := os.NewFile(uintptr(stored), "stored")
	defer f.Close()
	// A leftover backend serves on it and made it non-blocking, as gunicorn,
	// uWSGI and Go servers do.
	leftover := exec.Command("/bin/sleep", "60")
	leftover.ExtraFiles = []*os.File{f}
	testutil.StartGroup(t, leftover)
	if err := unix.SetNonblock(other, true); err != nil {
		t.Fatal(err)
	}

	l, err := sockets.Adopt(cfg, spec, f, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ls := findLeftovers(cfg, map[string]*sockets.Listener{spec.Name: l})
	if len(ls) != 1 || ls[0].pid != leftover.Process.Pid || ls[0].backend != cfg.Backends[0] || !ls[0].leader {
		t.Errorf("findLeftovers = %+v; want the leader %d of backend app", ls, leftover.Process.Pid)
	}
	fl, err := unix.FcntlInt(uintptr(other), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		t.Error("adopting the socket and finding its leftovers cleared O_NONBLOCK on the description the leftover serves on")
	}
}
