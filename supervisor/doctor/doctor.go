// Package doctor explains why Apache cannot use a Unix socket it proxies to,
// and says the fix. It diagnoses one Apache instance, the one that serves
// (apacheconf.Discover), with that instance's own files only. It reads every
// `unix:` target in its enabled config, not only sockvisor's, and checks
// each as Apache would reach it: path budgets, existence, the permission
// walk as Apache's run identity, SELinux labels, a real connect, the
// protocol spoken, config traps; then sockvisor's live backend state and
// last Apache apply (GET /status), PHP-FPM's failure modes, and the recent
// error-log lines each finding explains.
//
// Invariant: the doctor only observes. It changes no file, socket or
// process, opens at most three short connections per socket (one as Apache's
// user, one as itself when that one is denied, one protocol probe), sends at
// most maxLeakRequests GETs per PHP backend through Apache (for .php files,
// as any visitor does), and reads bounded amounts of every file. What it
// could not check it says in Report.Unchecked rather than guessing.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/opencontainers/selinux/go-selinux"

	"github.com/sockvisor/sockvisor/internal/filekind"
	"github.com/sockvisor/sockvisor/internal/osuser"
	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/probe"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// Options says which Apache to examine.
type Options struct {
	// Apachectl is the argv prefix that addresses Apache, e.g.
	// ["apache2ctl"] or ["/usr/sbin/apache2", "-d", DIR, "-f", CONF].
	// nil picks apache2ctl, else apachectl, from PATH.
	Apachectl []string
	// ConfigFile is Apache's main config; "" means Apachectl's -f or the
	// distribution's default.
	ConfigFile string
	// Sockvisor maps socket paths to backends; may be nil.
	Sockvisor *config.Config
	// Unit is Apache's systemd unit file, read for PrivateTmp=; "" means
	// the installed apache2.service or httpd.service.
	Unit string
	// Control is sockvisor's control socket, asked for the backends' live
	// state; "" means Sockvisor's control_socket.
	Control string
	// SockvisorLogs are files holding sockvisor's log, where the backends'
	// output (PHP-FPM's error_log included) goes; nil means the journal of
	// sockvisor.service, when journalctl works.
	SockvisorLogs []string
	// LogTail is how much of each error log's end to read; 0 means 256 KiB.
	LogTail int64
	// ProbeTimeout bounds each protocol probe; 0 means probe.DefaultTimeout.
	ProbeTimeout time.Duration
	Log          hclog.Logger
}

// ErrNoApache means no Apache installation or config could be found.
var ErrNoApache = errors.New("doctor: Apache not found")

// Severity ranks findings. Errors break requests now; warnings are traps
// that break them under some condition; info explains without alarm.
type Severity string

// Severities.
const (
	SevError   Severity = "error"
	SevWarning Severity = "warning"
	SevInfo    Severity = "info"
)

// Finding IDs, stable for tests and automation.
const (
	IDPathTooLong      = "path-too-long"
	IDSocketMissing    = "socket-missing"
	IDNotSocket        = "not-a-socket"
	IDPermission       = "permission-denied"
	IDStale            = "stale-socket"
	IDBacklogFull      = "backlog-full"
	IDBacklogHigh      = "backlog-high"
	IDConnectFailed    = "connect-failed"
	IDProtocolMismatch = "protocol-mismatch"
	IDProtocolUnknown  = "protocol-unknown"
	IDSharedWorker     = "shared-worker"
	IDSetHandlerNoFcgi = "sethandler-no-fcgi"
	IDSetHandlerHTTP   = "sethandler-http"
	IDInvalidURL       = "invalid-url"
	IDPrivateTmp       = "private-tmp"
	IDModuleMissing    = "module-missing"
	IDBalancerRetry    = "balancer-no-retry"
	IDSELinuxLabel     = "selinux-label"
	IDApacheConfig     = "apache-config-invalid"
	IDConfigWarning    = "apache-config-warning"
	IDPastError        = "past-error"
	IDNotInApache      = "not-in-apache"
	IDApacheStopped    = "apache-not-running"
)

// Finding is one diagnosis: what is wrong, the evidence, the fix.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	What     string   `json:"what"`
	Evidence []string `json:"evidence,omitempty"`
	Fix      string   `json:"fix,omitempty"`
	// Log holds recent Apache error-log lines this finding explains.
	Log []string `json:"log,omitempty"`
	// LogCount counts all such lines in the tail read; Log keeps the last few.
	LogCount int `json:"log_count,omitempty"`
}

