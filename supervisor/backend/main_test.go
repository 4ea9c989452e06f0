package backend

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/probe"
	"github.com/sockvisor/sockvisor/supervisor/shim"
)

// TestMain lets copies of the test binary play the exec shim and small
// backends (SV_ROLE), so fd hand-off, LISTEN_PID and group kills are tested
// without external programs.
func TestMain(m *testing.M) {
	testutil.RunRole(shim.Arg, shim.Main)
	if role := os.Getenv("SV_ROLE"); role != "" {
		os.Exit(playRole(role))
	}
	os.Exit(m.Run())
}

// playRole runs a test backend. Every role ends by itself within two
// minutes so nothing outlives a crashed test run for long.
func playRole(role string) int {
	go func() { time.Sleep(2 * time.Minute); os.Exit(9) }()
	switch role {
	case "exit1":
		return 1
	case "silent":
		// Holds the socket (fd 3) and never accepts, like a server stuck
		// loading its app; exits on TERM.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		d, _ := time.ParseDuration(os.Getenv("SV_DELAY"))
		if d == 0 {
			d = time.Minute
		}
		select {
		case <-sig:
			return 0
		case <-time.After(d):
			fmt.Fprintln(os.Stderr, "gave up without accepting")
			return 1
		}
	case "leftover":
		// A server from an earlier generation, still accepting on fd 3.
		l, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		serveHTTP(l, nil)
		return 0
	case "switchable":
		// Reads SV_MODE_FILE at start: "broken" boots for SV_DELAY and
		// exits 1, "stuck" never accepts, anything else serves HTTP.
		switch m, _ := os.ReadFile(os.Getenv("SV_MODE_FILE")); strings.TrimSpace(string(m)) {
		case "broken":
			return playRole("boot-fail")
		case "stuck":
			os.Setenv("SV_DELAY", "1m")
			return playRole("silent")
		}
		return playRole("http")
	case "pause":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		return 0
	case "notify-send":
		// Sends SV_MESSAGE to SV_NOTIFY; exit 1 if it cannot.
		c, err := net.Dial("unixgram", os.Getenv("SV_NOTIFY"))
		if err == nil {
			_, err = c.Write([]byte(os.Getenv("SV_MESSAGE")))
			c.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "notify-flood":
		// Sends SV_COUNT datagrams to SV_NOTIFY claiming uid SV_UID (root
		// may claim any).
		n, _ := strconv.Atoi(os.Getenv("SV_COUNT"))
		uid, _ := strconv.Atoi(os.Getenv("SV_UID"))
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
		if err != nil {
			return 1
		}
		oob := unix.UnixCredentials(&unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(uid), Gid: uint32(uid)})
		to := &unix.SockaddrUnix{Name: os.Getenv("SV_NOTIFY")}
		for range n {
			if err := unix.Sendmsg(fd, []byte("STATUS=flood\nREADY=1"), oob, to, 0); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return 0
	case "setsid-parent":
		// Accepts nothing itself: a child in a session (and group) of its
		// own serves fd 3, as a server that setsid's its workers does.
		exe, _ := os.Executable()
		child, err := syscall.ForkExec(exe, []string{exe}, &syscall.ProcAttr{
			Env:   []string{"SV_ROLE=leftover"},
			Files: []uintptr{0, 1, 2, 3},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 5
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		syscall.Kill(child, syscall.SIGTERM)
		var ws syscall.WaitStatus
		syscall.Wait4(child, &ws, 0, nil)
		return 0
	case "notifier":
		return notifier()
	case "boot-fail":
		// A server that boots for SV_DELAY, then dies of a broken app.
		fmt.Println("booting")
		d, _ := time.ParseDuration(os.Getenv("SV_DELAY"))
		time.Sleep(d)
		fmt.Fprintln(os.Stderr, "Traceback (most recent call last):")
		fmt.Fprintln(os.Stderr, "RuntimeError: broken app")
		return 1
	case "sleeper":
		signal.Ignore(syscall.SIGTERM)
		time.Sleep(2 * time.Minute)
		return 0
	case "http", "stubborn", "unlinker":
		if pid := os.Getenv("LISTEN_PID"); pid != strconv.Itoa(os.Getpid()) {
			fmt.Fprintf(os.Stderr, "LISTEN_PID=%q is not my pid %d\n", pid, os.Getpid())
			return 3
		}
		// Before net.FileListener makes it non-blocking again.
		if fl, err := unix.FcntlInt(3, unix.F_GETFL, 0); err == nil {
			fd3NonBlock = fl&unix.O_NONBLOCK != 0
		}
		l, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		if role == "stubborn" {
			signal.Ignore(syscall.SIGTERM)
			// A grandchild in the same group that also ignores TERM.
			exe, _ := os.Executable()
			_, err := syscall.ForkExec(exe, []string{exe}, &syscall.ProcAttr{Env: []string{"SV_ROLE=sleeper"}, Files: []uintptr{0, 1, 2}})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 5
			}
			go http.Serve(l, http.HandlerFunc(whoami))
			select {}
		}
		var onStop func()
		if role == "unlinker" {
			// Like PHP-FPM: remove the socket path on the way out.
			onStop = func() { os.Remove(os.Getenv("SV_SOCKET")) }
		}
		serveHTTP(l, onStop)
		return 0
	case "self-http":
		l, err := net.Listen("unix", os.Getenv("SOCKVISOR_SOCKET"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		serveHTTP(l, nil)
		return 0
	case "fcgi-stdin":
		l, err := net.FileListener(os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		tl := &trackingListener{Listener: l}
		go fcgi.Serve(tl, http.HandlerFunc(whoami))
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		tl.drain()
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
	return 2
}

// notifier serves its NOTIFY_SOCKET value over HTTP on fd 3 and walks
// through the sd_notify contract: READY=1 at once, then one step per
// request for /next: RELOADING=1, READY=1 with MAINPID= of a child in its
// group, WATCHDOG=1.
func notifier() int {
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	addr := os.Getenv("NOTIFY_SOCKET")
	exe, _ := os.Executable()
	child, err := syscall.ForkExec(exe, []string{exe}, &syscall.ProcAttr{Env: []string{"SV_ROLE=pause"}, Files: []uintptr{0, 1, 2}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 5
	}
	send := func(msg string) {
		if c, err := net.Dial("unixgram", addr); err == nil {
			c.Write([]byte(msg))
			c.Close()
		} else {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	var mu sync.Mutex // guards steps
	steps := []string{"RELOADING=1\nSTATUS=reloading", fmt.Sprintf("READY=1\nSTATUS=reloaded\nMAINPID=%d", child), "WATCHDOG=1"}
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/next" {
			mu.Lock()
			if len(steps) > 0 {
				send(steps[0])
				steps = steps[1:]
			}
			mu.Unlock()
		}
		fmt.Fprint(w, addr)
	}))
	send("READY=1\nSTATUS=serving")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}

// trackingListener counts connections not yet closed, and Accept calls
// under way (one may return a connection as the listener closes).
type trackingListener struct {
	net.Listener
	active atomic.Int64
}

func (l *trackingListener) Accept() (net.Conn, error) {
	l.active.Add(1)
	c, err := l.Listener.Accept()
	if err != nil {
		l.active.Add(-1)
		return nil, err
	}
	return &trackedConn{Conn: c, l: l}, nil
}

// drain stops accepting and waits (at most 10s) for the Accept under way
// to return and accepted connections to be closed by their handlers;
// clients here never keep connections alive.
func (l *trackingListener) drain() {
	l.Close()
	for deadline := time.Now().Add(10 * time.Second); l.active.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.l.active.Add(-1) })
	return c.Conn.Close()
}

// serveHTTP serves whoami on l until SIGTERM, then stops accepting and
// lets accepted connections finish. (http.Server.Shutdown would drop a
// request read after it began: net/http closes such connections unanswered.)
func serveHTTP(l net.Listener, onStop func()) {
	tl := &trackingListener{Listener: l}
	srv := &http.Server{Handler: http.HandlerFunc(whoami)}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	fmt.Println("serving")
	if addr := os.Getenv("NOTIFY_SOCKET"); addr != "" {
		if c, err := net.Dial("unixgram", addr); err == nil {
			c.Write([]byte("READY=1\nSTATUS=serving"))
			c.Close()
		}
	}
	go srv.Serve(tl)
	<-sig
	tl.drain()
	if onStop != nil {
		onStop()
	}
}

// fd3NonBlock is whether fd 3 was non-blocking when the role started.
var fd3NonBlock bool

// whoami reports what the process got from the shim.
func whoami(w http.ResponseWriter, r *http.Request) {
	umask := unix.Umask(0)
	unix.Umask(umask)
	groups, _ := os.Getgroups()
	fmt.Fprintf(w, "pid=%d listen_pid=%s listen_fds=%s fdnames=%s uid=%d gid=%d umask=%04o groups=%v notify=%t nonblock=%t\n",
		os.Getpid(), os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"),
		os.Getuid(), os.Getgid(), umask, groups, os.Getenv("NOTIFY_SOCKET") != "", fd3NonBlock)
}

// testSocket is a minimal stand-in for sockets.Listener: a listening
// socket held as *os.File, with a hidden hard link to restore its path.
var _ Socket = (*testSocket)(nil)

type testSocket struct {
	f    *os.File
	path string
	keep string
}

func newTestSocket(t *testing.T, path string) *testSocket {
	t.Helper()
	if len(path) > config.MaxSocketPath {
		t.Fatalf("socket path %s is too long", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, 33); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		t.Fatal(err)
	}
	// Leave it non-blocking, as Go would, to prove SetBlocking is called.
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	s := &testSocket{f: os.NewFile(uintptr(fd), path), path: path, keep: filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".keep")}
	if err := os.Link(path, s.keep); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.f.Close() })
	return s
}

