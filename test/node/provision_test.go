package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/cli"
)

// TestProvisioning is issue [M]'s check of node provisioning on real
// Debian 12 nodes: the Ansible role in packaging/ansible and the cloud-init
// recipe in packaging/examples/cloud-init.yaml.
//
//  1. the role installs the .deb, enables exactly the Apache modules the
//     config needs (Apache restarted once for them) and configures two
//     backends that answer through Apache;
//  2. a second run reports changed=0 and reloads neither sockvisor nor
//     Apache;
//  3. a broken variable fails the play with sockvisor check's file:line
//     message before the live config is touched, and a config sockvisor
//     rejects at reload fails the play with sockvisor's own reason and is
//     put back; under load, with 0 failed requests;
//  4. the doctor is the role's last gate: a problem it finds fails the play;
//  5. the role upgrades the package under load (the rolling-upgrade step);
//  6. the cloud-init recipe, run by cloud-init's own stages from a NoCloud
//     seed on a fresh node, ends serving.
//
// Ansible runs on the host and reaches the node through the connection
// plugin in test/node/ansible (node.sh exec), so the role is exercised
// exactly as over ssh, and nothing runs against the host itself.
func TestProvisioning(t *testing.T) {
	SkipUnlessAvailable(t)
	needTool(t, "ansible-playbook")
	EnsureRootfs(t)
	start := time.Now()

	dir := t.TempDir()
	n, pkgs := bootWhileBuilding(t, dir)
	s := &suite{n: n, b: pkgs}
	n.CopyIn(t, s.b.loadgen, loadgenPath)
	s.sh(t, `mkdir -p /srv/php && printf '%s\n' '<?php echo "php ok pid ", getmypid(), "\n";' >/srv/php/index.php &&
		printf '%s\n' '<?php usleep(250000); echo "php slow ok pid ", getmypid(), "\n";' >/srv/php/slow.php`)
	a := newAnsible(t, n, filepath.Join(dir, "ansible"))
	t.Logf("node booted and packages built in %s", time.Since(start).Round(time.Millisecond))

	steps := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"1-role-install", func(t *testing.T) { provisionInstall(t, s, a) }},
		{"2-role-second-run", func(t *testing.T) { provisionSecondRun(t, s, a) }},
		{"3-role-broken-variable", func(t *testing.T) { provisionBroken(t, s, a) }},
		{"4-role-doctor-gate", func(t *testing.T) { provisionDoctorGate(t, s, a) }},
		{"5-role-upgrade", func(t *testing.T) { provisionUpgrade(t, s, a) }},
	}
	for _, st := range steps {
		t.Run(st.name, st.fn)
		if !s.serving {
			t.Logf("%s left no serving sockvisor; skipping the remaining role steps", st.name)
			break
		}
	}
	// The role's node is done with; the recipe gets a fresh one.
	n.Stop(t)
	t.Run("6-cloud-init", func(t *testing.T) { provisionCloudInit(t, s) })

	var sb strings.Builder
	fmt.Fprintf(&sb, "provisioning results (took %s):\n", time.Since(start).Round(time.Second))
	for _, r := range s.results {
		fmt.Fprintf(&sb, "  %-24s %s\n", r.name, r.text)
	}
	t.Log(sb.String())
}

// needTool skips without name, and fails under CI, which must run this.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		testutil.Unavailable(t, "needs %s (apt-get install ansible)", name)
	}
}

// ansibleRun is one ansible-playbook run against the node.
type ansibleRun struct {
	out                 string
	ok, changed, failed int
	err                 error
	took                time.Duration
}

var recapRE = regexp.MustCompile(`(?m)^node\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)`)

// ansibleEnv is the controller side: an inventory naming the node, a
// playbook applying the role, and an ansible.cfg of its own.
type ansibleEnv struct {
	dir  string
	base string // the two backends
	env  []string
}