// Target is one `unix:` directive and what the doctor found.
type Target struct {
	Pos       string `json:"pos"` // file:line
	Directive string `json:"directive"`
	Mount     string `json:"mount,omitempty"`
	Balancer  string `json:"balancer,omitempty"`
	Socket    string `json:"socket"` // absolute path Apache connects to
	URL       string `json:"url"`    // after "|"
	Scheme    string `json:"scheme"`
	// Backend is the sockvisor backend owning Socket, if any.
	Backend string `json:"backend,omitempty"`
	// Speaks is what the protocol probe found, if it ran.
	Speaks   string    `json:"speaks,omitempty"`
	Verdict  string    `json:"verdict"` // ok | warn | fail
	Findings []Finding `json:"findings"`
	// Walk is the permission walk, as namei -l shows it.
	Walk []Step `json:"walk,omitempty"`

	conf apacheconf.Target
}

// ApacheInfo is what the doctor learned about Apache itself.
type ApacheInfo struct {
	Apachectl  []string `json:"apachectl"`
	ConfigFile string   `json:"config_file"`
	ServerRoot string   `json:"server_root"`
	Identity   Identity `json:"identity"`
	ErrorLogs  []string `json:"error_logs,omitempty"`
	PID        int      `json:"pid,omitempty"`
	Files      int      `json:"files_read"`
	// Instance is "" for the default instance, NAME for /etc/apache2-NAME.
	Instance string `json:"instance,omitempty"`
	// Others are running Apache servers not diagnosed in this report.
	Others []apacheconf.Instance `json:"others,omitempty"`
}

// Report is the whole diagnosis.
type Report struct {
	Apache  ApacheInfo `json:"apache"`
	SELinux string     `json:"selinux"`
	Targets []*Target  `json:"targets"`
	// General holds findings about Apache as a whole.
	General []Finding `json:"general,omitempty"`
	// Sockvisor is the running daemon's own view, when it answered.
	Sockvisor *SockvisorInfo `json:"sockvisor,omitempty"`
	// Unchecked says what could not be checked, and why.
	Unchecked []string `json:"unchecked,omitempty"`
}

// Healthy reports whether nothing is wrong: no errors and no warnings.
func (r *Report) Healthy() bool {
	for _, f := range r.all() {
		if f.Severity == SevError || f.Severity == SevWarning {
			return false
		}
	}
	return true
}

// ExitCode is 0 when healthy, 1 when problems were found. (A Run error is 2.)
func (r *Report) ExitCode() int {
	if r.Healthy() {
		return 0
	}
	return 1
}

