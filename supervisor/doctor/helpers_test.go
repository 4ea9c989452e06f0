package doctor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// startProc starts a backend in its own process group; cleanup kills the
// group and waits.
func startProc(t *testing.T, dir string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	testutil.StartGroup(t, cmd)
	return cmd
}

const wsgiApp = `def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi ok"]
`

// gunicorn serves an HTTP app on each socket (mode 0777: umask 0).
func gunicorn(t *testing.T, dir string, socks ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := []string{"/usr/bin/gunicorn", "--chdir", dir, "--workers", "1", "--log-level", "warning"}
	for _, s := range socks {
		argv = append(argv, "--bind", "unix:"+s)
	}
	startProc(t, dir, append(argv, "app:app")...)
	for _, s := range socks {
		testutil.WaitSocket(t, s, 15*time.Second)
	}
}

// uwsgi serves the same app in the uwsgi protocol.
func uwsgi(t *testing.T, dir, sock string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	startProc(t, dir, "/usr/bin/uwsgi", "--plugin", "python3", "--socket", sock, "--chmod-socket=666",
		"--wsgi-file", filepath.Join(dir, "app.py"), "--callable", "app", "--die-on-term", "--disable-logging")
	testutil.WaitSocket(t, sock, 15*time.Second)
}

// phpFPM runs a PHP-FPM pool on sock, owned by www-data with mode 0660.
func phpFPM(t *testing.T, dir, sock string) {
	t.Helper()
	conf := filepath.Join(dir, "fpm.conf")
	src := fmt.Sprintf(`[global]
pid = %[1]s/fpm.pid
error_log = /dev/stderr
daemonize = no
[www]
user = www-data
group = www-data
listen = %[2]s
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = static
pm.max_children = 2
`, dir, sock)
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	fpm, _ := testutil.PHPFPM(t)
	startProc(t, dir, fpm, "-F", "-y", conf)
	testutil.WaitSocket(t, sock, 15*time.Second)
}

// httpServer is a tiny HTTP server on a unix socket answering body, so
// tests can tell which socket served a request.
func httpServer(t *testing.T, dir, sock, body string) {
	t.Helper()
	// Raw on purpose: it answers anything that is not HTTP with a 400 at
	// once, like Node's server, instead of waiting for a line ending.
	script := `import os, socketserver, sys
class H(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            data += chunk
            if not data[:1].isalpha():
                break
        if data.split(b" ", 1)[0] in (b"GET", b"HEAD"):
            status, body = "200 OK", sys.argv[2].encode()
        else:
            status, body = "400 Bad Request", b"bad request"
        head = "HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body))
        self.request.sendall(head.encode() + body)
os.umask(0)
socketserver.ThreadingUnixStreamServer(sys.argv[1], H).serve_forever()
`
	f := filepath.Join(dir, "srv.py")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	startProc(t, dir, "python3", f, sock, body)
	testutil.WaitSocket(t, sock, 15*time.Second)
}

// diagnose runs the doctor against a private Apache and logs its text report.
func diagnose(t *testing.T, in *apachetest.Instance, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts.Apachectl = in.Command()
	opts.Log = testutil.Logger("", hclog.Debug)
	r, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("doctor could not run: %v", err)
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "--- %s report:\n%s", t.Name(), b.String())
	return r
}

// target returns the report's target at the site file's line.
func target(t *testing.T, r *Report, in *apachetest.Instance, line int) *Target {
	t.Helper()
	pos := fmt.Sprintf("%s:%d", in.Site, line)
	for _, tg := range r.Targets {
		if tg.Pos == pos {
			return tg
		}
	}
	t.Fatalf("no target at %s", pos)
	return nil
}

// finding returns tg's finding with id, failing the test when absent.
func finding(t *testing.T, tg *Target, id string) Finding {
	t.Helper()
	for _, f := range tg.Findings {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("%s: no %s finding; got %+v", tg.Pos, id, tg.Findings)
	return Finding{}
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s %q does not mention %q", what, s, sub)
		}
	}
}

// get fetches path through Apache and returns the status and body.
func get(t *testing.T, in *apachetest.Instance, path string) (int, string) {
	t.Helper()
	code, body, err := in.Get(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}