func newAnsible(t *testing.T, n *Node, dir string) *ansibleEnv {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o700); err != nil {
		t.Fatal(err)
	}
	root := repoRoot()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("inventory.ini", fmt.Sprintf("node ansible_connection=sockvisor_node sockvisor_node_dir=%s sockvisor_node_script=%s ansible_python_interpreter=/usr/bin/python3\n",
		n.Dir, Script()))
	write("playbook.yml", "- hosts: node\n  gather_facts: false\n  roles: [sockvisor]\n")
	// ansible.cfg next to the playbook keeps any of the host's own
	// configuration (/etc/ansible, ~/.ansible.cfg) out of the test.
	write("ansible.cfg", fmt.Sprintf("[defaults]\nroles_path = %s\nconnection_plugins = %s\nhome = %s\nlocal_tmp = %s\nretry_files_enabled = false\nnocolor = true\ninterpreter_python = /usr/bin/python3\n[connection]\npipelining = true\n",
		filepath.Join(root, "packaging", "ansible", "roles"), filepath.Join(root, "test", "node", "ansible", "connection_plugins"),
		filepath.Join(dir, "home"), filepath.Join(dir, "home", "tmp")))
	write("base.yml", `sockvisor_apache:
  reload: dbus
sockvisor_backends:
  - name: app
    preset: gunicorn
    command: [/usr/bin/gunicorn, --workers, "2", --chdir, /usr/share/doc/sockvisor/examples/apps, "hello:app"]
    mount: /app/
    socket_mode: "0660"
    ready:
      path: /
  - name: php
    preset: php-fpm
    command: [/usr/sbin/php-fpm8.2]
    mount: /php/
    document_root: /srv/php
`)
	return &ansibleEnv{dir: dir, base: filepath.Join(dir, "base.yml"),
		env: []string{"ANSIBLE_CONFIG=" + filepath.Join(dir, "ansible.cfg"), "ANSIBLE_FORCE_COLOR=0", "HOME=" + filepath.Join(dir, "home")}}
}