// Find returns the findings with the given ID, across targets and General.
func (r *Report) Find(id string) []Finding {
	var out []Finding
	for _, f := range r.all() {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

func (r *Report) all() []Finding {
	out := append([]Finding{}, r.General...)
	for _, t := range r.Targets {
		out = append(out, t.Findings...)
	}
	return out
}

func (t *Target) add(f Finding) { t.Findings = append(t.Findings, f) }

func (t *Target) has(ids ...string) bool {
	for _, f := range t.Findings {
		for _, id := range ids {
			if f.ID == id {
				return true
			}
		}
	}
	return false
}

// checkup carries one doctor run's state.
type checkup struct {
	opts    Options
	log     hclog.Logger
	report  *Report
	inst    apacheconf.Instance // the Apache diagnosed, as Discover chose it
	conf    *apacheconf.Config
	rc      apacheconf.RunCfg
	modules map[string]bool
	id      Identity
	owners  map[string]owner
	diag    map[string]sockdiag.Stat
	later   map[string]sockdiag.Stat // diag again, after the checks
	root    bool
	sockets map[string]*sockState
	// logs are the error logs' last lines; claimed marks those a specific
	// check (php) already attached.
	logs     []string
	logTimes []time.Time
	claimed  map[int]bool
	// since is when log lines start to count as current (see current).
	since time.Time
	// svLog is the end of sockvisor's own log (sockvisorLog).
	svLog     []byte
	svLogSrc  string
	svLogRead bool
}

// Run examines Apache and every socket it proxies to. The error is non-nil
// only when the doctor could not run at all (exit code 2).
func Run(ctx context.Context, opts Options) (*Report, error) {
	d := &checkup{opts: opts, log: opts.Log, report: &Report{}, root: os.Geteuid() == 0, sockets: map[string]*sockState{}}
	if d.log == nil {
		d.log = hclog.NewNullLogger()
	}
	d.log = d.log.Named("doctor")
	if err := d.apache(ctx); err != nil {
		return nil, err
	}
	d.report.SELinux = selinuxMode()
	d.owners = owners(opts.Sockvisor)
	if diag, err := sockdiag.Listening(); err != nil {
		d.uncheck("listen queues (sock_diag): %v", err)
	} else {
		d.diag = diag
	}
	if !d.root {
		d.uncheck("connecting as %s: needs root, so access is judged from the permission walk alone and sockets are connected to as uid %d", d.id.User, os.Geteuid())
	}
	for _, ct := range d.conf.Targets {
		d.report.Targets = append(d.report.Targets, d.target(ctx, ct))
	}
	d.sharedWorkers()
	d.loadLogs()
	// A second sample, after every connect and probe: a queue that grew
	// since the first is not being accepted from.
	if later, err := sockdiag.Listening(); err == nil && d.diag != nil {
		d.later = later
	}
	d.live(ctx)
	d.unaccepted()
	d.notInApache()
	d.php(ctx)
	d.errorLogs()
	d.confirmNotAccepting()
	for _, t := range d.report.Targets {
		t.Verdict = verdict(t.Findings)
	}
	return d.report, nil
}

func verdict(fs []Finding) string {
	v := "ok"
	for _, f := range fs {
		switch f.Severity {
		case SevError:
			return "fail"
		case SevWarning:
			v = "warn"
		}
	}
	return v
}

func (d *checkup) uncheck(format string, args ...any) {
	d.report.Unchecked = append(d.report.Unchecked, fmt.Sprintf(format, args...))
}

func (d *checkup) general(f Finding) { d.report.General = append(d.report.General, f) }

// apache learns which Apache serves, then its config, run identity and
// modules. Every later step asks that one instance and reads its files only.
func (d *checkup) apache(ctx context.Context) error {
	hint := apacheconf.Hint{Apachectl: d.opts.Apachectl}
	if c := d.opts.Sockvisor; c != nil && len(hint.Apachectl) == 0 {
		hint = apacheconf.Hint{Flavor: c.Apache.Flavor, Apachectl: c.Apache.Apachectl, ConfigFile: c.Apache.ConfigFile, Unit: c.Apache.Unit}
	}
	hint.Running = apacheconf.Running()
	inst, others := apacheconf.Discover(hint)
	d.inst = inst
	if len(inst.Apachectl) == 0 {
		return fmt.Errorf("%w: neither apache2ctl nor apachectl is in PATH; pass the Apache command", ErrNoApache)
	}
	ctl, main, root := inst.Apachectl, inst.ConfigFile, inst.ServerRoot
	if d.opts.ConfigFile != "" {
		main = d.opts.ConfigFile
		if !apacheconf.HasArg(ctl, "-f") {
			// Ask Apache about the same file we parse.
			ctl = append(append([]string{}, ctl...), "-f", main)
		}
	}
	if main == "" {
		return fmt.Errorf("%w: no main config file found (looked for /etc/apache2/apache2.conf and /etc/httpd/conf/httpd.conf)", ErrNoApache)
	}
	for _, o := range others {
		d.report.Apache.Others = append(d.report.Apache.Others, o)
		d.uncheck("another Apache runs (pid %d, config %s): not diagnosed here; point the sockvisor config's apache block (config_file, unit or apachectl) at it to diagnose it", o.PID, o.ConfigFile)
	}
	d.report.Apache.Instance = inst.Name
	info := &d.report.Apache
	info.Apachectl, info.ConfigFile, info.ServerRoot = ctl, main, root

	rc, err := apacheconf.RunConfig(ctx, ctl)
	if err != nil {
		// A config Apache rejects is itself the most important finding.
		d.general(Finding{ID: IDApacheConfig, Severity: SevError,
			What:     "Apache rejects its own config, so it will not start or reload",
			Evidence: []string{err.Error()},
			Fix:      "fix the line Apache names, then check with `" + strings.Join(ctl, " ") + " -t`"})
	} else {
		d.rc = rc
		if rc.ServerRoot != "" {
			root = rc.ServerRoot
			info.ServerRoot = root
		}
	}
	if mods, err := apacheconf.LoadedModules(ctx, ctl); err != nil {
		d.uncheck("loaded modules: %v", err)
	} else {
		d.modules = mods
	}
	vars, _ := apacheconf.ReadEnvvars(filepath.Join(root, "envvars"))
	var defines []string
	for _, def := range d.rc.Defines {
		if def != "DUMP_RUN_CFG" {
			defines = append(defines, def)
		}
	}
	conf, err := apacheconf.Parse(main, apacheconf.ParseOptions{ServerRoot: root, Vars: vars, Defines: defines, Modules: d.modules})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoApache, err)
	}
	d.conf = conf
	info.Files = len(conf.Files)
	d.log.Debug("apache config read", "main", main, "files", len(conf.Files), "targets", len(conf.Targets), "user", rc.User.Name)
	for _, w := range conf.Warnings {
		d.general(Finding{ID: IDConfigWarning, Severity: SevInfo, What: w})
	}

	// The run identity: Apache's own word, else the config's User/Group.
	uname, uid, gname, gid := rc.User.Name, rc.User.ID, rc.Group.Name, rc.Group.ID
	if uname == "" {
		uname, uid, gname, gid = conf.User, -1, conf.Group, -1
		if uname == "" || strings.Contains(uname, "${") {
			uname = "apache" // RHEL's default
			if vars["APACHE_RUN_USER"] != "" || strings.HasPrefix(root, "/etc/apache2") {
				uname = "www-data" // Debian's
			}
		}
		if strings.Contains(gname, "${") {
			gname = ""
		}
		d.uncheck("Apache's run identity: taken from the config files (%s), not from Apache", uname)
	}
	if uid >= 0 && uname == "" {
		uname = osuser.UserName(uint32(uid))
	}
	id, err := resolveIdentity(uname, uid, gname, gid, "/etc/group")
	if err != nil {
		d.uncheck("Apache's groups: %v", err)
	}
	d.id = id
	info.Identity = id

	logs := conf.ErrorLogs
	if rc.ErrorLog != "" && !strings.HasPrefix(rc.ErrorLog, "|") {
		logs = append([]string{rc.ErrorLog}, logs...)
	}
	for _, l := range logs {
		if !slices.Contains(info.ErrorLogs, l) {
			info.ErrorLogs = append(info.ErrorLogs, l)
		}
	}
	pidFile := rc.PidFile
	if pidFile == "" {
		pidFile = conf.PidFile // Apache rejected its config: trust the files
	}
	info.PID = inst.PID
	if info.PID == 0 {
		info.PID = apachePID(pidFile)
	}
	if info.PID == 0 {
		d.apacheStopped(ctl, main, pidFile)
	}
	return nil
}

