package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bench is one run in progress.
type bench struct {
	e      *env
	p      plan
	res    *results
	outDir string
	step   string // "[2/5] failures under ...", for progress lines

	sv      *sv // the sockvisor serving the four svbench-* backends through Apache
	selfDir string
	tcpPort int
	self    map[string]*selfBound // "gunicorn", "uwsgi", "tcp"
	storm   map[string]loadResult // restart storms for the chart, by mode
}

func (b *bench) progress(msg string) { progress(b.step, msg) }

// The backends of the main sockvisor. The names are distinctive because
// sockvisor keeps generated files in /run/sockvisor-state/NAME, shared by
// every sockvisor on the machine.
const (
	svApp = "svbench-gunicorn"
	svU   = "svbench-uwsgi"
	svPHP = "svbench-php"
	svGo  = "svbench-go"
)

// The URL paths Apache forwards.
const (
	pathSV    = "/sv/"           // sockvisor, gunicorn preset
	pathSVU   = "/u/"            // sockvisor, uwsgi preset (uwsgi protocol)
	pathSVPHP = "/php/index.php" // sockvisor, php-fpm preset
	pathSVGo  = "/go/"           // sockvisor, generic preset (svbackend)
	pathSelf  = "/self/"         // gunicorn --bind unix:
	pathSelfU = "/selfu/"        // uwsgi --socket
	pathTCP   = "/tcp/"          // gunicorn --bind 127.0.0.1:PORT
	svConf    = "apache-sv.conf" // sockvisor's generated Apache config
)

const (
	stopGrace = 30 * time.Second // bound on any graceful stop
	startMax  = 60 * time.Second // bound on any start
	// svHCLTail ends every backend of the main sockvisor: crashes restart
	// after 100 ms every time, like the self-bound baseline's supervisor.
	svHCLTail = "stop_timeout = \"10s\"\n  restart {\n    min_delay = \"100ms\"\n    max_delay = \"100ms\"\n  }\n"
)

// setup starts Apache, the sockvisor with the four presets behind it and the
// self-bound and TCP baselines.
func (b *bench) setup(ctx context.Context) error {
	b.step = "[setup]"
	e := b.e
	b.progress("building the test backend (bench/svbackend)")
	if err := e.buildBackend(ctx); err != nil {
		return err
	}
	b.selfDir = filepath.Join(e.work, "self")
	// Like a RuntimeDirectory= of the backend's own user.
	if err := mkdirForWWWData(b.selfDir); err != nil {
		return err
	}
	var err error
	if b.tcpPort, err = freePort(); err != nil {
		return err
	}
	site := fmt.Sprintf(`IncludeOptional %s
IncludeOptional `+filepath.Join(e.work, densityConfGlob)+`
ProxyPass %q "unix:%s|http://self.invalid/"
ProxyPass %q "unix:%s|uwsgi://selfu.invalid/"
ProxyPass %q "http://127.0.0.1:%d/"
ProxyPass %q "unix:%s|http://svcrash.invalid/"
`, filepath.Join(e.work, svConf),
		pathSelf, b.selfSock("gunicorn"), pathSelfU, b.selfSock("uwsgi"), pathTCP, b.tcpPort,
		pathSVCrash, e.svCrashSock()) + deploySite(e.work)
	b.progress("starting a private Apache")
	if err := e.startApache(site); err != nil {
		return err
	}
	b.progress("starting sockvisor with gunicorn, uwsgi, php-fpm and generic backends")
	b.sv, err = e.startSockvisor(ctx, "main", b.mainHCL(), startMax)
	if err != nil {
		return err
	}
	b.self = map[string]*selfBound{}
	kinds := []string{"gunicorn", "tcp"}
	if b.p.selfUWSGI {
		kinds = append(kinds, "uwsgi")
	}
	for _, k := range kinds {
		b.progress("starting the baseline: " + b.selfLabel(k))
		s := &selfBound{b: b, kind: k}
		b.self[k] = s
		if err := s.start(ctx); err != nil {
			return err
		}
	}
	for _, path := range []string{pathSV, pathSVU, pathSVPHP, pathSVGo, pathSelf, pathTCP} {
		if err := getOK(apacheClient(), e.apache.URL(path)); err != nil {
			return fmt.Errorf("smoke test: %w\n%s", err, e.apache.Log())
		}
	}
	return nil
}

