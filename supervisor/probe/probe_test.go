package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// TestMain doubles as a helper child: with SV_PROBE_ROLE=dial it probes
// SV_PROBE_PATH and prints the errno it got, so a test can probe as another
// user. Otherwise it runs the tests and checks for leaks (testutil.Main).
func TestMain(m *testing.M) {
	if os.Getenv("SV_PROBE_ROLE") == "dial" {
		_, err := HTTP(context.Background(), os.Getenv("SV_PROBE_PATH"), "/")
		switch {
		case errors.Is(err, syscall.EACCES):
			fmt.Println("EACCES")
		default:
			fmt.Println("other:", err)
		}
		os.Exit(0)
	}
	testutil.Main(m)
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startServer runs argv in its own process group, killed in cleanup, and
// waits until path accepts connections.
func startServer(t *testing.T, path string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	testutil.StartGroup(t, cmd)
	testutil.WaitSocket(t, path, 20*time.Second)
}

func startGunicorn(t *testing.T, dir string) string {
	testutil.NeedBinary(t, "gunicorn")
	path := filepath.Join(dir, "g.sock")
	startServer(t, path, "gunicorn", "--bind", "unix:"+path, "--workers", "1",
		"--chdir", testdata(t, ""), "app:app")
	return path
}

func startUWSGI(t *testing.T, dir, flag string) string {
	testutil.NeedBinary(t, "uwsgi")
	path := filepath.Join(dir, "u.sock")
	startServer(t, path, "uwsgi", "--plugin", "python3", flag, path, "--master",
		"--processes", "1", "--wsgi-file", testdata(t, "app.py"), "--need-app")
	return path
}

func startFPM(t *testing.T, dir string) string {
	testutil.NeedRoot(t)
	fpm, _ := testutil.PHPFPM(t)
	path := filepath.Join(dir, "f.sock")
	conf := filepath.Join(dir, "fpm.conf")
	src := fmt.Sprintf(`[global]
error_log = /proc/self/fd/2
daemonize = no
[probe]
listen = %s
user = www-data
group = www-data
pm = static
pm.max_children = 1
`, path)
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	startServer(t, path, fpm, "-F", "-R", "-n", "-y", conf)
	return path
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestHTTPGunicorn(t *testing.T) {
	path := startGunicorn(t, testutil.ShortDir(t))
	code, err := HTTP(ctxTimeout(t, 5*time.Second), path, "/healthz?x=1")
	if err != nil || code != 200 {
		t.Fatalf("HTTP / = %d, %v; want 200, nil", code, err)
	}
	// No deadline in the context: DefaultTimeout applies, nothing expires early.
	if code, err := HTTP(context.Background(), path, "/"); err != nil || code != 200 {
		t.Fatalf("HTTP without deadline = %d, %v; want 200, nil", code, err)
	}
	code, err = HTTP(ctxTimeout(t, 5*time.Second), path, "/fail")
	if code != 503 || !errors.Is(err, ErrServerError) {
		t.Fatalf("HTTP /fail = %d, %v; want 503 and ErrServerError", code, err)
	}
}

func TestHTTPUWSGIHTTPSocket(t *testing.T) {
	path := startUWSGI(t, testutil.ShortDir(t), "--http-socket")
	if code, err := HTTP(ctxTimeout(t, 5*time.Second), path, "/"); err != nil || code != 200 {
		t.Fatalf("HTTP = %d, %v; want 200", code, err)
	}
}

func TestUWSGI(t *testing.T) {
	path := startUWSGI(t, testutil.ShortDir(t), "--socket")
	if code, err := UWSGI(ctxTimeout(t, 5*time.Second), path, "/ready?a=b"); err != nil || code != 200 {
		t.Fatalf("UWSGI = %d, %v; want 200", code, err)
	}
	code, err := UWSGI(ctxTimeout(t, 5*time.Second), path, "/fail")
	if code != 503 || !errors.Is(err, ErrServerError) {
		t.Fatalf("UWSGI /fail = %d, %v; want 503 and ErrServerError", code, err)
	}
	// An HTTP probe against a uwsgi socket must fail, not look ready.
	if _, err := HTTP(ctxTimeout(t, 5*time.Second), path, "/"); err == nil {
		t.Fatal("HTTP probe of a uwsgi socket succeeded")
	}
}

func TestFastCGIPHPFPM(t *testing.T) {
	path := startFPM(t, testutil.ShortDir(t))
	vals, err := FastCGI(ctxTimeout(t, 5*time.Second), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := vals["FCGI_MPXS_CONNS"]; !ok {
		t.Fatalf("GET_VALUES_RESULT = %v; want FCGI_MPXS_CONNS", vals)
	}
}

// uWSGI's FastCGI parser ignores management records, so its readiness needs
// a real request.
func TestFastCGIRequestUWSGI(t *testing.T) {
	path := startUWSGI(t, testutil.ShortDir(t), "--fastcgi-socket")
	if _, err := FastCGI(ctxTimeout(t, 500*time.Millisecond), path); err == nil {
		t.Fatal("uWSGI answered FCGI_GET_VALUES; the preset could use it")
	}
	code, body, err := FastCGIRequest(ctxTimeout(t, 5*time.Second), path, "/x?y=1", nil)
	if err != nil || code != 200 || string(body) != "ok /x\n" {
		t.Fatalf("FastCGIRequest = %d %q %v; want 200 \"ok /x\"", code, body, err)
	}
	code, _, err = FastCGIRequest(ctxTimeout(t, 5*time.Second), path, "/fail", nil)
	if code != 503 || !errors.Is(err, ErrServerError) {
		t.Fatalf("FastCGIRequest /fail = %d, %v; want 503 and ErrServerError", code, err)
	}
}

func TestFastCGIRequestPHPFPM(t *testing.T) {
	path := startFPM(t, testutil.ShortDir(t))
	script := testdata(t, "hello.php")
	code, body, err := FastCGIRequest(ctxTimeout(t, 5*time.Second), path, "/hello.php", map[string]string{"SCRIPT_FILENAME": script})
	if err != nil || code != 200 || !strings.HasPrefix(string(body), "hello from php") {
		t.Fatalf("FastCGIRequest = %d %q %v", code, body, err)
	}
	code, _, _ = FastCGIRequest(ctxTimeout(t, 5*time.Second), path, "/nope.php", map[string]string{"SCRIPT_FILENAME": "/nonexistent/nope.php"})
	if code != 404 {
		t.Fatalf("missing script: status %d; want 404", code)
	}
}

func TestFastCGIRejectsHTTP(t *testing.T) {
	path := startGunicorn(t, testutil.ShortDir(t))
	// gunicorn answers nothing to a bare GET_VALUES; the deadline ends it.
	_, err := FastCGI(ctxTimeout(t, 700*time.Millisecond), path)
	if err == nil {
		t.Fatal("FastCGI probe of gunicorn succeeded")
	}
}

func TestDetect(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T, dir string) string
		want  Kind
	}{
		{"php-fpm", startFPM, KindFastCGI},
		{"gunicorn", startGunicorn, KindHTTP},
		{"uwsgi-socket", func(t *testing.T, d string) string { return startUWSGI(t, d, "--socket") }, KindUWSGILikely},
		// uWSGI's FastCGI parser waits for a request: indistinguishable from busy.
		{"uwsgi-fastcgi", func(t *testing.T, d string) string { return startUWSGI(t, d, "--fastcgi-socket") }, KindUnknown},
		{"silent", startSilent, KindUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.start(t, testutil.ShortDir(t))
			start := time.Now()
			kind, ev, err := Detect(ctxTimeout(t, 5*time.Second), path)
			if err != nil {
				t.Fatal(err)
			}
			if kind != c.want {
				t.Fatalf("Detect = %s (%s); want %s", kind, ev, c.want)
			}
			if ev == "" {
				t.Fatal("empty evidence")
			}
			fmt.Fprintf(os.Stderr, "detect %s: %s (%s) in %v\n", c.name, kind, ev, time.Since(start).Round(time.Millisecond))
		})
	}
}