// apacheStopped reports that no Apache serves the diagnosed config: every
// request fails at the TCP connect, whatever the sockets look like, so a
// health gate must not pass.
func (d *checkup) apacheStopped(ctl []string, main, pidFile string) {
	ev := []string{"no running Apache process reads " + main}
	if pidFile != "" {
		if fileExists(pidFile) {
			ev = append(ev, "pid file "+pidFile+" names no live process")
		} else {
			ev = append(ev, "pid file "+pidFile+" does not exist")
		}
	}
	start := "`" + strings.Join(ctl, " ") + " -k start`"
	fix := "start it with " + start
	if unit := d.stoppedUnit(); unit != "" {
		fix = "start it with `systemctl start " + unit + "` (on a host without systemd, " + start + ")"
	}
	d.general(Finding{ID: IDApacheStopped, Severity: SevError,
		What:     "Apache is not running, so no request reaches any backend",
		Evidence: ev,
		Fix:      fix})
}

// stoppedUnit is the systemd unit that starts the diagnosed instance: the
// sockvisor config's apache.unit, else the distribution's unit for an
// installed instance; "" for a server run by hand from its own directory.
func (d *checkup) stoppedUnit() string {
	if c := d.opts.Sockvisor; c != nil && c.Apache.Unit != "" {
		return strings.TrimSuffix(c.Apache.Unit, ".service")
	}
	if d.inst.Installed() {
		return d.apacheUnit()
	}
	return ""
}