func (b *bench) mainHCL() string {
	e := b.e
	argv := func(a ...string) string {
		q := make([]string, len(a))
		for i, s := range a {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	w := strconv.Itoa(b.p.workers)
	var sb strings.Builder
	fmt.Fprintf(&sb, "apache {\n  config_file = %q\n  reload = \"apachectl\"\n  apachectl = %s\n}\n",
		filepath.Join(e.work, svConf), argv(e.apache.Command()...))
	fmt.Fprintf(&sb, "backend %q {\n  preset = \"gunicorn\"\n  command = %s\n  mount = %q\n  user = \"www-data\"\n  %s}\n",
		svApp, argv("/usr/bin/gunicorn", "--workers", w, "--chdir", e.apps, "hello:app"), pathSV, svHCLTail)
	fmt.Fprintf(&sb, "backend %q {\n  preset = \"uwsgi\"\n  protocol = \"uwsgi\"\n  command = %s\n  mount = %q\n  user = \"www-data\"\n  %s}\n",
		svU, argv("/usr/bin/uwsgi", "--chdir", e.apps, "--module", "hello:app", "--processes", w), pathSVU, svHCLTail)
	fmt.Fprintf(&sb, "backend %q {\n  preset = \"php-fpm\"\n  command = %s\n  mount = \"/php/\"\n  document_root = %q\n  user = \"www-data\"\n  ready { path = \"/index.php\" }\n  %s}\n",
		svPHP, argv("/usr/sbin/php-fpm8.2"), e.apps, svHCLTail)
	fmt.Fprintf(&sb, "backend %q {\n  preset = \"generic\"\n  command = %s\n  mount = %q\n  user = \"www-data\"\n  %s}\n",
		svGo, argv(e.svbackend), pathSVGo, svHCLTail)
	return sb.String()
}

func (b *bench) selfSock(kind string) string {
	if kind == "uwsgi" {
		return filepath.Join(b.selfDir, "u.sock")
	}
	return filepath.Join(b.selfDir, "app.sock")
}

func (b *bench) selfLabel(kind string) string {
	switch kind {
	case "gunicorn":
		return "gunicorn --bind unix:" + b.selfSock(kind)
	case "uwsgi":
		return "uwsgi --socket " + b.selfSock(kind)
	}
	return fmt.Sprintf("gunicorn --bind 127.0.0.1:%d", b.tcpPort)
}

// selfBound is a backend the bench runs itself, as an operator's unit would:
// it binds its own socket (or TCP port) and is restarted by stopping it and
// starting it again.
type selfBound struct {
	b    *bench
	kind string // gunicorn | uwsgi | tcp
	p    *proc
	// logFrom is where the current run's output starts in its log.
	logFrom int64
}

func (s *selfBound) argv() []string {
	b := s.b
	w := strconv.Itoa(b.p.workers)
	// The unit's User=www-data.
	argv := []string{"/usr/bin/setpriv", "--reuid=www-data", "--regid=www-data", "--init-groups", "--"}
	switch s.kind {
	case "gunicorn":
		// --umask 0007: the socket is 0770 for www-data, not gunicorn's default 0777.
		return append(argv, "/usr/bin/gunicorn", "--workers", w, "--chdir", b.e.apps,
			"--bind", "unix:"+b.selfSock(s.kind), "--umask", "0007", "hello:app")
	case "uwsgi":
		// The same flags sockvisor's uwsgi preset adds, on a socket of its own.
		return append(argv, "/usr/bin/uwsgi", "--plugin", "python3", "--master", "--die-on-term",
			"--hook-master-start", "unix_signal:15 gracefully_kill_them_all",
			"--socket", b.selfSock(s.kind), "--chmod-socket=660", "--vacuum",
			"--chdir", b.e.apps, "--module", "hello:app", "--processes", w)
	}
	return append(argv, "/usr/bin/gunicorn", "--workers", w, "--chdir", b.e.apps,
		"--bind", fmt.Sprintf("127.0.0.1:%d", b.tcpPort), "hello:app")
}

func (s *selfBound) path() string {
	switch s.kind {
	case "gunicorn":
		return pathSelf
	case "uwsgi":
		return pathSelfU
	}
	return pathTCP
}

// start starts the server and waits until it answers through Apache.
func (s *selfBound) start(ctx context.Context) error {
	if err := s.spawn(); err != nil {
		return err
	}
	return s.waitServing(ctx)
}

func (s *selfBound) logPath() string { return filepath.Join(s.b.e.logs, "self-"+s.kind+".log") }

// spawn starts the server without waiting.
func (s *selfBound) spawn() error {
	s.logFrom = 0
	if fi, err := os.Stat(s.logPath()); err == nil {
		s.logFrom = fi.Size()
	}
	var err error
	s.p, err = s.b.e.start("self-"+s.kind, s.argv(), nil)
	return err
}

// waitServing waits until a request through Apache succeeds and every
// worker has booted: TERM to a Gunicorn worker still booting is ignored
// and stalls the next stop for Gunicorn's 30 s graceful timeout, which no
// operator restarting a unit would run into.
func (s *selfBound) waitServing(ctx context.Context) error {
	c := apacheClient()
	booted := "Booting worker with pid"
	if s.kind == "uwsgi" {
		booted = "spawned uWSGI worker"
	}
	return waitFor(ctx, startMax, s.b.selfLabel(s.kind)+" serving", func() error {
		if s.p.exited() {
			return fmt.Errorf("%s exited; see %s", s.kind, s.logPath())
		}
		if n := s.logCount(booted); n < s.b.p.workers {
			return fmt.Errorf("%d of %d workers booted", n, s.b.p.workers)
		}
		return getOK(c, s.b.e.apache.URL(s.path()))
	})
}

// logCount counts lines holding what in the log of the current run.
func (s *selfBound) logCount(what string) int {
	f, err := os.Open(s.logPath())
	if err != nil {
		return 0
	}
	defer f.Close()
	if _, err := f.Seek(s.logFrom, io.SeekStart); err != nil {
		return 0
	}
	b, _ := io.ReadAll(f)
	return strings.Count(string(b), what)
}

// restart is what `systemctl restart` does to such a unit: TERM, wait for
// the exit, start again.
func (s *selfBound) restart(ctx context.Context) error {
	s.b.e.stop(s.p, syscall.SIGTERM, stopGrace)
	return s.start(ctx)
}

// crash kills the whole process group with SIGKILL and, like a supervisor
// with a 100 ms restart delay, starts the server again. It returns when the
// new server has been started (not yet serving).
func (s *selfBound) crash(ctx context.Context) error {
	syscall.Kill(-s.p.pid(), syscall.SIGKILL)
	if err := s.p.wait(10 * time.Second); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(100 * time.Millisecond):
	}
	return s.spawn()
}

// apacheClient makes one fresh connection per request.
func apacheClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// mkdirForWWWData makes dir owned by www-data, for a server that binds its
// own socket there as www-data.
func mkdirForWWWData(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	www, err := user.Lookup("www-data")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(www.Uid)
	gid, _ := strconv.Atoi(www.Gid)
	return os.Chown(dir, uid, gid)
}