// startSilent accepts connections and never answers.
func startSilent(t *testing.T, dir string) string {
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return path
}

func TestDialErrno(t *testing.T) {
	dir := testutil.ShortDir(t)
	ctx := ctxTimeout(t, 5*time.Second)

	if _, err := HTTP(ctx, filepath.Join(dir, "missing.sock"), "/"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing path: %v; want ENOENT", err)
	}

	// A bound socket nobody listens on is what a crashed server leaves.
	stale := filepath.Join(dir, "stale.sock")
	testutil.ListenUnix(t, stale, -1)
	if _, err := FastCGI(ctx, stale); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("stale socket: %v; want ECONNREFUSED", err)
	}

	// A full backlog on a socket nobody accepts from.
	full := filepath.Join(dir, "full.sock")
	testutil.ListenUnix(t, full, 0)
	var filled []net.Conn
	defer func() {
		for _, c := range filled {
			c.Close()
		}
	}()
	for i := 0; i < 10; i++ {
		c, err := net.Dial("unix", full)
		if err != nil {
			break
		}
		filled = append(filled, c)
	}
	if _, _, err := Detect(ctx, full); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("full backlog: %v; want EAGAIN", err)
	}
}

// TestDialEACCES probes a root-only socket as nobody from a child process.
func TestDialEACCES(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "private.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	exe := testutil.CopySelf(t, filepath.Join(dir, "probe.test"))
	cmd := exec.Command(exe)
	cmd.Env = []string{"SV_PROBE_ROLE=dial", "SV_PROBE_PATH=" + path}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "EACCES" {
		t.Fatalf("child got %q; want EACCES", got)
	}
}