// apachePID returns the running Apache's main pid from its pid file, or 0.
func apachePID(pidFile string) int {
	if pidFile == "" {
		return 0
	}
	b, err := os.ReadFile(pidFile)
	if err != nil || len(b) > 64 {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	return pid
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sockState is what was learned about one socket path, shared by every
// directive that names it.
type sockState struct {
	walk walk
	// accessErr is the connect as Apache's identity; accessed says it ran.
	accessErr error
	accessed  bool
	// liveErr is a connect that tells whether a backend listens (nil: it
	// does); liveKnown is false when we were denied ourselves.
	liveErr   error
	liveKnown bool
	liveEv    string
	kind      probe.Kind
	kindEv    string
	probed    bool
	label     string
	labelOK   bool
}

func (d *checkup) target(ctx context.Context, ct apacheconf.Target) *Target {
	t := &Target{Pos: ct.Pos(), Directive: ct.Directive, Mount: ct.Mount, Balancer: ct.Balancer,
		Socket: ct.Path, URL: ct.URL, Scheme: ct.Scheme, conf: ct, Findings: []Finding{}}
	if o, ok := d.owners[ct.Path]; ok && o.Backend != "" {
		t.Backend = o.Backend
	}
	d.urlChecks(t)
	tooLong := d.pathBudget(t)
	d.moduleCheck(t)
	d.retryCheck(t)
	if t.Socket == "" {
		return t
	}
	d.privateTmp(t)
	if tooLong {
		return t // neither Apache nor we can connect; the fix is the path
	}
	s := d.socket(ctx, t.Socket)
	t.Walk = s.walk.Steps
	d.socketFindings(t, s)
	return t
}

// socket examines one path once: permission walk, label, connect, probe.
func (d *checkup) socket(ctx context.Context, path string) *sockState {
	if s, ok := d.sockets[path]; ok {
		return s
	}
	s := &sockState{}
	d.sockets[path] = s
	s.walk = walkPath(path, d.id)
	if s.walk.Missing != "" || s.walk.Err != nil {
		return s
	}
	if d.report.SELinux != "disabled" {
		if l, err := selinux.FileLabel(path); err == nil {
			s.label = l
		}
	}
	if d.onDemand(path) {
		d.onDemandLiveness(path, s)
		return s
	}
	self := fmt.Sprintf("connect as uid %d", os.Geteuid())
	switch {
	case d.root && d.id.UID != 0:
		s.accessErr, s.accessed = dialAs(path, d.id), true
		s.liveErr, s.liveKnown, s.liveEv = s.accessErr, true, "connect as "+d.id.User
		if errors.Is(s.accessErr, syscall.EACCES) {
			s.liveErr, s.liveEv = dial(path), self // as root: is anyone there?
		}
	default:
		err := dial(path)
		if os.Geteuid() == d.id.UID {
			s.accessErr, s.accessed = err, true // we are Apache's user
		}
		if errors.Is(err, syscall.EACCES) {
			d.uncheck("%s: whether a backend listens (%s: permission denied; run as root)", path, self)
		} else {
			s.liveErr, s.liveKnown, s.liveEv = err, true, self
		}
	}
	live := s.liveKnown && s.liveErr == nil
	d.log.Debug("socket connected", "path", path, "access", s.accessErr, "live", s.liveErr, "live_known", s.liveKnown)
	if live && s.walk.NotSocket == 0 {
		pctx := ctx
		if d.opts.ProbeTimeout > 0 {
			var cancel context.CancelFunc
			pctx, cancel = context.WithTimeout(ctx, d.opts.ProbeTimeout)
			defer cancel()
		}
		k, ev, err := probe.Detect(pctx, path)
		if err != nil {
			s.kindEv = err.Error()
		} else {
			s.kind, s.kindEv, s.probed = k, ev, true
		}
	}
	return s
}

// ownerHint says who should create path.
func (d *checkup) ownerHint(path string) string {
	o, ok := d.owners[path]
	switch {
	case ok && o.Backend != "":
		return fmt.Sprintf("sockvisor backend %q (instance %d) creates it: is sockvisor running, and is the backend up? (sockvisor status)", o.Backend, o.Instance)
	case ok:
		return o.Service
	}
	return "nothing in sockvisor's config, PHP-FPM pools, systemd socket units or uWSGI apps declares this path: start the backend that should listen on it, or fix the path in Apache's config"
}

func (d *checkup) socketFindings(t *Target, s *sockState) {
	w := s.walk
	// A denial found before the walk stopped is known whatever comes next.
	if w.Denied >= 0 {
		t.add(d.permissionFinding(t, w))
	}
	switch {
	case w.Missing != "":
		what := t.Socket + " does not exist"
		if w.Missing != t.Socket {
			what += " (its directory " + w.Missing + " is missing too)"
		}
		t.add(Finding{ID: IDSocketMissing, Severity: SevError,
			What:     what + "; " + answers503(t, "(2)No such file or directory"),
			Evidence: []string{"lstat " + w.Missing + ": no such file or directory"},
			Fix:      d.ownerHint(t.Socket)})
		return
	case w.Err != nil:
		d.uncheck("%s: %v (run as root to check it)", t.Socket, w.Err)
		if w.Denied < 0 {
			t.add(Finding{ID: IDConnectFailed, Severity: SevWarning,
				What:     "could not examine " + t.Socket,
				Evidence: []string{w.Err.Error()}, Fix: "run sockvisor doctor as root to check this socket"})
		}
		return
	case w.NotSocket != 0:
		t.add(Finding{ID: IDNotSocket, Severity: SevError,
			What:     fmt.Sprintf("%s is not a socket but %s; %s", t.Socket, filekind.Of(w.NotSocket), answers503(t, "(111)Connection refused")),
			Evidence: []string{"mode " + w.Steps[len(w.Steps)-1].Mode},
			Fix:      fmt.Sprintf("remove it (rm %s) and restart what should listen there; %s", t.Socket, d.ownerHint(t.Socket))})
		return
	}
	if s.label != "" {
		d.labelFinding(t, s)
	}
	d.connectFindings(t, s)
	d.protocolFindings(t, s)
}

// connectFailCode is the line each scheme's module logs after AH02454.
var connectFailCode = map[string]string{"http": "AH01114", "https": "AH01114", "ws": "AH01114", "wss": "AH01114", "fcgi": "AH01079", "uwsgi": "AH10101"}

// answers503 says what Apache does when its connect fails with errText.
func answers503(t *Target, errText string) string {
	s := "Apache answers 503 and logs " + errText + ": AH02454"
	if c := connectFailCode[t.Scheme]; c != "" {
		s += " + " + c
	}
	return s
}

func (d *checkup) permissionFinding(t *Target, w walk) Finding {
	s := w.Steps[w.Denied]
	verb := "search (x) the directory"
	if s.Need == "w" {
		verb = "write (w) the socket"
	}
	var ev []string
	for _, st := range w.Steps {
		ev = append(ev, st.String())
	}
	return Finding{ID: IDPermission, Severity: SevError,
		What: fmt.Sprintf("Apache's user %s cannot %s %s (%s %s:%s); %s",
			d.id.User, verb, s.Path, s.Mode, s.Owner, s.Group, answers503(t, "(13)Permission denied")),
		Evidence: ev,
		Fix:      d.permFix(t, s)}
}

// permFix is the smallest change that lets Apache's user through s.
func (d *checkup) permFix(t *Target, s Step) string {
	u, g := d.id.User, d.id.Group
	bit := "x"
	if s.Need == "w" {
		bit = "w"
	}
	var fix string
	switch {
	case s.acl != nil:
		fix = fmt.Sprintf("setfacl -m u:%s:%s %s", u, bit, s.Path)
	case d.id.inGroup(s.gid):
		fix = fmt.Sprintf("chmod g+%s %s", bit, s.Path)
	case s.Need == "x":
		fix = fmt.Sprintf("setfacl -m u:%s:x %s (or chmod o+x %s)", u, s.Path, s.Path)
	default:
		fix = fmt.Sprintf("chgrp %s %s && chmod g+w %s", g, s.Path, s.Path)
	}
	// Sockets and socket directories are recreated: make it stick.
	if o, ok := d.owners[t.Socket]; ok && o.Backend != "" && d.opts.Sockvisor != nil {
		c := d.opts.Sockvisor
		fix += fmt.Sprintf("; to make it permanent set socket_group = %q (now %q) and a group-accessible socket_dir_mode/socket_mode in %s, then restart sockvisor", g, c.SocketGroup, c.File)
	} else if s.Need == "w" {
		fix += "; the backend recreates its socket on restart, so also set its socket group/mode (PHP-FPM: listen.group/listen.mode; uWSGI: --chown-socket/--chmod-socket; gunicorn: --umask/--group)"
	}
	return fix
}

func (d *checkup) labelFinding(t *Target, s *sockState) {
	want := httpdSocketTypes
	if c := d.opts.Sockvisor; c != nil && c.SELinuxType != "" && strings.HasPrefix(t.Socket, c.SocketDir+"/") {
		want = []string{c.SELinuxType}
	}
	if msg := checkLabel(s.label, want); msg != "" {
		sev := SevError
		if d.report.SELinux == "permissive" {
			sev = SevWarning
		}
		t.add(Finding{ID: IDSELinuxLabel, Severity: sev,
			What:     msg + "; Apache gets (13)Permission denied and an AVC denial is audited",
			Evidence: []string{"label " + s.label, "SELinux " + d.report.SELinux},
			Fix:      labelFix(t.Socket, want[0])})
	}
}

func (d *checkup) connectFindings(t *Target, s *sockState) {
	if s.accessed && errors.Is(s.accessErr, syscall.EACCES) && !t.has(IDPermission, IDSELinuxLabel) {
		t.add(Finding{ID: IDPermission, Severity: SevError,
			What:     fmt.Sprintf("the kernel refuses %s's connect to %s although the file modes allow it (an LSM such as AppArmor or SELinux?); %s", d.id.User, t.Socket, answers503(t, "(13)Permission denied")),
			Evidence: []string{fmt.Sprintf("connect as %s: %v", d.id.User, s.accessErr)},
			Fix:      "check the audit log (ausearch -m avc -ts recent, or dmesg for apparmor=\"DENIED\")"})
	}
	switch {
	case !s.liveKnown:
	case s.liveErr == nil:
		d.queueCheck(t, false)
	default:
		d.liveness(t, s.liveErr, fmt.Sprintf("%s: %v", s.liveEv, s.liveErr))
	}
}

// liveness explains a connect error other than EACCES.
func (d *checkup) liveness(t *Target, err error, ev string) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		ev2 := "sock_diag: no listening socket is bound to this path"
		if d.diag == nil {
			ev2 = "sock_diag unavailable"
		}
		t.add(Finding{ID: IDStale, Severity: SevError,
			What:     fmt.Sprintf("%s is a stale socket: no process listens on it (the backend exited without removing it); %s", t.Socket, answers503(t, "(111)Connection refused")),
			Evidence: []string{ev, ev2},
			Fix:      "start the backend; it replaces the stale file (or rm " + t.Socket + " first if it refuses to bind). " + d.ownerHint(t.Socket)})
	case errors.Is(err, syscall.EAGAIN):
		d.queueCheck(t, true)
		if !t.has(IDBacklogFull) {
			t.add(Finding{ID: IDBacklogFull, Severity: SevError,
				What:     t.Socket + "'s listen queue is full: the backend accepts nothing; Apache threads block in connect() with no log line until the backend recovers or dies",
				Evidence: []string{ev}, Fix: backlogFix(t)})
		}
	case errors.Is(err, syscall.ENOENT):
		t.add(Finding{ID: IDSocketMissing, Severity: SevError,
			What:     t.Socket + " vanished while being checked; " + answers503(t, "(2)No such file or directory"),
			Evidence: []string{ev}, Fix: d.ownerHint(t.Socket)})
	case errors.Is(err, syscall.EINVAL):
		t.add(Finding{ID: IDPathTooLong, Severity: SevError,
			What:     t.Socket + " is too long for a socket address; " + answers503(t, "(22)Invalid argument"),
			Evidence: []string{ev}, Fix: shortenFix(t, len(t.Socket)-config.MaxSocketPath)})
	default:
		t.add(Finding{ID: IDConnectFailed, Severity: SevError,
			What: "connecting to " + t.Socket + " failed", Evidence: []string{ev},
			Fix: "see the error; " + d.ownerHint(t.Socket)})
	}
}

