package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestScenarios is issue [D]'s end-to-end check on one real Debian 12 node:
// what a user does with the .deb, and what they would look at afterwards.
//
//  1. install: dpkg -i, a Gunicorn and a PHP-FPM backend, systemctl reload;
//     Apache reloaded through D-Bus, both backends answer through Apache,
//     the sockets have the configured owner and mode.
//  2. under load: sockvisor restart, systemctl reload after a real config
//     change, systemctl restart, kill -9 of sockvisor: 0 failed requests.
//  5. a broken config: systemctl reload fails with the error in the journal
//     and the old config keeps serving (under load).
//  3. stale sockets a crash left in a persistent socket_dir are swept at the
//     next boot and working sockets take their place.
//  4. upgrade to a newer build under load: 0 failed requests; purge leaves
//     nothing behind and Apache still serves.
//
// A failed request is a transport error or an HTTP status >= 500, counted by
// loadgen running inside the node. The scenarios run in this order on one
// node because each starts from the state the previous one left.
func TestScenarios(t *testing.T) {
	SkipUnlessAvailable(t)
	EnsureRootfs(t)
	start := time.Now()

	dir := t.TempDir()
	n, pkgs := bootWhileBuilding(t, dir)
	t.Logf("node booted and packages %s, %s built in %s", pkgs.versions[0], pkgs.versions[1], time.Since(start).Round(time.Millisecond))

	s := &suite{n: n, b: pkgs}
	n.CopyIn(t, s.b.loadgen, loadgenPath)
	for i, deb := range s.b.debs {
		n.CopyIn(t, deb, debPath(i))
	}
	s.before = s.snapshot(t)

	steps := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"1-install", s.install},
		{"2-under-load", s.underLoad},
		{"5-broken-config", s.brokenConfig},
		{"3-stale-sockets-after-crash", s.staleAfterCrash},
		{"4-upgrade-and-purge", s.upgradeAndPurge},
	}
	for _, st := range steps {
		t.Run(st.name, st.fn)
		// Each step starts from the state the previous one left; without
		// an installed, serving sockvisor the rest cannot run.
		if !s.serving {
			t.Logf("%s left no serving sockvisor; skipping the remaining scenarios", st.name)
			break
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "scenario results (suite took %s):\n", time.Since(start).Round(time.Second))
	for _, r := range s.results {
		fmt.Fprintf(&sb, "  %-28s %s\n", r.name, r.text)
	}
	t.Log(sb.String())
}

const (
	loadgenPath = "/root/sv-loadgen"
	configPath  = "/etc/sockvisor/sockvisor.hcl"
	apacheConf  = "/etc/apache2/conf-available/sockvisor.conf"
	apacheLink  = "/etc/apache2/conf-enabled/sockvisor.conf"
	defaultDir  = "/run/sockvisor"
	// persistentDir is scenario 3's socket_dir: it survives a reboot.
	persistentDir = "/var/lib/sockvisor-test/s"
	appURL        = "http://127.0.0.1/app/"
	phpURL        = "http://127.0.0.1/php/index.php"
	// slowURL keeps PHP requests in flight whenever a backend is stopped.
	slowURL = "http://127.0.0.1/php/slow.php"
)

func debPath(i int) string { return fmt.Sprintf("/root/debs/sockvisor-build%d.deb", i) }

type suite struct {
	n       *Node
	b       builds
	before  map[string]bool // file list before the package was installed
	serving bool            // installed with both backends answering
	mu      sync.Mutex
	results []result
}

type result struct{ name, text string }

func (s *suite) note(name, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, result{name, fmt.Sprintf(format, args...)})
}

// ---------------------------------------------------------------- config ---

// cfg is the user's config: a Gunicorn and a PHP-FPM backend.
type cfg struct {
	socketDir string // "" = the default
	gen       int    // environment generation: changing it replaces both backends
	timeout   string // the app's proxy timeout: changing it changes Apache's config
	extra     string // appended verbatim
}

func (c cfg) String() string {
	var b strings.Builder
	b.WriteString("# Written by the node scenarios.\n")
	if c.socketDir != "" {
		fmt.Fprintf(&b, "socket_dir = %q\n", c.socketDir)
	}
	timeout := c.timeout
	if timeout == "" {
		timeout = "60s"
	}
	fmt.Fprintf(&b, `
apache {
  reload = "dbus"
}

backend "app" {
  preset      = "gunicorn"
  command     = ["/usr/bin/gunicorn", "--workers", "2", "--chdir", "/usr/share/doc/sockvisor/examples/apps", "hello:app"]
  mount       = "/app/"
  socket_mode = "0660"
  environment = { SOCKVISOR_TEST_GEN = "%[1]d" }
  ready {
    path = "/"
  }
  proxy {
    timeout = %[2]q
  }
}

backend "php" {
  preset        = "php-fpm"
  command       = ["/usr/sbin/php-fpm8.2"]
  mount         = "/php/"
  document_root = "/srv/php"
  environment   = { SOCKVISOR_TEST_GEN = "%[1]d" }
}
`, c.gen, timeout)
	b.WriteString(c.extra)
	return b.String()
}

// ----------------------------------------------------------------- node ---

func (s *suite) sh(t *testing.T, script string) string {
	t.Helper()
	return s.n.MustRun(t, "sh", "-c", script)
}

func (s *suite) shErr(t *testing.T, script string) (string, error) {
	t.Helper()
	return s.n.Run(t, "sh", "-c", script)
}

