// Package apps holds the acceptance tests of issue [H]: real applications
// from Debian's packages (WordPress with MariaDB, DokuWiki, Django with
// Gunicorn, uvicorn with WebSockets, Puma), each run the way an operator
// would run it: a sockvisor config, `sockvisor run`, and a private Apache
// that reads only the config sockvisor generates.
//
// Invariant: every process a test starts (Apache, sockvisor and its
// backends, mariadbd) is stopped and waited for, and every file it creates
// outside its temp directory is removed, in t.Cleanup, even when it fails.
// Nothing of the host's Apache, MariaDB, WordPress or DokuWiki is touched
// except one new /etc/wordpress/config-HOST.php per WordPress test.
package apps

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/cli"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

// TestMain lets the test binary be sockvisor: with SV_APPS_MAIN=1, or as
// the exec shim (whose environment is an allow-list that drops it), it
// runs the CLI on its arguments.
func TestMain(m *testing.M) {
	if os.Getenv("SV_APPS_MAIN") == "1" || (len(os.Args) > 1 && os.Args[1] == "exec-shim") {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// need gates a test on root and on every path existing (a binary or a
// package's file): locally it skips, in CI (CI set), which runs as root
// after scripts/install-deps.sh, it fails.
func need(t *testing.T, paths ...string) {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, append([]string{apachetest.Binary}, paths...)...)
}

// Restarts and load per app: 10 restarts under 4 clients, each run bounded
// in time and in requests.
const (
	restarts    = 10
	loadClients = 4
	loadLimit   = 90 * time.Second
	loadMax     = 200000
)

// stack is a private Apache plus one `sockvisor run` feeding it.
type stack struct {
	t       *testing.T
	dir     string // short temp dir: config, sockets, logs
	apache  *apachetest.Instance
	cfg     string // sockvisor's config file
	svConf  string // the Apache file sockvisor writes
	log     *testutil.SyncBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
	started time.Time
}

// newStack starts a private Apache that Includes whatever sockvisor
// renders (its main file and its virtual hosts file) and nothing else. It
// also listens on a second port, for a TLS site.
func newStack(t *testing.T) *stack {
	t.Helper()
	dir := testutil.ShortDir(t)
	s := &stack{t: t, dir: dir, svConf: filepath.Join(dir, "sv.conf"), log: &testutil.SyncBuffer{}}
	site := fmt.Sprintf("IncludeOptional %s\nIncludeOptional %s\n", s.svConf, filepath.Join(dir, "sv-sites.conf"))
	s.apache = apachetest.Start(t, site, apachetest.ExtraPorts(1))
	return s
}

// tlsSite returns a site block for name with a self-signed certificate,
// serving HTTPS on the stack's second port (plain HTTP on the first, not
// redirected), and the site's https:// base URL. Backends without a site
// are served in it too: the global config applies to every virtual host.
func (s *stack) tlsSite(name string) (hcl, base string) {
	t := s.t
	t.Helper()
	cert, key := filepath.Join(s.dir, name+".crt"), filepath.Join(s.dir, name+".key")
	runCmd(t, time.Minute, nil, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
		"-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name, "-keyout", key, "-out", cert)
	port := s.apache.Extra[0]
	hcl = fmt.Sprintf(`site %q {
  listen        = %s
  redirect_http = false
  tls {
    certificate = %q
    key         = %q
    listen      = ["127.0.0.1:%d"]
  }
}
`, name, s.Listen(), cert, key, port)
	return hcl, fmt.Sprintf("https://%s:%d", name, port)
}

// tlsClient is client for the TLS site: it trusts any certificate (the
// test's own) and dials the second port.
func (s *stack) tlsClient() *http.Client {
	addr := fmt.Sprintf("127.0.0.1:%d", s.apache.Extra[0])
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Port is the private Apache's loopback port; sites listen on it.
func (s *stack) Port() int { return s.apache.Port }

// Listen is the listen list of a site on the private Apache.
func (s *stack) Listen() string { return fmt.Sprintf(`["127.0.0.1:%d"]`, s.apache.Port) }

// run writes the config (the globals that point sockvisor at the private
// Apache, then body) and starts `sockvisor run`, waiting until every
// backend is ready.
func (s *stack) run(body string) {
	t := s.t
	t.Helper()
	argv := make([]string, 0, 4)
	for _, a := range s.apache.Command() {
		argv = append(argv, strconv.Quote(a))
	}
	src := fmt.Sprintf(`socket_dir     = %q
control_socket = %q
apache {
  config_file = %q
  reload      = "apachectl"
  apachectl   = [%s]
}
%s`, filepath.Join(s.dir, "s"), filepath.Join(s.dir, "ctl"), s.svConf, strings.Join(argv, ", "), body)
	// sockvisor keeps generated files (PHP-FPM pools, preloads) in
	// backend.DefaultStateDir/NAME, shared by every sockvisor on the
	// machine: remove the ones this test creates.
	for _, m := range regexp.MustCompile(`(?m)^backend "([^"]+)"`).FindAllStringSubmatch(body, -1) {
		state := filepath.Join(backend.DefaultStateDir, m[1])
		if _, err := os.Lstat(state); err != nil {
			t.Cleanup(func() { os.RemoveAll(state) })
		}
	}
	s.cfg = filepath.Join(s.dir, "sockvisor.hcl")
	if err := os.WriteFile(s.cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := s.cli("check"); code != 0 {
		t.Fatalf("sockvisor check: exit %d\n%s%s\nconfig:\n%s", code, out, errOut, src)
	}
	s.cmd = exec.Command(os.Args[0], "run", "--config", s.cfg)
	s.cmd.Env = append(os.Environ(), "SV_APPS_MAIN=1")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SV_APPS_VERBOSE") != "" {
			fmt.Fprintf(os.Stderr, "---- sockvisor log (%s)\n%s\n---- Apache error log\n%s\n---- rendered %s\n%s\n",
				t.Name(), s.log.String(), s.apache.Log(), s.svConf, s.rendered())
		}
	})
	s.waitReady(90 * time.Second)
	// The operator's check: doctor walks the private Apache's config
	// (apache.apachectl) and finds every target healthy.
	if code, out, errOut := s.cli("doctor"); code != 0 || !strings.Contains(out, "Healthy") {
		t.Errorf("sockvisor doctor: exit %d; want 0, healthy\n%s%s", code, out, errOut)
	}
}

// rendered returns the Apache files sockvisor wrote.
func (s *stack) rendered() string {
	var b strings.Builder
	for _, f := range []string{s.svConf, filepath.Join(s.dir, "sv-sites.conf")} {
		if data, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(&b, "# %s\n%s", f, data)
		}
	}
	return b.String()
}