func backlogFix(t *Target) string {
	return "the backend is stuck or overloaded: check its workers and logs and restart it; give it more workers (gunicorn --workers, PHP-FPM pm.max_children, uWSGI --processes) or a larger listen backlog (sockvisor backlog, PHP-FPM listen.backlog)"
}

// queueCheck reports the listen queue from sock_diag: full is known when
// a connect got EAGAIN; otherwise a queue at least half full is a warning.
func (d *checkup) queueCheck(t *Target, full bool) {
	st, ok := d.diag[t.Socket]
	if !ok {
		return
	}
	ev := fmt.Sprintf("ss -xl: Recv-Q (waiting) %d, Send-Q (backlog) %d", st.Queue, st.Backlog)
	switch {
	case full || (st.Backlog > 0 && st.Queue >= st.Backlog):
		t.add(Finding{ID: IDBacklogFull, Severity: SevError,
			What:     fmt.Sprintf("%s's listen queue is full (%d waiting, backlog %d): the backend accepts nothing; Apache threads block in connect() with no log line", t.Socket, st.Queue, st.Backlog),
			Evidence: []string{ev}, Fix: backlogFix(t)})
	case st.Queue > 0 && st.Queue*2 >= st.Backlog:
		t.add(Finding{ID: IDBacklogHigh, Severity: SevWarning,
			What:     fmt.Sprintf("%s's listen queue is filling (%d waiting, backlog %d): the backend is slow to accept", t.Socket, st.Queue, st.Backlog),
			Evidence: []string{ev}, Fix: backlogFix(t)})
	}
}

