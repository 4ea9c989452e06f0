package shim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestMain plays two roles for re-executed copies of the test binary: the
// shim itself (argv[1] == "exec-shim") and the backend it execs
// (SV_SHIM_ROLE=report), which prints what it received as JSON.
func TestMain(m *testing.M) {
	testutil.RunRole(Arg, Main)
	if os.Getenv("SV_SHIM_ROLE") == "report" {
		report()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fdInfo struct {
	Socket    bool
	Listening bool
	NonBlock  bool
}

type reportData struct {
	Pid      int
	Umask    string
	UID, GID int
	EUID     int
	Groups   []int
	Cwd      string
	Env      map[string]string
	FDs      map[int]fdInfo
	// Inherited lists every fd above 2 from /proc/self/fd that the backend
	// got across execve: those without FD_CLOEXEC. (The Go runtime's own
	// fds are close-on-exec.) Targets names what each one is.
	Inherited []int
	Targets   map[int]string
}

func report() {
	r := reportData{Pid: os.Getpid(), UID: os.Getuid(), GID: os.Getgid(), EUID: os.Geteuid(), Env: map[string]string{}, FDs: map[int]fdInfo{}}
	r.Groups, _ = os.Getgroups()
	r.Cwd, _ = os.Getwd()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		r.Env[k] = v
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				r.Umask = strings.TrimSpace(v)
			}
		}
	}
	r.Targets = map[int]string{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		if fd < 3 {
			continue
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			r.Inherited = append(r.Inherited, fd)
			r.Targets[fd], _ = os.Readlink("/proc/self/fd/" + e.Name())
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			continue // the fd ReadDir itself used
		}
		info := fdInfo{Socket: st.Mode&unix.S_IFMT == unix.S_IFSOCK}
		if info.Socket {
			v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
			info.Listening = v == 1
		}
		fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		info.NonBlock = fl&unix.O_NONBLOCK != 0
		if info.Socket {
			r.FDs[fd] = info
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

type result struct {
	pid    int
	code   int
	stdout string
	stderr string
}

// start runs argv with env and files 3.. = extra, waits at most 10s, and
// reports what the child printed.
func start(t *testing.T, argv, env []string, extra ...int) result {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	files := []uintptr{0, outW.Fd(), errW.Fd()}
	for _, fd := range extra {
		files = append(files, uintptr(fd))
	}
	pid, _, err := syscall.StartProcess(argv[0], argv, &syscall.ProcAttr{Env: env, Files: files, Sys: &syscall.SysProcAttr{Setpgid: true}})
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
	outc := make(chan string, 1)
	go func() { b, _ := io.ReadAll(outR); outc <- string(b) }()
	errb, _ := io.ReadAll(bufio.NewReader(errR))
	var ws syscall.WaitStatus
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		t.Fatal("child did not exit within 10s")
	}
	return result{pid: pid, code: ws.ExitStatus(), stdout: <-outc, stderr: string(errb)}
}

// TestShimAsRoot starts the shim as root the way the supervisor does and
// checks everything the backend receives.
func TestShimAsRoot(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	exe := testutil.CopySelf(t, filepath.Join(dir, "shim.test"))
	sock := filepath.Join(dir, "app.sock")
	lfd := testutil.ListenUnix(t, sock, 16)
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}

	parent := []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC",
		"NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_PID=1", "LISTEN_FDS=7", "LISTEN_FDNAMES=x",
		"WATCHDOG_USEC=1000", "WATCHDOG_PID=1", "SECRET=leak", "HOME=/root"}
	env := Environ(parent, Account{Name: "nobody", Home: "/nonexistent"}, map[string]string{"SV_SHIM_ROLE": "report", "APP_MODE": "test"})
	spec := Spec{
		Path: exe, Args: []string{"my-backend"}, Dir: work,
		SetUmask: true, Umask: 0o027,
		SetCreds: true, UID: 65534, GID: 65534, Groups: []uint32{33, 65534},
		ListenFDs: 1, FDNames: []string{"app.sock"},
	}
	res := start(t, spec.Argv(exe), env, lfd)
	if res.code != 0 {
		t.Fatalf("shim exited %d: %s", res.code, res.stderr)
	}
	var r reportData
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("report %q: %v", res.stdout, err)
	}
	if r.Pid != res.pid || r.Env["LISTEN_PID"] != strconv.Itoa(res.pid) {
		t.Errorf("backend pid %d, LISTEN_PID %q, started pid %d; all must match", r.Pid, r.Env["LISTEN_PID"], res.pid)
	}
	if r.Env["LISTEN_FDS"] != "1" || r.Env["LISTEN_FDNAMES"] != "app.sock" {
		t.Errorf("LISTEN_FDS=%q LISTEN_FDNAMES=%q; want 1, app.sock", r.Env["LISTEN_FDS"], r.Env["LISTEN_FDNAMES"])
	}
	if r.Umask != "0027" {
		t.Errorf("umask %s; want 0027", r.Umask)
	}
	if r.UID != 65534 || r.EUID != 65534 || r.GID != 65534 {
		t.Errorf("uid %d euid %d gid %d; want 65534", r.UID, r.EUID, r.GID)
	}
	slices.Sort(r.Groups)
	if !reflect.DeepEqual(r.Groups, []int{33, 65534}) {
		t.Errorf("supplementary groups %v; want exactly [33 65534] (no group 0)", r.Groups)
	}
	if r.Cwd != work {
		t.Errorf("cwd %s; want %s", r.Cwd, work)
	}
	if fd3, ok := r.FDs[3]; !ok || !fd3.Listening {
		t.Errorf("fd 3 = %+v; want the listening socket", r.FDs)
	}
	if len(r.FDs) != 1 {
		t.Errorf("backend got sockets %v; want only fd 3", r.FDs)
	}
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "SECRET"} {
		if v, ok := r.Env[k]; ok {
			t.Errorf("%s=%s leaked to the backend", k, v)
		}
	}
	want := map[string]string{"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
		"HOME": "/nonexistent", "USER": "nobody", "LOGNAME": "nobody", "APP_MODE": "test"}
	for k, v := range want {
		if r.Env[k] != v {
			t.Errorf("%s=%q; want %q", k, r.Env[k], v)
		}
	}
}