// stop is SIGTERM, then SIGKILL to sockvisor's group after 30 s. Backends
// are in process groups of their own; sockvisor stops them on SIGTERM, and
// any survivor is killed by its group id from the last status.
func (s *stack) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	var pgids []int
	if st, err := s.status(); err == nil {
		for _, b := range st.Backends {
			for _, in := range b.Instances {
				if in.PID > 0 {
					pgids = append(pgids, in.PID)
				}
			}
		}
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Errorf("sockvisor did not stop within 30 s of SIGTERM")
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	for _, pg := range pgids {
		if syscall.Kill(-pg, 0) == nil {
			s.t.Errorf("backend process group %d survived sockvisor's stop", pg)
			syscall.Kill(-pg, syscall.SIGKILL)
		}
	}
}

// cli runs a sockvisor command in-process against the stack's config.
func (s *stack) cli(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	argv := append([]string{args[0], "--config", s.cfg}, args[1:]...)
	code := cli.Main(argv, &o, &e)
	return code, o.String(), e.String()
}

func (s *stack) status() (*daemon.StatusReport, error) {
	code, out, errOut := s.cli("status", "--json")
	if code != 0 {
		return nil, fmt.Errorf("status: exit %d: %s", code, errOut)
	}
	var st daemon.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("status: %w: %s", err, out)
	}
	return &st, nil
}