func (s *testSocket) File() *os.File { return s.f }
func (s *testSocket) Path() string   { return s.path }
func (s *testSocket) SetBlocking() error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}
func (s *testSocket) EnsurePath() (bool, error) {
	if _, err := os.Lstat(s.path); err == nil {
		return false, nil
	}
	tmp := s.path + ".tmp"
	if err := os.Link(s.keep, tmp); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, s.path)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("socket path: %v", err)
	}
	return st.Ino
}

// env is one test's world: a short temp dir readable by www-data, a copy
// of the test binary there (the shim and the role backends), the test
// apps, and a state dir.
type env struct {
	t     *testing.T
	dir   string
	exe   string
	state string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := testutil.ShortDir(t)
	e := &env{t: t, dir: dir, exe: filepath.Join(dir, "sv.test"), state: filepath.Join(dir, "state")}
	testutil.CopySelf(t, e.exe)
	for _, f := range []string{"app.py", "hello.php"} {
		copyFile(t, filepath.Join("testdata", f), filepath.Join(dir, f), 0o644)
	}
	return e
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// parse builds a validated config with socket_dir = the env's dir.
func (e *env) parse(body string) *config.Config {
	e.t.Helper()
	src := fmt.Sprintf("socket_dir = %q\nsocket_group = \"www-data\"\n%s", e.dir, body)
	cfg, err := config.Parse([]byte(src), "test.hcl")
	if err != nil {
		e.t.Fatalf("config: %v\n%s", err, src)
	}
	return cfg
}

// sockets creates b's listening sockets.
func (e *env) sockets(b *config.Backend) []Socket {
	var out []Socket
	for _, s := range b.Sockets {
		out = append(out, newTestSocket(e.t, s.Path))
	}
	return out
}

// start runs b until the test ends; cleanup stops it and checks that no
// process of any group it started survives and no goroutine leaks.
func (e *env) start(b *config.Backend, socks []Socket, opts Options) *Backend {
	e.t.Helper()
	before := runtime.NumGoroutine()
	if opts.Logger == nil {
		opts.Logger = testutil.Logger("test", hclog.Info)
	}
	if opts.Executable == "" {
		opts.Executable = e.exe
	}
	if opts.StateDir == "" {
		opts.StateDir = e.state
	}
	be, err := New(b, socks, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	var pids sync.Map // every pid seen, to check their groups afterwards
	runErr := make(chan error, 1)
	go func() { runErr <- be.Run(context.Background()) }()
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			for _, in := range be.Status().Instances {
				if in.PID != 0 {
					pids.Store(in.PID, true)
				}
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), b.StopTimeout+15*time.Second)
		defer cancel()
		if err := be.Stop(ctx); err != nil {
			e.t.Errorf("Stop: %v", err)
		}
		select {
		case err := <-runErr:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-ctx.Done():
			e.t.Error("Run did not return after Stop")
		}
		close(stopWatch)
		<-watched
		pids.Range(func(k, _ any) bool {
			if m := procfs.GroupMembers(k.(int)); len(m) > 0 {
				e.t.Errorf("process group %d still has %v after Stop", k, m)
				for _, pid := range m {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return true
		})
		if st := be.Status(); st.State != StateStopped {
			e.t.Errorf("state after Stop = %s; want stopped", st.State)
		}
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			e.t.Errorf("%d goroutines leaked:\n%s", n-before, buf[:runtime.Stack(buf, true)])
		}
	})
	return be
}