// run runs the playbook with base.yml, then vars (YAML text, may be
// empty), and the package debs[deb]; flags go to ansible-playbook.
func (a *ansibleEnv) run(t *testing.T, s *suite, deb int, vars string, flags ...string) ansibleRun {
	t.Helper()
	args := append([]string{"-i", filepath.Join(a.dir, "inventory.ini"), filepath.Join(a.dir, "playbook.yml"),
		"-e", "@" + a.base, "-e", "sockvisor_deb=" + s.b.debs[deb]}, flags...)
	if vars != "" {
		f := filepath.Join(a.dir, fmt.Sprintf("vars-%d.yml", time.Now().UnixNano()))
		if err := os.WriteFile(f, []byte(vars), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-e", "@"+f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-playbook", args...)
	cmd.Dir = a.dir
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && !strings.HasPrefix(k, "ANSIBLE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, a.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	r := ansibleRun{err: cmd.Run(), took: time.Since(t0)}
	r.out = out.String()
	m := recapRE.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("ansible-playbook printed no recap for node (%v):\n%s", r.err, lastLines(r.out, 40))
	}
	r.ok, _ = strconv.Atoi(m[1])
	r.changed, _ = strconv.Atoi(m[2])
	r.failed, _ = strconv.Atoi(m[3])
	return r
}

// changedTasks lists the tasks a run reported as changed.
func (r ansibleRun) changedTasks() []string {
	var out []string
	task := ""
	for _, l := range strings.Split(r.out, "\n") {
		if rest, ok := strings.CutPrefix(l, "TASK ["); ok {
			task = strings.TrimRight(rest, "] *")
		} else if rest, ok := strings.CutPrefix(l, "RUNNING HANDLER ["); ok {
			task = strings.TrimRight(rest, "] *")
		} else if strings.HasPrefix(l, "changed: ") {
			out = append(out, strings.TrimPrefix(task, "sockvisor : "))
		}
	}
	return out
}

func provisionInstall(t *testing.T, s *suite, a *ansibleEnv) {
	apacheBefore := s.mainPID(t, "apache2")
	r := a.run(t, s, 0, "")
	if r.err != nil || r.failed != 0 {
		t.Fatalf("first run failed (%v):\n%s", r.err, lastLines(r.out, 40))
	}
	t.Logf("first run: ok=%d changed=%d in %s", r.ok, r.changed, r.took.Round(time.Millisecond))
	if got := s.sh(t, "dpkg-query -W -f '${Version}' sockvisor"); got != s.b.versions[0] {
		t.Errorf("installed version %q, want %q", got, s.b.versions[0])
	}
	// Exactly what `sockvisor check --json` asked for: proxy, proxy_fcgi,
	// proxy_http (a fresh Apache has no proxy module).
	if got := s.sh(t, "cd /etc/apache2/mods-enabled && ls proxy*.load | tr '\n' ' '"); got != "proxy.load proxy_fcgi.load proxy_http.load" {
		t.Errorf("proxy modules enabled: %q, want proxy.load proxy_fcgi.load proxy_http.load", got)
	}
	if p := s.mainPID(t, "apache2"); p == apacheBefore {
		t.Errorf("Apache was not restarted for its new modules (MainPID still %d)", p)
	}
	mods := s.requiredModulesEnabled(t)
	for _, want := range []string{"Enable the Apache modules the config needs", "Restart Apache to load the new modules", "Reload sockvisor"} {
		if !contains(r.changedTasks(), want) {
			t.Errorf("first run: %q did not change; changed tasks: %q", want, r.changedTasks())
		}
	}
	if !strings.Contains(s.sh(t, "cat "+configPath), `backend "php" {`) {
		t.Errorf("%s lacks the php backend", configPath)
	}
	if left := s.sh(t, "ls /etc/sockvisor"); left != "sockvisor.hcl" {
		t.Errorf("/etc/sockvisor holds %q, want only sockvisor.hcl (backups removed)", left)
	}
	s.waitReady(t)
	s.expectServing(t, "after the first run")
	s.serving = !t.Failed()
	s.note("1-role-install", "ok=%d changed=%d in %s; required modules %v enabled, Apache restarted once, both backends serve",
		r.ok, r.changed, r.took.Round(100*time.Millisecond), mods)
}

func provisionSecondRun(t *testing.T, s *suite, a *ansibleEnv) {
	apachePID := s.mainPID(t, "apache2")
	before := s.status(t)
	cur := s.cursor(t)
	r := a.run(t, s, 0, "")
	if r.err != nil || r.failed != 0 {
		t.Fatalf("second run failed (%v):\n%s", r.err, lastLines(r.out, 40))
	}
	if r.changed != 0 {
		t.Errorf("second run: changed=%d, want 0; changed tasks: %q", r.changed, r.changedTasks())
	}
	if j := s.journal(t, cur, "-u", "sockvisor", "-u", "apache2"); strings.Contains(j, "reloading config") || strings.Contains(j, "Reloading") || strings.Contains(j, "Stopping") {
		t.Errorf("second run reloaded or restarted something:\n%s", lastLines(j, 20))
	}
	if p := s.mainPID(t, "apache2"); p != apachePID {
		t.Errorf("Apache's MainPID changed %d -> %d on the second run", apachePID, p)
	}
	after := s.status(t)
	for _, b := range []string{"app", "php"} {
		if after[b].PID != before[b].PID {
			t.Errorf("backend %s: pid %d -> %d on the second run", b, before[b].PID, after[b].PID)
		}
	}
	s.expectServing(t, "after the second run")
	s.note("2-role-second-run", "ok=%d changed=%d in %s; no reload of sockvisor or Apache", r.ok, r.changed, r.took.Round(100*time.Millisecond))

	// --check with a changed variable: says what would change, and
	// changes nothing.
	base, err := os.ReadFile(a.base)
	if err != nil {
		t.Fatal(err)
	}
	live := s.sh(t, "sha256sum "+configPath)
	cur = s.cursor(t)
	r = a.run(t, s, 0, strings.Replace(string(base), "      path: /\n", "      path: /\n    proxy:\n      timeout: 61s\n", 1), "--check", "--diff")
	if r.err != nil || r.failed != 0 {
		t.Fatalf("--check run failed (%v):\n%s", r.err, lastLines(r.out, 40))
	}
	if !contains(r.changedTasks(), "Write the config (validated by sockvisor check before it goes live)") || !strings.Contains(r.out, `+    timeout = "61s"`) {
		t.Errorf("--check run does not show the config change; changed tasks %q:\n%s", r.changedTasks(), lastLines(r.out, 30))
	}
	if got := s.sh(t, "sha256sum "+configPath); got != live {
		t.Errorf("--check changed %s", configPath)
	}
	if j := s.journal(t, cur, "-u", "sockvisor"); strings.Contains(j, "reloading config") {
		t.Errorf("--check reloaded sockvisor:\n%s", lastLines(j, 10))
	}
	s.note("2-role-check-mode", "--check --diff with a changed variable: changed=%d shown, nothing applied", r.changed)
}

// socketModeRE is check's message for a mode written as a YAML number, as
// Ansible prints it (inside a JSON string).
var socketModeRE = regexp.MustCompile(`(/var/lib/sockvisor-ansible/sockvisor\.hcl):(\d+):(\d+): socket_mode must be a quoted octal string`)

func provisionBroken(t *testing.T, s *suite, a *ansibleEnv) {
	before := s.status(t)
	live := s.sh(t, "sha256sum "+configPath)
	l := s.startLoad(t)
	cur := s.cursor(t)

	// The classic slip: an unquoted 0660 is the YAML number 432.
	base, err := os.ReadFile(a.base)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(base), `socket_mode: "0660"`, `socket_mode: 0660`, 1)
	r := a.run(t, s, 0, broken)
	if r.err == nil || r.failed == 0 {
		t.Errorf("a broken variable did not fail the play:\n%s", lastLines(r.out, 30))
	}
	m := socketModeRE.FindStringSubmatch(r.out)
	if m == nil {
		t.Errorf("the failed play does not carry check's file:line message:\n%s", lastLines(r.out, 30))
	} else if line := s.sh(t, "sed -n "+m[2]+"p "+m[1]); !strings.Contains(line, "socket_mode = 432") {
		t.Errorf("%s:%s is %q, not the socket_mode line", m[1], m[2], line)
	}
	msg := strings.TrimSpace(m0(m))

	// Valid for check, rejected by the reload: a backend that is never ready.
	never := string(base) + `  - name: never
    command: [/bin/sleep, "600"]
    mount: /never/
    ready:
      timeout: 3s
`
	r2 := a.run(t, s, 0, never)
	if r2.err == nil || r2.failed == 0 {
		t.Errorf("a config sockvisor rejects did not fail the play:\n%s", lastLines(r2.out, 30))
	}
	if !strings.Contains(r2.out, "sockvisor rejected the new config") || !strings.Contains(r2.out, `config not reloaded`) || !strings.Contains(r2.out, `backend \"never\"`) {
		t.Errorf("the failed play does not carry sockvisor's reason:\n%s", lastLines(r2.out, 30))
	}
	msg2 := ""
	if i := strings.Index(r2.out, "config not reloaded"); i >= 0 {
		msg2 = strings.SplitN(r2.out[i:], "\n", 2)[0]
	}
	time.Sleep(time.Second)
	ld := l.stop(t)

	if got := s.sh(t, "sha256sum "+configPath); got != live {
		t.Errorf("%s changed after two failed runs", configPath)
	}
	if left := s.sh(t, "ls /etc/sockvisor"); left != "sockvisor.hcl" {
		t.Errorf("/etc/sockvisor holds %q after failed runs, want only sockvisor.hcl", left)
	}
	after := s.status(t)
	for _, b := range []string{"app", "php"} {
		if after[b].PID != before[b].PID || !after[b].Ready {
			t.Errorf("backend %s: %+v after the failed runs, want pid %d and ready", b, after[b], before[b].PID)
		}
	}
	if _, ok := after["never"]; ok {
		t.Errorf("the rejected backend is still configured: %+v", after["never"])
	}
	s.expectServing(t, "after the failed runs")
	s.checkLoad(t, "3-role-broken-variable", cur, ld)
	s.note("3-messages", "typo: %s | rejected: %s", clip(msg, 200), clip(msg2, 200))
}