// TestShimNoListenFDs: a backend that takes no LISTEN_* gets none, even if
// some were inherited.
func TestShimNoListenFDs(t *testing.T) {
	dir := testutil.ShortDir(t)
	exe := testutil.CopySelf(t, filepath.Join(dir, "shim.test"))
	env := []string{"SV_SHIM_ROLE=report", "LISTEN_PID=1", "LISTEN_FDS=2"}
	spec := Spec{Path: exe, Args: []string{exe}, SetUmask: true, Umask: 0o077}
	res := start(t, spec.Argv(exe), env)
	var r reportData
	if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
		t.Fatalf("report %q (stderr %s): %v", res.stdout, res.stderr, err)
	}
	for k := range r.Env {
		if strings.HasPrefix(k, "LISTEN_") {
			t.Errorf("%s reached a backend without socket activation", k)
		}
	}
	if r.Umask != "0077" {
		t.Errorf("umask %s; want 0077", r.Umask)
	}
}

// TestShimResetsSignals: dispositions sockvisor ignores (SIGPIPE per our
// style, SIGHUP under nohup) must not be inherited by the backend. grep is
// the backend here because a Go program would install its own handlers.
func TestShimResetsSignals(t *testing.T) {
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	defer signal.Reset(syscall.SIGPIPE, syscall.SIGHUP)
	exe := testutil.CopySelf(t, filepath.Join(testutil.ShortDir(t), "shim.test"))
	spec := Spec{Path: "grep", Args: []string{"grep", "^SigIgn:", "/proc/self/status"}}
	res := start(t, spec.Argv(exe), []string{"PATH=/usr/bin:/bin"})
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	hex := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(res.stdout), "SigIgn:"))
	mask, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("SigIgn %q: %v", res.stdout, err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGPIPE, syscall.SIGHUP} {
		if mask&(1<<(uint(sig)-1)) != 0 {
			t.Errorf("backend inherited SIG_IGN for %v (SigIgn %s)", sig, hex)
		}
	}
}

func TestShimFailures(t *testing.T) {
	exe := testutil.CopySelf(t, filepath.Join(testutil.ShortDir(t), "shim.test"))
	cases := []struct {
		name string
		argv []string
		code int
		msg  string
	}{
		{"usage", []string{exe, Arg, "-path", "x"}, ExitUsage, "no command given"},
		{"bad umask", []string{exe, Arg, "-umask", "999", "-path", "x", "--", "x"}, ExitUsage, "not an octal mode"},
		{"not found", Spec{Path: "no-such-backend", Args: []string{"x"}}.Argv(exe), ExitNotFound, `"no-such-backend" was not found`},
		{"not executable", Spec{Path: "/etc/hostname", Args: []string{"x"}}.Argv(exe), ExitNotFound, "cannot execute /etc/hostname"},
		{"bad dir", Spec{Path: "/bin/true", Args: []string{"true"}, Dir: "/nonexistent/dir"}.Argv(exe), ExitSetup, "cannot enter working directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := start(t, c.argv, []string{"PATH=/usr/bin:/bin"})
			if res.code != c.code || !strings.Contains(res.stderr, c.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", res.code, res.stderr, c.code, c.msg)
			}
			if n := strings.Count(strings.TrimSpace(res.stderr), "\n"); n > 0 && c.code != ExitUsage {
				t.Errorf("stderr has %d lines; want one sentence", n+1)
			}
		})
	}
}

