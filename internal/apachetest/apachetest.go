// Package apachetest runs a private Apache instance for tests: Debian's real
// apache2 binary with a config of its own in a temp directory, listening on a
// free loopback port, so tests never touch the system Apache.
//
// Invariant: every instance started by Start is stopped (and its process
// waited for) by t.Cleanup, even when the test fails; Launch is the same
// launcher without a testing.TB, and its caller owns Stop.
package apachetest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// Binary is Debian's Apache server binary.
const Binary = "/usr/sbin/apache2"

// Modules are loaded by every instance, enough for every scheme sockvisor renders.
var Modules = []string{
	"mpm_event", "authz_core", "authz_host", "alias", "mime", "dir", "headers",
	"proxy", "proxy_http", "proxy_fcgi", "proxy_uwsgi", "proxy_wstunnel",
	"proxy_balancer", "slotmem_shm", "lbmethod_byrequests", "setenvif",
	"rewrite", "ssl", "socache_shmcb", "env",
}

// Instance is one running private Apache.
type Instance struct {
	Dir  string // ServerRoot: holds apache2.conf, logs, pid file
	Port int
	// Extra are the additional ports of the ExtraPorts option.
	Extra    []int
	ConfFile string // the main config file
	// Site is a file Included by the main config; tests write ProxyPass lines here.
	Site     string
	ErrorLog string
	cmd      *exec.Cmd
	done     chan struct{}
}

// Available reports whether Apache is installed; tests skip without it.
func Available() bool {
	_, err := os.Stat(Binary)
	return err == nil
}

// Option changes how Start runs Apache.
type Option func(*LaunchOptions)

// LaunchOptions says how Launch runs Apache.
type LaunchOptions struct {
	// Site is written to the file the main config Includes (may be empty).
	Site string
	// PrivateTmp: see the PrivateTmp option.
	PrivateTmp bool
	// Output receives Apache's stdout and stderr; nil means os.Stderr.
	Output io.Writer
	// StartTimeout bounds the wait for the port to open; 0 means 10 s.
	StartTimeout time.Duration
	// ExtraPorts is how many more free loopback ports Apache listens on
	// (Instance.Extra), e.g. one for a TLS virtual host.
	ExtraPorts int
	// Port is the main port; 0 picks a free one.
	Port int
}

// PrivateTmp runs Apache in a mount namespace of its own with fresh, empty
// /tmp and /var/tmp, as systemd's PrivateTmp=true does for apache2.service.
// The instance's directory is then created under /run, outside both.
func PrivateTmp() Option { return func(o *LaunchOptions) { o.PrivateTmp = true } }

// ListenOn makes port (from FreePort) the instance's main port, so a test
// can name it in the site config it starts Apache with.
func ListenOn(port int) Option { return func(o *LaunchOptions) { o.Port = port } }

// ExtraPorts makes Apache listen on n more free loopback ports, listed in
// Instance.Extra.
func ExtraPorts(n int) Option { return func(o *LaunchOptions) { o.ExtraPorts = n } }