// writeFile puts content at path in the node with mode.
func (s *suite) writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, mode); err != nil {
		t.Fatal(err)
	}
	s.n.CopyIn(t, f, path)
}

func (s *suite) writeConfig(t *testing.T, c cfg) {
	t.Helper()
	s.writeFile(t, configPath, c.String(), 0o644)
}

func (s *suite) prop(t *testing.T, unit, name string) string {
	t.Helper()
	return s.n.MustRun(t, "systemctl", "show", "-p", name, "--value", unit)
}

func (s *suite) mainPID(t *testing.T, unit string) int {
	t.Helper()
	pid, err := strconv.Atoi(s.prop(t, unit, "MainPID"))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// cursor is the journal's current position.
func (s *suite) cursor(t *testing.T) string {
	t.Helper()
	out := s.n.MustRun(t, "journalctl", "--no-pager", "-n", "0", "--show-cursor")
	for _, l := range strings.Split(out, "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(l), "-- cursor: "); ok {
			return c
		}
	}
	t.Fatalf("no cursor in %q", out)
	return ""
}

// journal returns the messages after cursor (args: -u UNIT, -b, ...).
func (s *suite) journal(t *testing.T, cursor string, args ...string) string {
	t.Helper()
	a := []string{"journalctl", "--no-pager", "-q", "-o", "cat"}
	if cursor != "" {
		a = append(a, "--after-cursor", cursor)
	}
	out, err := s.n.Run(t, append(a, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitJournal waits until every want appears after cursor (journald gets
// the daemon's output asynchronously) and returns the messages.
func (s *suite) waitJournal(t *testing.T, cursor string, want []string, args ...string) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j := s.journal(t, cursor, args...)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(j, w)
		}
		if ok || time.Now().After(deadline) {
			return j, ok
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get fetches url in the node and returns the status and body.
func (s *suite) get(t *testing.T, url string) (int, string) {
	t.Helper()
	out, err := s.n.Run(t, "curl", "-sS", "-m", "30", "-w", "\n%{http_code}", url)
	if err != nil {
		t.Errorf("curl %s: %v", url, err)
		return 0, ""
	}
	i := strings.LastIndexByte(out, '\n')
	code, _ := strconv.Atoi(strings.TrimSpace(out[i+1:]))
	return code, out[:i]
}

func (s *suite) expectServing(t *testing.T, what string) {
	t.Helper()
	for _, c := range []struct{ url, want string }{{appURL, "hello from pid"}, {phpURL, "php ok pid"}} {
		if code, body := s.get(t, c.url); code != 200 || !strings.Contains(body, c.want) {
			t.Errorf("%s: GET %s = %d %q, want 200 with %q", what, c.url, code, body, c.want)
		}
	}
}

type backendStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
	PID   int    `json:"pid"`
	Ready bool   `json:"ready"`
}

// status returns `sockvisor status --json` by backend name.
func (s *suite) status(t *testing.T) map[string]backendStatus {
	t.Helper()
	var st struct {
		Backends []backendStatus `json:"backends"`
	}
	out := s.n.MustRun(t, "sockvisor", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("sockvisor status --json: %v\n%s", err, out)
	}
	m := map[string]backendStatus{}
	for _, b := range st.Backends {
		m[b.Name] = b
	}
	return m
}

// waitReady waits until both backends are ready (after a restart of
// sockvisor or the node) and returns their status.
func (s *suite) waitReady(t *testing.T) map[string]backendStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := s.n.Run(t, "sockvisor", "status", "--json")
		if err == nil && strings.Contains(out, `"ready":true`) {
			st := s.status(t)
			if st["app"].Ready && st["php"].Ready {
				return st
			}
		}
		if time.Now().After(deadline) {
			j, _ := s.n.Run(t, "journalctl", "--no-pager", "-o", "cat", "-n", "40", "-u", "sockvisor")
			t.Fatalf("backends not ready within 60s: %v\n%s", err, j)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// noNewPrivs returns the NoNewPrivs field of pid's status.
func (s *suite) noNewPrivs(t *testing.T, pid int) string {
	t.Helper()
	return s.sh(t, fmt.Sprintf("awk '$1 == \"NoNewPrivs:\" { print $2 }' /proc/%d/status", pid))
}

// reload runs `systemctl reload sockvisor`. A failure is reported with the
// journal and then retried once, so the steps after it still run and report.
func (s *suite) reload(t *testing.T, what string) {
	t.Helper()
	cur := s.cursor(t)
	if _, err := s.n.Run(t, "systemctl", "reload", "sockvisor"); err != nil {
		j := s.journal(t, cur, "-u", "sockvisor", "-u", "apache2")
		t.Errorf("%s: systemctl reload sockvisor failed: %v\njournal:\n%s", what, err, lastLines(j, 25))
		if _, err := s.n.Run(t, "systemctl", "reload", "sockvisor"); err != nil {
			t.Fatalf("%s: the retry failed too: %v\n%s", what, err, lastLines(s.journal(t, cur, "-u", "sockvisor"), 10))
		}
		t.Logf("%s: the retry of systemctl reload sockvisor succeeded", what)
	}
}

// cgroupProcs lists pid, pgid and comm of every process in sockvisor's cgroup.
func (s *suite) cgroupProcs(t *testing.T) []proc {
	t.Helper()
	cg := s.prop(t, "sockvisor", "ControlGroup")
	out := s.sh(t, fmt.Sprintf(`for p in $(cat /sys/fs/cgroup%s/cgroup.procs); do ps -o pid=,pgid=,comm= -p "$p" || true; done`, cg))
	var ps []proc
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		pid, _ := strconv.Atoi(f[0])
		pgid, _ := strconv.Atoi(f[1])
		ps = append(ps, proc{pid, pgid, strings.Join(f[2:], " ")})
	}
	return ps
}

type proc struct {
	pid, pgid int
	comm      string
}

// strays returns the processes in sockvisor's cgroup that belong neither to
// sockvisor's main process nor to a current backend's process group.
func (s *suite) strays(t *testing.T) []proc {
	t.Helper()
	own := map[int]bool{s.mainPID(t, "sockvisor"): true}
	for _, b := range s.status(t) {
		own[b.PID] = true
	}
	var out []proc
	for _, p := range s.cgroupProcs(t) {
		if !own[p.pid] && !own[p.pgid] {
			out = append(out, p)
		}
	}
	return out
}

// killGroups SIGKILLs the process groups of ps (strays already reported).
func (s *suite) killGroups(t *testing.T, ps []proc) {
	t.Helper()
	seen := map[int]bool{}
	for _, p := range ps {
		if !seen[p.pgid] && p.pgid > 1 {
			seen[p.pgid] = true
			s.n.Run(t, "kill", "-KILL", "--", "-"+strconv.Itoa(p.pgid))
		}
	}
}

// snapshot lists the files a package could leave behind or remove.
func (s *suite) snapshot(t *testing.T) map[string]bool {
	t.Helper()
	out := s.sh(t, `find /etc /usr /var/lib /srv /opt -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt \
		-o -path /var/lib/systemd -o -path /var/lib/php -o -path /var/lib/sockvisor-test \) -prune -o -print
		find /var/lib/systemd -name '*sockvisor*'`)
	m := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			m[l] = true
		}
	}
	return m
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// ----------------------------------------------------------------- load ---

// Summary mirrors loadgen's output.
type Summary struct {
	Requests        int64    `json:"requests"`
	OK              int64    `json:"ok"`
	Failures        int64    `json:"failures"`
	TransportErrors int64    `json:"transport_errors"`
	Status5xx       int64    `json:"status_5xx"`
	Unexpected      int64    `json:"unexpected"`
	DurationMS      int64    `json:"duration_ms"`
	MaxLatencyMS    int64    `json:"max_latency_ms"`
	P99LatencyMS    int64    `json:"p99_latency_ms"`
	Samples         []string `json:"samples"`
	URLs            map[string]struct {
		Requests int64    `json:"requests"`
		Failures int64    `json:"failures"`
		PIDs     []string `json:"pids"`
	} `json:"urls"`
	StopReason string `json:"stop_reason"`
}

func (m Summary) String() string {
	return fmt.Sprintf("%d requests, %d failed (%d transport, %d 5xx), %d unexpected, max latency %dms, p99 %dms over %.1fs",
		m.Requests, m.Failures, m.TransportErrors, m.Status5xx, m.Unexpected, m.MaxLatencyMS, m.P99LatencyMS, float64(m.DurationMS)/1000)
}

// load is a loadgen running in the node until stop.
type load struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	stdout   bytes.Buffer
	stderr   strings.Builder // non-progress lines
	requests atomic.Int64
	done     chan struct{}
	err      error
	cancel   context.CancelFunc
	stopped  bool
}

// startLoad starts loadgen against both backends and returns once requests
// are flowing. It is stopped by stop, or at the end of the test.
func (s *suite) startLoad(t *testing.T) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	l := &load{done: make(chan struct{}), cancel: cancel}
	l.cmd = s.n.Command(ctx, loadgenPath, "-stdin", "-c", "8", "-rate", "150", "-max", "5m", "-timeout", "65s",
		"-url", appURL, "-expect", "hello from pid", "-url", phpURL, "-expect", "php ok pid",
		"-url", slowURL, "-expect", "php slow ok pid")
	var err error
	if l.stdin, err = l.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	errPipe, err := l.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.cmd.Stdout = &l.stdout
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "progress requests="); ok {
				f := strings.Fields(rest)
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					l.requests.Store(n)
				}
				continue
			}
			l.stderr.WriteString(line + "\n")
		}
		l.err = l.cmd.Wait()
		cancel()
		close(l.done)
	}()
	t.Cleanup(func() {
		if !l.stopped {
			l.stdin.Close()
			select {
			case <-l.done:
			case <-time.After(90 * time.Second):
				l.cancel()
			}
		}
	})
	deadline := time.After(30 * time.Second)
	for l.requests.Load() < 20 {
		select {
		case <-l.done:
			t.Fatalf("loadgen exited early: %v\n%s%s", l.err, l.stdout.String(), l.stderr.String())
		case <-deadline:
			t.Fatalf("loadgen made fewer than 20 requests in 30s")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return l
}

// stop ends the load and returns its summary.
func (l *load) stop(t *testing.T) Summary {
	t.Helper()
	l.stopped = true
	l.stdin.Close()
	select {
	case <-l.done:
	case <-time.After(90 * time.Second):
		l.cancel()
		<-l.done
		t.Fatalf("loadgen did not stop within 90s")
	}
	var m Summary
	if err := json.Unmarshal(l.stdout.Bytes(), &m); err != nil {
		t.Fatalf("loadgen: %v (exit: %v)\n%s%s", err, l.err, l.stdout.String(), l.stderr.String())
	}
	return m
}

// checkLoad asserts no request failed during what, and records the numbers
// and sockvisor's warnings since cursor (e.g. a backend SIGKILLed after its
// stop_timeout, which shows as latency, not as failures).
func (s *suite) checkLoad(t *testing.T, what, cursor string, m Summary) {
	t.Helper()
	t.Logf("%s: %s", what, m)
	j := s.journal(t, cursor, "-u", "sockvisor")
	if w := strings.TrimSpace(grepLines(j, "[WARN]") + "\n" + grepLines(j, "[ERROR]")); w != "" {
		t.Logf("%s: sockvisor's warnings meanwhile:\n%s", what, lastLines(w, 15))
	}
	s.note(what, "%s", m)
	if m.Requests < 50 {
		t.Errorf("%s: only %d requests were made; the load did not run", what, m.Requests)
	}
	if m.Failures > 0 || m.Unexpected > 0 {
		t.Errorf("%s: %d failed and %d unexpected of %d requests; first ones:\n  %s",
			what, m.Failures, m.Unexpected, m.Requests, strings.Join(m.Samples, "\n  "))
	}
}

// ------------------------------------------------------------ scenarios ---

// install is scenario 1.
func (s *suite) install(t *testing.T) {
	s.sh(t, "dpkg -i "+debPath(0))
	if got := s.prop(t, "sockvisor", "ActiveState"); got != "active" {
		t.Fatalf("after dpkg -i, sockvisor is %s, want active (postinst starts it)", got)
	}
	if got, _ := s.n.Run(t, "systemctl", "is-enabled", "sockvisor"); strings.TrimSpace(got) != "enabled" {
		t.Errorf("after dpkg -i, sockvisor is %q, want enabled", strings.TrimSpace(got))
	}
	main := s.mainPID(t, "sockvisor")
	if v := s.noNewPrivs(t, main); v != "0" {
		t.Errorf("NoNewPrivs of sockvisor (pid %d) = %s, want 0", main, v)
	}

	s.sh(t, `mkdir -p /srv/php && printf '%s\n' '<?php echo "php ok pid ", getmypid(), "\n";' >/srv/php/index.php &&
		printf '%s\n' '<?php usleep(250000); echo "php slow ok pid ", getmypid(), "\n";' >/srv/php/slow.php`)
	s.writeConfig(t, cfg{gen: 1})
	if out, err := s.n.Run(t, "sockvisor", "check"); err != nil {
		t.Fatalf("sockvisor check: %v\n%s", err, out)
	}

	// A fresh Debian Apache has no mod_proxy: the reload must say so and
	// keep Apache's config, then work once the user did what it said.
	cur := s.cursor(t)
	if _, err := s.n.Run(t, "systemctl", "reload", "sockvisor"); err == nil {
		t.Log("systemctl reload sockvisor succeeded without mod_proxy enabled (Apache modules already there?)")
	} else if j, ok := s.waitJournal(t, cur, []string{"a2enmod"}, "-u", "sockvisor"); !ok {
		t.Errorf("reload without mod_proxy failed without naming a2enmod in the journal:\n%s", lastLines(j, 15))
	}
	s.sh(t, "a2enmod -q proxy proxy_http proxy_fcgi headers && systemctl restart apache2")

	apachePID := s.mainPID(t, "apache2")
	cur = s.cursor(t)
	s.reload(t, "first reload with two backends")
	j, ok := s.waitJournal(t, cur, []string{"Apache config applied and reloaded"}, "-u", "sockvisor")
	if !ok {
		t.Errorf("no \"Apache config applied and reloaded\" from sockvisor:\n%s", lastLines(j, 20))
	}
	ja := s.journal(t, cur, "-u", "apache2")
	if !strings.Contains(ja, "Reloading apache2.service") || !strings.Contains(ja, "Reloaded apache2.service") {
		t.Errorf("journalctl -u apache2 shows no systemd reload job (Reloading/Reloaded):\n%s", ja)
	}
	if p := s.mainPID(t, "apache2"); p != apachePID {
		t.Errorf("Apache's MainPID changed from %d to %d: restarted, not reloaded", apachePID, p)
	}
	if got := s.sh(t, "readlink "+apacheLink); got != "../conf-available/sockvisor.conf" {
		t.Errorf("%s -> %q, want ../conf-available/sockvisor.conf", apacheLink, got)
	}
	s.expectServing(t, "after the first reload")

	st := s.status(t)
	for _, name := range []string{"app", "php"} {
		if !st[name].Ready || st[name].PID == 0 {
			t.Errorf("sockvisor status: backend %s = %+v, want ready with a pid", name, st[name])
		}
	}
	stat := s.sh(t, "stat -c '%n %F %U:%G %a' "+defaultDir+" "+defaultDir+"/app.sock "+defaultDir+"/php.sock")
	want := []string{
		defaultDir + " directory root:www-data 2750",
		defaultDir + "/app.sock socket root:www-data 660",
		defaultDir + "/php.sock socket root:www-data 660",
	}
	if stat != strings.Join(want, "\n") {
		t.Errorf("socket dir and sockets:\n%s\nwant:\n%s", stat, strings.Join(want, "\n"))
	}
	nnp := s.noNewPrivs(t, st["app"].PID)
	if nnp != "0" {
		t.Errorf("NoNewPrivs of the Gunicorn backend (pid %d) = %s, want 0", st["app"].PID, nnp)
	}
	s.serving = true
	s.note("1-install", "dpkg -i + reload OK; Apache reloaded via systemd job, MainPID %d kept; NoNewPrivs sockvisor=%s gunicorn=%s; sockets root:www-data 0660 in 2750 dir",
		apachePID, s.noNewPrivs(t, s.mainPID(t, "sockvisor")), nnp)
}

// underLoad is scenario 2.
func (s *suite) underLoad(t *testing.T) {
	t.Run("sockvisor-restart", func(t *testing.T) {
		before := s.status(t)
		cur := s.cursor(t)
		l := s.startLoad(t)
		for _, b := range []string{"app", "php"} {
			if out, err := s.n.Run(t, "sockvisor", "restart", b); err != nil {
				t.Errorf("sockvisor restart %s: %v\n%s", b, err, out)
			}
		}
		time.Sleep(2 * time.Second)
		m := l.stop(t)
		after := s.status(t)
		for _, b := range []string{"app", "php"} {
			if after[b].PID == before[b].PID {
				t.Errorf("sockvisor restart %s: pid still %d", b, before[b].PID)
			}
		}
		s.checkLoad(t, "2a-sockvisor-restart", cur, m)
	})

	t.Run("systemctl-reload", func(t *testing.T) {
		// A real change: new environment for both backends (so both are
		// replaced) and a new proxy timeout (so Apache's config changes).
		before := s.status(t)
		l := s.startLoad(t)
		s.writeConfig(t, cfg{gen: 2, timeout: "61s"})
		cur := s.cursor(t)
		s.reload(t, "reload with new environment and proxy timeout")
		if j, ok := s.waitJournal(t, cur, []string{"config reloaded"}, "-u", "sockvisor"); !ok {
			t.Errorf("no \"config reloaded\" in the journal:\n%s", lastLines(j, 20))
		}
		time.Sleep(2 * time.Second)
		m := l.stop(t)
		after := s.status(t)
		for _, b := range []string{"app", "php"} {
			if after[b].PID == before[b].PID {
				t.Errorf("after the reload backend %s still runs pid %d; it should have been replaced", b, before[b].PID)
			}
		}
		if got := s.sh(t, "grep -c 'timeout=61' "+apacheConf+" || true"); got == "0" {
			t.Errorf("Apache config has no timeout=61 after the reload:\n%s", s.sh(t, "grep -v '^#' "+apacheConf))
		}
		s.checkLoad(t, "2b-systemctl-reload", cur, m)
	})

	t.Run("systemctl-restart", func(t *testing.T) {
		oldMain := s.mainPID(t, "sockvisor")
		fds := s.prop(t, "sockvisor", "NFileDescriptorStore")
		l := s.startLoad(t)
		cur := s.cursor(t)
		t0 := time.Now()
		s.sh(t, "systemctl restart sockvisor")
		took := time.Since(t0)
		time.Sleep(2 * time.Second)
		m := l.stop(t)
		fdsAfter := s.prop(t, "sockvisor", "NFileDescriptorStore")
		j, adopted := s.waitJournal(t, cur, []string{"adopting sockets from systemd's fd store: count=2"}, "-u", "sockvisor")
		if !adopted {
			t.Errorf("after systemctl restart sockvisor did not adopt its 2 sockets from the fd store (NFileDescriptorStore %s -> %s):\n%s", fds, fdsAfter, lastLines(j, 30))
		}
		if strings.Contains(j, "remains running after unit stopped") {
			t.Errorf("systemctl restart left processes behind in the unit:\n%s", grepLines(j, "remains running"))
		}
		if p := s.mainPID(t, "sockvisor"); p == oldMain {
			t.Errorf("MainPID unchanged (%d) after systemctl restart", p)
		}
		s.checkLoad(t, "2c-systemctl-restart", cur, m)
		s.note("2c-fd-store", "systemd 252 kept the fd store across systemctl restart: %v (NFileDescriptorStore %s -> %s); restart took %s",
			adopted, fds, fdsAfter, took.Round(time.Millisecond))
	})

	t.Run("kill-9", func(t *testing.T) {
		before := s.status(t)
		l := s.startLoad(t)
		cur := s.cursor(t)
		// Timed inside the node: kill, the new main process appears
		// (systemd restarts it after RestartSec=1s), the unit is active
		// again (READY=1: backends ready, Apache config applied).
		out := s.sh(t, `old=$(systemctl show -p MainPID --value sockvisor)
			now() { date +%s%N; }
			t0=$(now); kill -9 "$old"; seen=; i=0
			while :; do
				set -- $(systemctl show -p MainPID -p ActiveState --value sockvisor)
				if [ -z "$seen" ] && [ "$1" != "$old" ] && [ "$1" != 0 ]; then seen=$(now); fi
				if [ -n "$seen" ] && [ "$2" = active ]; then break; fi
				i=$((i+1)); [ $i -lt 1200 ] || { echo "sockvisor not active again within 60s: $*" >&2; exit 1; }
				sleep 0.05
			done
			echo "$old $1 $(( (seen - t0) / 1000000 )) $(( ($(now) - t0) / 1000000 ))"`)
		f := strings.Fields(out)
		if len(f) != 4 {
			t.Fatalf("kill -9 timing: %q", out)
		}
		newMain, _ := strconv.Atoi(f[1])
		t.Logf("kill -9 of sockvisor pid %s: new main pid %s after %sms, active (ready) after %sms", f[0], f[1], f[2], f[3])

		// The previous backends keep serving until the new ones are ready,
		// then they are stopped gracefully; keep the load on until they
		// are gone.
		// Bounded by the backends' stop_timeout (30s) and a margin.
		t1 := time.Now()
		var strays []proc
		for {
			strays = s.strays(t)
			if len(strays) == 0 || time.Since(t1) > 45*time.Second {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		gone := time.Since(t1)
		time.Sleep(time.Second)
		m := l.stop(t)
		after := s.status(t)
		if len(strays) > 0 {
			t.Errorf("45s after the restart, processes of the killed sockvisor's generation are still in the unit: %+v\n%s", strays, s.sh(t, "systemd-cgls --no-pager -u sockvisor.service"))
			// Reported; the next scenarios start without them.
			s.killGroups(t, strays)
		}
		for _, b := range []string{"app", "php"} {
			if after[b].PID == before[b].PID {
				t.Errorf("backend %s still runs pid %d from before the crash", b, after[b].PID)
			}
			if s.sh(t, fmt.Sprintf("test -e /proc/%d && echo alive || echo gone", before[b].PID)) != "gone" {
				t.Errorf("the killed sockvisor's backend %s (pid %d) is still alive", b, before[b].PID)
			}
		}
		j := s.journal(t, cur, "-u", "sockvisor")
		if !strings.Contains(j, "adopting sockets from systemd's fd store: count=2") {
			t.Errorf("after kill -9 sockvisor did not adopt its 2 sockets from the fd store:\n%s", lastLines(j, 30))
		}
		if !strings.Contains(j, "stopping backends a previous sockvisor left running") {
			t.Errorf("the new sockvisor did not report stopping the killed one's backends")
		}
		for _, b := range []string{"app", "php"} {
			if !strings.Contains(j, fmt.Sprintf("stopping leftover backend process: backend=%s pid=%d", b, before[b].PID)) {
				t.Errorf("no graceful stop of the killed sockvisor's backend %s (pid %d) in the journal", b, before[b].PID)
			}
		}
		if strings.Contains(j, "leftover did not stop in time") {
			t.Errorf("leftover backends were not stopped gracefully:\n%s", grepLines(j, "leftover"))
		}
		t.Logf("leftover handling in the journal:\n%s", grepLines(j, "left"))
		if newMain != s.mainPID(t, "sockvisor") {
			t.Errorf("MainPID changed again after the restart (crash loop?)")
		}
		s.checkLoad(t, "2d-kill-9", cur, m)
		s.note("2d-kill-9-timing", "kill -9 -> new main pid %sms, -> active/ready %sms, leftovers gone %s after that",
			f[2], f[3], gone.Round(100*time.Millisecond))
	})
}

// brokenConfig is scenario 5.
func (s *suite) brokenConfig(t *testing.T) {
	good := cfg{gen: 2, timeout: "61s"}
	mainBefore := s.mainPID(t, "sockvisor")
	before := s.status(t)
	confBefore := s.sh(t, "sha256sum "+apacheConf)
	l := s.startLoad(t)

	// A typo: a bare octal mode, which HCL reads as decimal.
	broken := strings.Replace(good.String(), `socket_mode = "0660"`, `socket_mode = 0660`, 1)
	s.writeFile(t, configPath, broken, 0o644)
	cur := s.cursor(t)
	out, err := s.n.Run(t, "systemctl", "reload", "sockvisor")
	if err == nil {
		t.Errorf("systemctl reload sockvisor with a broken config succeeded: %s", out)
	}
	j, ok := s.waitJournal(t, cur, []string{"config not reloaded", configPath + ":", "Reload failed for sockvisor.service"}, "-u", "sockvisor")
	if !ok {
		t.Errorf("the journal does not explain the failed reload (want the file:line and \"Reload failed\"):\n%s", lastLines(j, 15))
	}
	msg := grepLines(j, "config not reloaded")
	t.Logf("broken config, journal says: %s", msg)

	// A valid config whose new backend never becomes ready: rolled back.
	s.writeConfig(t, cfg{gen: 2, timeout: "61s", extra: `
backend "never" {
  command = ["/bin/sleep", "600"]
  mount   = "/never/"
  ready {
    timeout = "5s"
  }
}
`})
	cur2 := s.cursor(t)
	if out, err := s.n.Run(t, "systemctl", "reload", "sockvisor"); err == nil {
		t.Errorf("systemctl reload sockvisor with a backend that is never ready succeeded: %s", out)
	}
	j2, ok := s.waitJournal(t, cur2, []string{"Reload failed for sockvisor.service"}, "-u", "sockvisor")
	if !ok {
		t.Errorf("no failed reload in the journal for the never-ready backend:\n%s", lastLines(j2, 15))
	}
	msg2 := grepLines(j2, "config not reloaded")
	t.Logf("never-ready backend, journal says: %s", msg2)
	time.Sleep(time.Second)
	m := l.stop(t)

	after := s.status(t)
	if p := s.mainPID(t, "sockvisor"); p != mainBefore {
		t.Errorf("sockvisor's MainPID changed %d -> %d during failed reloads", mainBefore, p)
	}
	for _, b := range []string{"app", "php"} {
		if after[b].PID != before[b].PID || !after[b].Ready {
			t.Errorf("backend %s: %+v after failed reloads, want still pid %d and ready", b, after[b], before[b].PID)
		}
	}
	if _, ok := after["never"]; ok {
		t.Errorf("the never-ready backend is still configured after its reload failed: %+v", after["never"])
	}
	if got := s.sh(t, "sha256sum "+apacheConf); got != confBefore {
		t.Errorf("Apache config changed by failed reloads")
	}
	if strays := s.strays(t); len(strays) > 0 {
		t.Errorf("failed reloads left processes behind: %+v", strays)
		s.killGroups(t, strays)
	}
	s.expectServing(t, "after failed reloads")
	s.checkLoad(t, "5-broken-config", cur, m)

	// The user fixes it: the reload succeeds and changes nothing.
	s.writeConfig(t, good)
	cur3 := s.cursor(t)
	s.reload(t, "reload of the fixed config")
	if j, ok := s.waitJournal(t, cur3, []string{"config reloaded"}, "-u", "sockvisor"); !ok {
		t.Errorf("no \"config reloaded\" after fixing the config:\n%s", lastLines(j, 10))
	}
	s.note("5-journal", "typo: %s | never-ready: %s", clip(msg, 160), clip(msg2, 160))
}

// staleAfterCrash is scenario 3.
func (s *suite) staleAfterCrash(t *testing.T) {
	// socket_dir on persistent storage, so that what a crash leaves there is
	// still there at the next boot (/run is a fresh tmpfs at every boot).
	c := cfg{socketDir: persistentDir, gen: 2, timeout: "61s"}
	restored := false
	defer func() {
		if !restored {
			// Whatever failed above, the upgrade needs the default setup.
			s.serving = s.restoreDefault(t)
		}
	}()
	s.writeConfig(t, c)
	cur := s.cursor(t)
	if _, err := s.n.Run(t, "systemctl", "restart", "sockvisor"); err != nil {
		t.Fatalf("systemctl restart sockvisor with socket_dir = %q: %v\n%s", persistentDir, err,
			lastLines(s.journal(t, cur, "-u", "sockvisor"), 20))
	}
	s.waitReady(t)
	s.expectServing(t, "with the persistent socket_dir")
	// Something unrelated the user keeps there, and a socket an old config
	// left behind.
	s.sh(t, `printf 'not a socket\n' >`+persistentDir+`/notes.txt
		python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("`+persistentDir+`/orphan.sock")'`)

	// The crash: sockvisor, its backends and the whole machine die at once.
	// (The node shares the host kernel's boot ID, so journalctl -b cannot
	// tell its boots apart: the crash's time does.)
	crashed := strconv.FormatInt(time.Now().Unix(), 10)
	s.n.Crash(t)
	st := s.waitReady(t)
	j, ok := s.waitJournal(t, "", []string{
		"removed stale socket", persistentDir + "/app.sock", persistentDir + "/php.sock", persistentDir + "/orphan.sock",
	}, "--since", "@"+crashed, "-u", "sockvisor")
	if !ok {
		t.Errorf("this boot's sockvisor did not report sweeping the stale sockets in %s:\n%s", persistentDir, lastLines(j, 40))
	}
	swept := grepLines(j, "stale")
	t.Logf("sweep at boot:\n%s", swept)
	if got := s.sh(t, "cat "+persistentDir+"/notes.txt"); got != "not a socket" {
		t.Errorf("notes.txt in socket_dir changed: %q", got)
	}
	if _, err := s.n.Run(t, "test", "!", "-e", persistentDir+"/orphan.sock"); err != nil {
		t.Errorf("stale orphan.sock not removed: %v", err)
	}
	// Re-created at this boot (inode numbers may be reused: compare times).
	for _, f := range []string{"app.sock", "php.sock"} {
		ct, _ := strconv.ParseInt(s.sh(t, "stat -c %Z "+persistentDir+"/"+f), 10, 64)
		if c, _ := strconv.ParseInt(crashed, 10, 64); ct < c {
			t.Errorf("%s/%s was not re-created after the crash (ctime %d, crash at %d)", persistentDir, f, ct, c)
		}
	}
	perms := s.sh(t, "stat -c '%F %U:%G %a' "+persistentDir+" "+persistentDir+"/app.sock "+persistentDir+"/php.sock")
	if perms != "directory root:www-data 2750\nsocket root:www-data 660\nsocket root:www-data 660" {
		t.Errorf("socket_dir and sockets after the boot:\n%s", perms)
	}
	s.expectServing(t, "after the crash and reboot")
	s.note("3-stale-sockets", "%d stale sockets swept at boot (%s); re-created and serving (app pid %d, php pid %d)",
		strings.Count(swept, "removed stale socket"), persistentDir, st["app"].PID, st["php"].PID)

	// Back to the default socket_dir for the upgrade and purge.
	restored = true
	if !s.restoreDefault(t) {
		s.serving = false
	}
}

// restoreDefault puts the scenario config with the default socket_dir back
// and restarts sockvisor; it reports whether both backends serve again.
// It never stops the test: it also runs as a deferred clean-up.
func (s *suite) restoreDefault(t *testing.T) bool {
	t.Helper()
	s.writeConfig(t, cfg{gen: 2, timeout: "61s"})
	if _, err := s.n.Run(t, "systemctl", "restart", "sockvisor"); err != nil {
		t.Errorf("restoring the default socket_dir: %v", err)
		return false
	}
	s.n.Run(t, "rm", "-rf", "/var/lib/sockvisor-test")
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		a, _ := s.n.Run(t, "curl", "-sf", "-m", "10", appURL)
		p, _ := s.n.Run(t, "curl", "-sf", "-m", "10", phpURL)
		if strings.Contains(a, "hello from pid") && strings.Contains(p, "php ok pid") {
			return true
		}
	}
	t.Errorf("after restoring the default socket_dir the backends do not answer through Apache")
	return false
}

// upgradeAndPurge is scenario 4.
func (s *suite) upgradeAndPurge(t *testing.T) {
	s.waitReady(t)
	oldMain := s.mainPID(t, "sockvisor")
	fds := s.prop(t, "sockvisor", "NFileDescriptorStore")
	l := s.startLoad(t)
	cur := s.cursor(t)
	t0 := time.Now()
	s.sh(t, "dpkg -i "+debPath(1))
	took := time.Since(t0)
	time.Sleep(2 * time.Second)
	m := l.stop(t)
	if got := s.sh(t, "dpkg-query -W -f '${Version}' sockvisor"); got != s.b.versions[1] {
		t.Errorf("installed version %q, want %q", got, s.b.versions[1])
	}
	if got := s.sh(t, "sockvisor version"); !strings.Contains(got, s.b.versions[1]) {
		t.Errorf("sockvisor version = %q, want %s", got, s.b.versions[1])
	}
	newMain := s.mainPID(t, "sockvisor")
	if newMain == oldMain {
		t.Errorf("the upgrade did not restart sockvisor (MainPID still %d)", oldMain)
	}
	if exe := s.sh(t, fmt.Sprintf("readlink /proc/%d/exe", newMain)); exe != "/usr/bin/sockvisor" {
		t.Errorf("sockvisor runs %q after the upgrade", exe)
	}
	fdsAfter := s.prop(t, "sockvisor", "NFileDescriptorStore")
	j, adopted := s.waitJournal(t, cur, []string{"adopting sockets from systemd's fd store: count=2"}, "-u", "sockvisor")
	if !adopted {
		t.Errorf("after the upgrade's try-restart sockvisor did not adopt its sockets from the fd store (NFileDescriptorStore %s -> %s):\n%s", fds, fdsAfter, lastLines(j, 30))
	}
	if strings.Contains(j, "remains running after unit stopped") {
		t.Errorf("the upgrade's restart left processes behind in the unit:\n%s", grepLines(j, "remains running"))
	}
	s.expectServing(t, "after the upgrade")
	s.checkLoad(t, "4-upgrade", cur, m)
	s.note("4-upgrade-fd-store", "%s -> %s, dpkg -i took %s; fd store kept across postinst try-restart: %v (NFileDescriptorStore %s -> %s)",
		s.b.versions[0], s.b.versions[1], took.Round(time.Millisecond), adopted, fds, fdsAfter)

	// Purge: everything sockvisor added goes, nothing else; Apache stays.
	apachePID := s.mainPID(t, "apache2")
	s.sh(t, "dpkg --purge sockvisor")
	for _, p := range []string{"/etc/sockvisor", defaultDir, "/run/sockvisor.ctl", "/run/sockvisor-state", apacheConf, apacheLink,
		"/lib/systemd/system/sockvisor.service", "/usr/lib/systemd/system/sockvisor.service", "/usr/bin/sockvisor",
		"/etc/systemd/system/multi-user.target.wants/sockvisor.service"} {
		if _, err := s.n.Run(t, "test", "!", "-e", p, "-a", "!", "-L", p); err != nil {
			t.Errorf("after dpkg --purge, %s is still there", p)
		}
	}
	if got := s.sh(t, "systemctl show -p LoadState --value sockvisor"); got != "not-found" {
		t.Errorf("after purge the sockvisor unit is %q, want not-found", got)
	}
	if left := s.sh(t, "ps -eo pid=,args= | grep -E 'sockvisor|gunicorn|pool php|php-fpm-0' | grep -v grep || true"); left != "" {
		t.Errorf("processes left after purge:\n%s", left)
	}
	if got := s.prop(t, "apache2", "ActiveState"); got != "active" {
		t.Errorf("Apache is %s after purge", got)
	} else if p := s.mainPID(t, "apache2"); p != apachePID {
		t.Errorf("Apache's MainPID changed %d -> %d during purge", apachePID, p)
	}
	if code, _ := s.get(t, "http://127.0.0.1/"); code != 200 {
		t.Errorf("GET / after purge: %d, want 200", code)
	}
	if code, _ := s.get(t, appURL); code != 404 {
		t.Errorf("GET /app/ after purge: %d, want 404 (no proxy config left)", code)
	}
	after := s.snapshot(t)
	// What the test itself did: the PHP document root and a2enmod proxy* headers.
	ours := []string{"/srv/php", "/etc/apache2/mods-enabled/proxy", "/etc/apache2/mods-enabled/headers", "/var/lib/apache2/module/enabled_by_admin"}
	var added, removed, apacheState []string
	for p := range after {
		if s.before[p] || hasAnyPrefix(p, ours) {
			continue
		}
		// Empty state directories of Debian's a2enconf/a2disconf, which
		// the postrm's apache2_invoke disconf runs: Apache's bookkeeping.
		if strings.HasPrefix(p, "/var/lib/apache2/conf/") && s.sh(t, "find "+p+" -mindepth 1 | head -1") == "" {
			apacheState = append(apacheState, p)
			continue
		}
		added = append(added, p)
	}
	if len(apacheState) > 0 {
		sort.Strings(apacheState)
		t.Logf("left by Apache's own helpers (empty state directories): %s", strings.Join(apacheState, " "))
	}
	for p := range s.before {
		if !after[p] {
			removed = append(removed, p)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	if len(added) > 0 {
		t.Errorf("dpkg --purge left %d paths that were not there before the install:\n  %s", len(added), strings.Join(head(added, 40), "\n  "))
	}
	if len(removed) > 0 {
		t.Errorf("install+purge removed %d paths that were there before:\n  %s", len(removed), strings.Join(head(removed, 40), "\n  "))
	}
	s.note("4-purge", "%d paths left behind, %d removed that were there before; Apache active, MainPID kept", len(added), len(removed))
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func head(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... and %d more", len(s)-n))
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