func TestArgvRoundTrip(t *testing.T) {
	in := Spec{Path: "/usr/bin/gunicorn", Args: []string{"gunicorn", "-w", "2", "--", "app:app"}, Dir: "/srv",
		SetUmask: true, Umask: 0o007, SetCreds: true, UID: 33, GID: 33, Groups: []uint32{33, 4},
		ListenFDs: 2, FDNames: []string{"a.sock", "b.sock"}, KeepFDs: 2}
	argv := in.Argv("/usr/sbin/sockvisor")
	if argv[0] != "/usr/sbin/sockvisor" || argv[1] != Arg {
		t.Fatalf("argv %q does not start with the shim", argv)
	}
	out, err := parse(argv[2:], io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	// No groups must give an empty list, never [0].
	out, err = parse(Spec{Path: "x", Args: []string{"x"}, SetCreds: true, UID: 1, GID: 1}.Argv("s")[2:], io.Discard)
	if err != nil || len(out.Groups) != 0 {
		t.Fatalf("groups %v, %v; want none", out.Groups, err)
	}
}

func TestEnviron(t *testing.T) {
	got := Environ([]string{"NOTIFY_SOCKET=/x", "LISTEN_FDS=1", "WATCHDOG_USEC=5", "LC_CTYPE=C", "TERM=xterm", "bogus"},
		Account{Name: "www-data", Home: "/var/www"}, map[string]string{"PATH": "/opt/bin", "X": "1"})
	want := []string{"HOME=/var/www", "LC_CTYPE=C", "LOGNAME=www-data", "PATH=/opt/bin", "USER=www-data", "X=1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Environ = %q; want %q", got, want)
	}
	if got := Environ(nil, Account{}, nil); !reflect.DeepEqual(got, []string{"PATH=" + DefaultPath}) {
		t.Fatalf("empty Environ = %q", got)
	}
}

// TestShimClosesInheritedFDs reproduces issue [K] item 5: after
// `exec 7>>/root/secret.log; sockvisor run`, the backend had fd 7. Here the
// shim inherits the handed-off socket at fd 3 and, like sockvisor's own
// inherited fds, files at 4 to 7 without close-on-exec; the backend (a
// helper that lists /proc/self/fd) must get fd 3 and nothing else above 2.
func TestShimClosesInheritedFDs(t *testing.T) {
	dir := testutil.ShortDir(t)
	exe := testutil.CopySelf(t, filepath.Join(dir, "shim.test"))
	lfd := testutil.ListenUnix(t, filepath.Join(dir, "app.sock"), 16)
	var leaks []int
	for i := 0; i < 4; i++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("secret-%d.log", i)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		leaks = append(leaks, int(f.Fd()))
	}
	cases := []struct {
		name string
		spec Spec
		fds  []int // passed as 3, 4, ...
		want []int
	}{
		{"listen-fds", Spec{ListenFDs: 1}, append([]int{lfd}, leaks...), []int{3}},
		// fpm and uWSGI's fd://3 take fd 3 without LISTEN_FDS.
		{"keep without LISTEN_FDS", Spec{KeepFDs: 1}, append([]int{lfd}, leaks...), []int{3}},
		{"nothing handed off", Spec{}, leaks, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			spec.Path, spec.Args = exe, []string{"backend"}
			res := start(t, spec.Argv(exe), []string{"SV_SHIM_ROLE=report"}, c.fds...)
			if res.code != 0 {
				t.Fatalf("shim exited %d: %s", res.code, res.stderr)
			}
			var r reportData
			if err := json.Unmarshal([]byte(res.stdout), &r); err != nil {
				t.Fatalf("report %q: %v", res.stdout, err)
			}
			if !reflect.DeepEqual(r.Inherited, c.want) {
				t.Errorf("backend inherited fds %v (%v); want only %v", r.Inherited, r.Targets, c.want)
			}
		})
	}
}

// The fallback for kernels without close_range(2) marks the same fds, and
// CloseOnExecFrom (what sockvisor run calls at start) marks them too.
func TestMarkCloexecFrom(t *testing.T) {
	for _, mark := range []func(int) error{markCloexecFrom, CloseOnExecFrom} {
		testMark(t, mark)
	}
}

func testMark(t *testing.T, mark func(int) error) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		t.Fatal(err)
	}
	if err := mark(fd); err != nil {
		t.Fatal(err)
	}
	if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("fd %d is not close-on-exec after markCloexecFrom", fd)
	}
}