// Start writes a config that Includes site (may be empty) and starts Apache in
// the foreground as a child of the test. Apache runs its workers as
// www-data, like Debian's own, so socket permissions are tested for real.
// Without apache2 or root it skips the test (fails it in CI); it stops
// Apache in t.Cleanup.
func Start(t testing.TB, site string, opts ...Option) *Instance {
	t.Helper()
	testutil.NeedBinary(t, Binary)
	testutil.NeedRoot(t)
	o := LaunchOptions{Site: site}
	for _, opt := range opts {
		opt(&o)
	}
	in, err := Launch(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	return in
}

// Launch starts a private Apache without a testing.TB, for programs such as
// the benchmarks. It needs root and apache2. The caller must call Stop, which
// also removes the instance's directory; on error nothing is left running.
func Launch(o LaunchOptions) (in *Instance, err error) {
	if !Available() {
		return nil, fmt.Errorf("apachetest: %s not found (apt-get install apache2)", Binary)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("apachetest: needs root (Apache switches to www-data)")
	}
	base := ""
	if o.PrivateTmp {
		base = "/run"
	}
	dir, err := os.MkdirTemp(base, "svap")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// Workers run as www-data and must read the site file.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	port := o.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	var extra []int
	for len(extra) < o.ExtraPorts {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		// The kernel may hand out a port twice; Apache refuses a Listen twice.
		if p != port && !slices.Contains(extra, p) {
			extra = append(extra, p)
		}
	}
	in = &Instance{
		Dir:      dir,
		Port:     port,
		Extra:    extra,
		ConfFile: filepath.Join(dir, "apache2.conf"),
		Site:     filepath.Join(dir, "site.conf"),
		ErrorLog: filepath.Join(dir, "error.log"),
		done:     make(chan struct{}),
	}
	if err := os.WriteFile(in.Site, []byte(o.Site), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(in.ConfFile, []byte(in.mainConfig()), 0o644); err != nil {
		return nil, err
	}
	in.cmd = exec.Command(Binary, "-d", dir, "-f", in.ConfFile, "-DFOREGROUND")
	if o.PrivateTmp {
		// unshare and sh both exec, so the pid stays Apache's.
		in.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs -o mode=1777 tmpfs /tmp && mount -t tmpfs -o mode=1777 tmpfs /var/tmp && exec "$0" "$@"`,
			Binary, "-d", dir, "-f", in.ConfFile, "-DFOREGROUND")
	}
	out := o.Output
	if out == nil {
		out = os.Stderr
	}
	in.cmd.Stdout, in.cmd.Stderr = out, out
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := in.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { in.cmd.Wait(); close(in.done) }()
	limit := o.StartTimeout
	if limit == 0 {
		limit = 10 * time.Second
	}
	if err := in.waitServing(limit); err != nil {
		in.stop()
		return nil, fmt.Errorf("apache did not start: %w\n%s", err, in.Log())
	}
	return in, nil
}

// Stop stops Apache (SIGTERM, then SIGKILL to its process group after 10 s),
// waits for it and removes the instance's directory. It is safe to call
// more than once.
func (in *Instance) Stop() error {
	in.stop()
	return os.RemoveAll(in.Dir)
}

func (in *Instance) mainConfig() string {
	var b strings.Builder
	for _, m := range Modules {
		fmt.Fprintf(&b, "LoadModule %s_module /usr/lib/apache2/modules/mod_%s.so\n", m, m)
	}
	for _, p := range in.Extra {
		fmt.Fprintf(&b, "Listen 127.0.0.1:%d\n", p)
	}
	fmt.Fprintf(&b, `ServerName localhost
Listen 127.0.0.1:%d
PidFile %s/apache2.pid
DefaultRuntimeDir %s
Mutex file:%s default
ErrorLog %s
LogLevel warn
User www-data
Group www-data
DocumentRoot %s
TypesConfig /etc/mime.types
<Directory />
  Require all granted
</Directory>
Include %s
`, in.Port, in.Dir, in.Dir, in.Dir, in.ErrorLog, in.Dir, in.Site)
	return b.String()
}

// URL returns the instance's base URL plus path.
func (in *Instance) URL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", in.Port, path)
}

// ConfigTest runs apache2 -t against the instance's config.
func (in *Instance) ConfigTest() (string, error) {
	out, err := exec.Command(Binary, "-d", in.Dir, "-f", in.ConfFile, "-t").CombinedOutput()
	return string(out), err
}

// Command returns the argv prefix that addresses this instance, for code
// under test that runs configtest or graceful itself.
func (in *Instance) Command() []string {
	return []string{Binary, "-d", in.Dir, "-f", in.ConfFile}
}

// Graceful asks the instance to re-read its config, as apachectl graceful does.
func (in *Instance) Graceful(t testing.TB) {
	t.Helper()
	if err := in.Reload(); err != nil {
		t.Fatal(err)
	}
}

// Reload is Graceful without a testing.TB: apache2 -k graceful, which
// checks the config before it signals the running server.
func (in *Instance) Reload() error {
	out, err := exec.Command(Binary, "-d", in.Dir, "-f", in.ConfFile, "-k", "graceful").CombinedOutput()
	if err != nil {
		return fmt.Errorf("apache graceful: %w: %s", err, out)
	}
	return nil
}

// PID returns the main process id.
func (in *Instance) PID() int { return in.cmd.Process.Pid }

// Alive reports whether the main process is still running.
func (in *Instance) Alive() bool {
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// Log returns the error log so far.
func (in *Instance) Log() string {
	b, _ := os.ReadFile(in.ErrorLog)
	return string(b)
}

func (in *Instance) waitServing(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if !in.Alive() {
			return errors.New("apache exited")
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", in.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("port not open in time")
}

func (in *Instance) stop() {
	if !in.Alive() {
		return
	}
	// Apache's graceful-stop is WINCH; TERM stops at once. Kill the group
	// afterwards so no worker survives.
	syscall.Kill(in.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-in.done
	}
}

// Get fetches path through the instance and returns status and body.
func (in *Instance) Get(path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(in.URL(path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String(), nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	n, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return strconv.Atoi(p)
}