// expectedKind maps Apache's scheme to what the probe should find.
var expectedKind = map[string]probe.Kind{
	"http": probe.KindHTTP, "https": probe.KindHTTP, "ws": probe.KindHTTP, "wss": probe.KindHTTP, "h2c": probe.KindHTTP,
	"fcgi": probe.KindFastCGI, "uwsgi": probe.KindUWSGILikely,
}

// mismatch predicts what Apache does when scheme meets a backend speaking kind
// (measured on 2.4.71, see the reference).
func mismatch(scheme string, kind probe.Kind) string {
	switch {
	case expectedKind[scheme] == probe.KindHTTP && kind == probe.KindFastCGI:
		return "Apache answers 502 and logs (104)Connection reset by peer: AH01102: error reading status line from remote server + AH00898"
	case expectedKind[scheme] == probe.KindHTTP && kind == probe.KindUWSGILikely:
		return "Apache answers 502 and logs AH01102: error reading status line from remote server + AH00898; uWSGI logs \"invalid request block size\""
	case scheme == "fcgi" && kind == probe.KindHTTP:
		return "Apache answers 503 and logs AH01068: Got bogus version 72 + AH01075: Error dispatching request (or AH01067 if the server waits)"
	case scheme == "fcgi" && kind == probe.KindUWSGILikely:
		return "Apache answers 503 and logs AH01067: Failed to read FastCGI header + AH01075; uWSGI logs \"unavailable modifier requested: 1\""
	case scheme == "uwsgi":
		return "Apache answers 500 with nothing in the log at LogLevel warn"
	}
	return "requests fail"
}