// waitUntil polls cond until it holds, and fails the test if it still
// does not after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitReady(t *testing.T, be *Backend, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := be.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}

// requester sends one request in the backend's protocol and checks it.
type requester func(ctx context.Context) error

func httpRequester(path, urlPath string) requester {
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	return func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://localhost"+urlPath, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || len(body) == 0 {
			return fmt.Errorf("status %d body %q", resp.StatusCode, body)
		}
		return nil
	}
}

func httpGet(ctx context.Context, path, urlPath string) (int, string, error) {
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://localhost"+urlPath, nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func uwsgiRequester(path string) requester {
	return func(ctx context.Context) error {
		code, err := probe.UWSGI(ctx, path, "/")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	}
}

func fcgiRequester(path, script, want string) requester {
	return func(ctx context.Context) error {
		code, body, err := probe.FastCGIRequest(ctx, path, "/"+filepath.Base(script), map[string]string{"SCRIPT_FILENAME": script})
		if err == nil && (code != 200 || !strings.HasPrefix(string(body), want)) {
			err = fmt.Errorf("status %d body %q", code, body)
		}
		return err
	}
}

// loadResult counts requests of a load run.
type loadResult struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       map[string]int
	first      time.Time // of the failures
	last       time.Time
}

func (r *loadResult) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed.Load() == 0 {
		return fmt.Sprintf("%d ok, 0 failed", r.ok.Load())
	}
	return fmt.Sprintf("%d ok, %d failed over %v %v", r.ok.Load(), r.failed.Load(), r.last.Sub(r.first).Round(time.Millisecond), r.errs)
}