func provisionDoctorGate(t *testing.T, s *suite, a *ansibleEnv) {
	// A hand-written ProxyPass to a socket nobody serves: the doctor
	// reads every enabled file, not only sockvisor's.
	s.writeFile(t, "/etc/apache2/conf-enabled/zz-test-gone.conf", "ProxyPass /gone/ unix:/run/gone.sock|http://localhost/\n", 0o644)
	defer s.n.Run(t, "rm", "-f", "/etc/apache2/conf-enabled/zz-test-gone.conf")
	r := a.run(t, s, 0, "")
	if r.err == nil || r.failed == 0 {
		t.Errorf("the play passed although the doctor has a problem to report:\n%s", lastLines(r.out, 20))
	}
	if !strings.Contains(r.out, "sockvisor doctor found problems") || !strings.Contains(r.out, "error: ") || !strings.Contains(r.out, "/run/gone.sock") {
		t.Errorf("the failed play does not carry the doctor's finding:\n%s", lastLines(r.out, 20))
	}
	// Only the scratch copy may differ (the failed runs before left theirs).
	for _, task := range r.changedTasks() {
		if task != "Render the candidate config" {
			t.Errorf("doctor-gate run changed %q, want nothing applied", task)
		}
	}
	msg := ""
	if i := strings.Index(r.out, "sockvisor doctor found problems"); i >= 0 {
		msg = strings.SplitN(r.out[i:], "\"}", 2)[0]
	}
	s.note("4-doctor-gate", "play failed: %s", clip(msg, 240))
}