func TestUWSGIPacket(t *testing.T) {
	pkt, err := uwsgiRequest("/a?b=c")
	if err != nil {
		t.Fatal(err)
	}
	if pkt[0] != 0 || pkt[3] != 0 || int(pkt[1])|int(pkt[2])<<8 != len(pkt)-4 {
		t.Fatalf("bad header % x for %d bytes", pkt[:4], len(pkt))
	}
	if _, err := uwsgiRequest("relative"); err == nil {
		t.Fatal("relative path accepted")
	}
}

func TestParseNameValues(t *testing.T) {
	long := strings.Repeat("v", 200)
	b := []byte{3, 1, 'a', 'b', 'c', 'x', 0x80, 0, 0, 1, 0x80, 0, 0, 200}
	b = append(b, 'k')
	b = append(b, long...)
	got, err := parseNameValues(b)
	if err != nil || got["abc"] != "x" || got["k"] != long {
		t.Fatalf("parse = %v, %v", got, err)
	}
	if _, err := parseNameValues([]byte{5, 0, 'a'}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("truncated pairs: %v; want ErrProtocol", err)
	}
}

// TestCancel: cancelling the context interrupts a probe of a silent
// backend at once, and without a deadline DefaultTimeout still ends it.
func TestCancel(t *testing.T) {
	path := startSilent(t, testutil.ShortDir(t))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	if _, err := FastCGI(ctx, path); err == nil {
		t.Fatal("probe of a silent socket succeeded")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("cancelled probe took %v", took)
	}
	start = time.Now()
	if _, err := HTTP(context.Background(), path, "/"); err == nil {
		t.Fatal("probe of a silent socket succeeded")
	}
	if took := time.Since(start); took < DefaultTimeout-100*time.Millisecond || took > DefaultTimeout+time.Second {
		t.Fatalf("probe without deadline took %v; want about %v", took, DefaultTimeout)
	}
}