func (d *checkup) protocolFindings(t *Target, s *sockState) {
	if !s.probed {
		return
	}
	t.Speaks = string(s.kind)
	want, known := expectedKind[t.Scheme]
	if !known || t.Scheme == "" {
		return
	}
	if s.kind == probe.KindUnknown {
		t.add(Finding{ID: IDProtocolUnknown, Severity: SevInfo,
			What:     "the backend's protocol could not be detected (every worker busy, or a protocol the probe does not know)",
			Evidence: []string{s.kindEv}})
		return
	}
	if s.kind == want {
		return
	}
	scheme := map[probe.Kind]string{probe.KindHTTP: "http", probe.KindFastCGI: "fcgi", probe.KindUWSGILikely: "uwsgi"}[s.kind]
	fix := fmt.Sprintf("at %s use unix:%s|%s://%s/ (mod_proxy_%s), or point this %s at a backend that speaks %s",
		t.Pos, t.conf.Socket, scheme, t.conf.Host, map[string]string{"http": "http", "fcgi": "fcgi", "uwsgi": "uwsgi"}[scheme], t.Directive, t.Scheme)
	if scheme == "fcgi" && t.Directive == "ProxyPass" {
		fix += "; for PHP-FPM prefer SetHandler \"proxy:unix:" + t.conf.Socket + "|fcgi://localhost\" inside <FilesMatch \\.php$>, which passes the script path"
	}
	t.add(Finding{ID: IDProtocolMismatch, Severity: SevError,
		What:     fmt.Sprintf("Apache speaks %s to %s, but the backend speaks %s; %s", t.Scheme, t.Socket, s.kind, mismatch(t.Scheme, s.kind)),
		Evidence: []string{"probe: " + s.kindEv},
		Fix:      fix})
}