func provisionUpgrade(t *testing.T, s *suite, a *ansibleEnv) {
	l := s.startLoad(t)
	cur := s.cursor(t)
	r := a.run(t, s, 1, "")
	time.Sleep(2 * time.Second)
	ld := l.stop(t)
	if r.err != nil || r.failed != 0 {
		t.Fatalf("the upgrade run failed (%v):\n%s", r.err, lastLines(r.out, 40))
	}
	if got := s.sh(t, "dpkg-query -W -f '${Version}' sockvisor"); got != s.b.versions[1] {
		t.Errorf("installed version %q after the upgrade run, want %q", got, s.b.versions[1])
	}
	if got := r.changedTasks(); !contains(got, "Install sockvisor from the package file") || contains(got, "Reload sockvisor") {
		t.Errorf("upgrade run: changed tasks %q, want the package and no config reload", got)
	}
	s.expectServing(t, "after the upgrade run")
	s.checkLoad(t, "5-role-upgrade", cur, ld)
	s.note("5-upgrade-run", "%s -> %s through the role: ok=%d changed=%d in %s",
		s.b.versions[0], s.b.versions[1], r.ok, r.changed, r.took.Round(100*time.Millisecond))
}

// provisionCloudInit runs the recipe on a fresh node through cloud-init's
// own stages (what the boot would run), from a NoCloud seed directory.
func provisionCloudInit(t *testing.T, s *suite) {
	n := Boot(t)
	cs := &suite{n: n, b: s.b}
	recipe := filepath.Join(repoRoot(), "packaging", "examples", "cloud-init.yaml")
	n.CopyIn(t, recipe, "/var/lib/cloud/seed/nocloud/user-data")
	n.CopyIn(t, s.b.debs[0], "/var/cache/sockvisor/sockvisor.deb")
	cs.writeFile(t, "/var/lib/cloud/seed/nocloud/meta-data", "instance-id: sockvisor-node-test\nlocal-hostname: sockvisor-node\n", 0o644)
	// The node's own limits, not the recipe's: no network to configure, and
	// no locales package for cc_locale to generate one with.
	cs.writeFile(t, "/etc/cloud/cloud.cfg.d/99-sockvisor-node.cfg", "datasource_list: [NoCloud]\nnetwork: {config: disabled}\nlocale: false\n", 0o644)

	if out, err := n.Run(t, "cloud-init", "schema", "--config-file", "/var/lib/cloud/seed/nocloud/user-data"); err != nil {
		t.Fatalf("cloud-init schema rejects the recipe: %v\n%s", err, out)
	}
	t0 := time.Now()
	for _, stage := range [][]string{{"init", "--local"}, {"init"}, {"modules", "--mode", "config"}, {"modules", "--mode", "final"}} {
		if out, err := n.Run(t, append([]string{"cloud-init"}, stage...)...); err != nil {
			log, _ := n.Run(t, "tail", "-n", "40", "/var/log/cloud-init-output.log")
			t.Fatalf("cloud-init %s: %v\n%s\n/var/log/cloud-init-output.log:\n%s", strings.Join(stage, " "), err, lastLines(out, 20), log)
		}
	}
	took := time.Since(t0)
	// cloud-init status says "disabled" here (the node masks cloud-init's
	// boot units, so its generator never enabled it); the final stage's
	// result is what counts: no module failed, runcmd's script included.
	var result struct {
		V1 struct {
			Datasource string   `json:"datasource"`
			Errors     []string `json:"errors"`
		} `json:"v1"`
	}
	res := cs.sh(t, "cat /run/cloud-init/result.json")
	if err := json.Unmarshal([]byte(res), &result); err != nil || len(result.V1.Errors) > 0 || !strings.Contains(result.V1.Datasource, "NoCloud") {
		log, _ := n.Run(t, "tail", "-n", "40", "/var/log/cloud-init-output.log")
		t.Errorf("cloud-init result (%v):\n%s\n/var/log/cloud-init-output.log:\n%s", err, res, log)
	}
	log := cs.sh(t, "cat /var/log/cloud-init-output.log")
	cs.requiredModulesEnabled(t)
	for _, want := range []string{"Setting up sockvisor", "enabled Apache modules: ", "proxy_fcgi proxy_http; restarting Apache", "config reloaded", "Healthy:"} {
		if !strings.Contains(log, want) {
			t.Errorf("cloud-init-output.log lacks %q:\n%s", want, lastLines(log, 30))
		}
	}
	if got := cs.sh(t, "cmp /var/lib/sockvisor-cloud-init/sockvisor.hcl "+configPath+" && echo same"); got != "same" {
		t.Errorf("the live config is not the recipe's: %s", got)
	}
	cs.waitReady(t)
	cs.expectServing(t, "after cloud-init")
	cs.note("6-cloud-init", "NoCloud seed, stages init --local, init, modules config, final in %s: no errors, both backends serve", took.Round(100*time.Millisecond))
	s.results = append(s.results, cs.results...)
}