// waitReady waits for the running phase with every instance ready.
func (s *stack) waitReady(limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("sockvisor exited before it was ready")
		default:
		}
		st, err := s.status()
		if err == nil && st.Phase == "running" {
			ready := true
			for _, b := range st.Backends {
				for _, in := range b.Instances {
					ready = ready && in.Ready
				}
			}
			if ready {
				fmt.Fprintf(os.Stderr, "MEASURE %s: sockvisor ready after %v\n", s.t.Name(), time.Since(s.started).Round(time.Millisecond))
				return
			}
		}
		if err != nil {
			last = err.Error()
		} else {
			b, _ := json.Marshal(st)
			last = string(b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("sockvisor not ready within %v: %s", limit, last)
}

// client talks to the private Apache whatever host a URL names, keeps
// cookies and does not follow redirects.
func (s *stack) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	addr := fmt.Sprintf("127.0.0.1:%d", s.apache.Port)
	return &http.Client{
		Timeout: 60 * time.Second,
		Jar:     jar,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// response is a fetched page.
type response struct {
	status int
	header http.Header
	body   string
	url    string
}

func (r *response) String() string {
	body := r.body
	if len(body) > 600 {
		body = body[:600] + "..."
	}
	return fmt.Sprintf("%s: %d %v\n%s", r.url, r.status, r.header, body)
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) *response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, u, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: string(b), url: u}
}

func get(t *testing.T, c *http.Client, u string) *response {
	t.Helper()
	return do(t, c, http.MethodGet, u, nil)
}

// want fails unless r has the status and every fragment in its body.
func want(t *testing.T, r *response, status int, fragments ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want %d, got %s", status, r)
	}
	for _, f := range fragments {
		if !strings.Contains(r.body, f) {
			t.Fatalf("want %q in the body of %s", f, r)
		}
	}
}

// wantType fails unless u answers 200 with a Content-Type starting with
// typ. "javascript" accepts both names mime.types has used for it.
func wantType(t *testing.T, c *http.Client, u, typ string) {
	t.Helper()
	r := get(t, c, u)
	ct := r.header.Get("Content-Type")
	ok := strings.HasPrefix(ct, typ)
	if typ == "javascript" {
		ok = strings.HasPrefix(ct, "text/javascript") || strings.HasPrefix(ct, "application/javascript")
	}
	if r.status != 200 || !ok {
		t.Errorf("%s: %d %q; want 200 %s", u, r.status, ct, typ)
	}
}

// restartUnderLoad restarts backend `restarts` times through `sockvisor
// restart`, gap apart, while loadClients clients fetch u through Apache,
// and fails on any failed request: a transport error or a status >= 400
// (every URL it is given answers 200).
func (s *stack) restartUnderLoad(backend, u string, gap time.Duration) {
	t := s.t
	t.Helper()
	l := startLoad(s.client, u)
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	for i := range restarts {
		if code, _, errOut := s.cli("restart", backend); code != 0 {
			l.stop()
			t.Fatalf("restart %d of %s: exit %d: %s", i+1, backend, code, errOut)
		}
		time.Sleep(gap)
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	res := l.stop()
	fmt.Fprintf(os.Stderr, "MEASURE %s: %d restarts of %s in %v under %d clients: %d failed / %d requests %v\n",
		t.Name(), restarts, backend, took.Round(time.Millisecond), loadClients, res.failed, res.total, res.reasons)
	if res.failed != 0 || res.total-res.failed < restarts {
		t.Errorf("%d restarts under load: %d failed of %d requests %v; want none failed", restarts, res.failed, res.total, res.reasons)
	}
}

// load is a bounded stream of GETs from loadClients clients.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    loadResult
}

type loadResult struct {
	total, failed int
	reasons       map[string]int
}

func startLoad(newClient func() *http.Client, u string) *load {
	ctx, cancel := context.WithTimeout(context.Background(), loadLimit)
	l := &load{cancel: cancel, res: loadResult{reasons: map[string]int{}}}
	for range loadClients {
		c := newClient()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				resp, err := c.Do(req)
				reason := ""
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 400 {
						reason = strconv.Itoa(resp.StatusCode)
					}
				}
				if err != nil {
					if ctx.Err() != nil {
						return // cut short by stop: not counted
					}
					reason = err.Error()
				}
				l.mu.Lock()
				l.res.total++
				if reason != "" {
					l.res.failed++
					l.res.reasons[reason]++
				}
				full := l.res.total >= loadMax
				l.mu.Unlock()
				if full {
					return
				}
			}
		}()
	}
	return l
}

func (l *load) stop() loadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}

// writeFile writes content to dir/name (creating parents) and returns the path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCmd runs a command to completion within limit and fails the test
// with its output if it does not succeed.
func runCmd(t *testing.T, limit time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