// runLoad drives clients concurrent requesters until stop is closed, at
// most maxPerClient requests each, every request bounded by 15s.
func runLoad(clients int, do requester, stop <-chan struct{}) (*loadResult, func()) {
	const maxPerClient = 200000
	r := &loadResult{errs: map[string]int{}}
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range maxPerClient {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				err := do(ctx)
				cancel()
				if err != nil {
					r.failed.Add(1)
					r.mu.Lock()
					r.errs[err.Error()]++
					if r.first.IsZero() {
						r.first = time.Now()
					}
					r.last = time.Now()
					r.mu.Unlock()
				} else {
					r.ok.Add(1)
				}
			}
		}()
	}
	return r, wg.Wait
}

// fakeClock stands still until the test advances it, and records every
// delay asked of it.
type fakeClock struct {
	mu     sync.Mutex // guards the fields below
	now    time.Time
	waits  []time.Duration
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	d  time.Duration
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), d: d, ch: ch})
	return ch
}

// advance moves the clock by d and fires every timer due by then.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	pending := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			pending = append(pending, tm)
		} else {
			tm.ch <- c.now
		}
	}
	c.timers = pending
}

// next returns how long until the earliest pending timer asked for a delay
// between min and max fires, and false if there is none.
func (c *fakeClock) next(min, max time.Duration) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	for _, tm := range c.timers {
		if tm.d >= min && tm.d <= max && (at.IsZero() || tm.at.Before(at)) {
			at = tm.at
		}
	}
	return at.Sub(c.now), !at.IsZero()
}

func (c *fakeClock) delays(atLeast time.Duration) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, d := range c.waits {
		if d >= atLeast {
			out = append(out, d)
		}
	}
	return out
}