// requiredModulesEnabled checks that Apache has every module `sockvisor
// check --json` names for the live config enabled, and returns them.
func (s *suite) requiredModulesEnabled(t *testing.T) []string {
	t.Helper()
	var plan struct {
		RequiredModules []string `json:"required_modules"`
	}
	out := s.sh(t, "sockvisor check --json --config "+configPath)
	if err := json.Unmarshal([]byte(out), &plan); err != nil || len(plan.RequiredModules) == 0 {
		t.Fatalf("sockvisor check --json: %v\n%s", err, out)
	}
	for _, m := range plan.RequiredModules {
		if _, err := s.n.Run(t, "a2query", "-q", "-m", m); err != nil {
			t.Errorf("module %s, which the config needs, is not enabled", m)
		}
	}
	return plan.RequiredModules
}

// m0 is a regexp match's whole text, or "".
func m0(m []string) string {
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestAnsibleExamples checks the example playbooks parse, pins the
// template's output for every kind of value, sites included, and has
// `sockvisor check --json` accept it. Nothing connects anywhere:
// --syntax-check, a render in Python and the check in this process.
func TestAnsibleExamples(t *testing.T) {
	needTool(t, "ansible-playbook")
	root := repoRoot()
	dir := filepath.Join(root, "packaging", "ansible")
	env := []string{"ANSIBLE_CONFIG=" + filepath.Join(dir, "ansible.cfg"), "ANSIBLE_HOME=" + t.TempDir(), "ANSIBLE_NOCOLOR=1"}
	for _, pb := range []string{"playbook.yml", "upgrade.yml"} {
		if out, errOut, err := testutil.HostCommand(dir, env, "ansible-playbook", "--syntax-check", "-i", "inventory.ini", pb); err != nil {
			t.Errorf("ansible-playbook --syntax-check %s: %v\n%s%s", pb, err, out, errOut)
		}
	}
	tmp := t.TempDir()
	// check loads the certificate and key, so they must be a real pair.
	needTool(t, "openssl")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(tmp, "www.key"), "-out", filepath.Join(tmp, "www.pem"), "-days", "2", "-subj", "/CN=www.example").CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	vars := filepath.Join(tmp, "vars.yml")
	if err := os.WriteFile(vars, []byte(`sockvisor_settings: {log_level: info, backlog: 128}
sockvisor_sites:
  - name: www.example
    aliases: [example.com]
    listen: ["*:80"]
    tls: {certificate: `+tmp+`/www.pem, key: `+tmp+`/www.key}
sockvisor_backends:
  - name: app
    site: www.example
    command: [/bin/true]
    environment: {GREETING: "${not interpolated}", N: "1"}
    websocket: true
    instances: 2
    proxy: {timeout: 30s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := testutil.HostCommand(dir, nil, "/usr/bin/python3", filepath.Join(root, "test", "node", "ansible", "render.py"),
		filepath.Join(dir, "roles", "sockvisor"), filepath.Join(dir, "group_vars", "web.yml"), vars)
	if err != nil {
		t.Fatalf("rendering the template: %v\n%s", err, errOut)
	}
	want := `# /etc/sockvisor/sockvisor.hcl: written by the sockvisor Ansible role.
# Change the role's variables, not this file: the next run replaces it.
log_level = "info"
backlog = 128

apache {
  reload = "dbus"
}

site "www.example" {
  aliases = ["example.com"]
  listen = ["*:80"]
  tls {
    certificate = "` + tmp + `/www.pem"
    key = "` + tmp + `/www.key"
  }
}

backend "app" {
  site = "www.example"
  command = ["/bin/true"]
  environment = { "GREETING" = "$${not interpolated}", "N" = "1" }
  websocket = true
  instances = 2
  proxy {
    timeout = "30s"
  }
}
`
	if out != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", out, want)
	}

	hcl := filepath.Join(tmp, "sockvisor.hcl")
	if err := os.WriteFile(hcl, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	code := cli.Main([]string{"check", "--json", "--config", hcl}, &o, &e)
	var plan struct {
		Valid           bool     `json:"valid"`
		Problems        []any    `json:"problems"`
		RequiredModules []string `json:"required_modules"`
		Sites           []struct {
			Name     string   `json:"name"`
			Backends []string `json:"backends"`
		} `json:"sites"`
	}
	if err := json.Unmarshal(o.Bytes(), &plan); err != nil || code != 0 || !plan.Valid {
		t.Fatalf("sockvisor check --json of the rendered config: exit %d, %v\n%s%s", code, err, o.String(), e.String())
	}
	if len(plan.Sites) != 1 || plan.Sites[0].Name != "www.example" || len(plan.Sites[0].Backends) != 1 {
		t.Errorf("sites = %+v", plan.Sites)
	}
	for _, m := range []string{"proxy", "proxy_http", "proxy_balancer", "ssl", "rewrite"} {
		if !contains(plan.RequiredModules, m) {
			t.Errorf("required_modules %v lack %s (site with tls and two instances)", plan.RequiredModules, m)
		}
	}
}
