package doctor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// Finding IDs about PHP behind FastCGI.
const (
	IDSourceLeak       = "php-source-leak"
	IDPHPScriptUnknown = "php-script-unknown"
	IDPHPLimitExt      = "php-limit-extensions"
	IDPHPDocRoot       = "php-document-root"
	IDFcgiDropped      = "fcgi-connection-dropped"
	IDModPHP           = "mod-php-loaded"
	IDPHPMaxChildren   = "php-max-children"
)

const (
	// maxPHPWalk bounds the entries looked at under a document root.
	maxPHPWalk = 5000
	// maxLeakRequests bounds the GETs per PHP backend.
	maxLeakRequests = 3
	leakTimeout     = 5 * time.Second
	maxLeakBody     = 64 << 10
)

// php runs the checks for PHP-FPM behind Apache.
func (d *checkup) php(ctx context.Context) {
	d.modPHP()
	d.fcgiRoots()
	d.phpLogLines()
	d.maxChildren(ctx)
	d.sourceLeak(ctx)
}

func (d *checkup) fcgiTargets() []*Target {
	var out []*Target
	for _, t := range d.report.Targets {
		if t.Scheme == "fcgi" {
			out = append(out, t)
		}
	}
	return out
}

func (d *checkup) phpBackends() []*config.Backend {
	var out []*config.Backend
	if c := d.opts.Sockvisor; c != nil {
		for _, b := range c.Backends {
			if b.Protocol == config.ProtocolFCGI || b.Preset == config.PresetPHPFPM {
				out = append(out, b)
			}
		}
	}
	return out
}

// instanceCmd names a Debian helper for this instance: a2dismod-NAME for
// /etc/apache2-NAME, and its unit apache2@NAME.
func (d *checkup) instanceCmd(cmd string) string {
	if n := d.report.Apache.Instance; n != "" {
		return cmd + "-" + n
	}
	return cmd
}

// apacheUnit is the systemd unit of the diagnosed Apache, for the fixes
// (apache2@NAME for Debian's second instance).
func (d *checkup) apacheUnit() string {
	if u := strings.TrimSuffix(d.inst.Unit, ".service"); u != "" {
		return u
	}
	return "apache2"
}

// modPHP flags mod_php loaded next to a PHP-FPM backend, as
// `apt-get install wordpress` leaves Apache (libapache2-mod-php and
// mpm_prefork enabled).
func (d *checkup) modPHP() {
	if d.modules == nil || (len(d.fcgiTargets()) == 0 && len(d.phpBackends()) == 0) {
		return
	}
	var php []string
	for m := range d.modules {
		if m == "php" || (strings.HasPrefix(m, "php") && len(m) <= 4) {
			php = append(php, m+"_module")
		}
	}
	if len(php) == 0 {
		return
	}
	sort.Strings(php)
	ev := []string{"`" + strings.Join(d.report.Apache.Apachectl, " ") + " -M` lists " + strings.Join(php, ", ")}
	dis := []string{}
	if matches, _ := filepath.Glob(filepath.Join(d.report.Apache.ServerRoot, "mods-enabled", "php*.load")); len(matches) > 0 {
		for _, m := range matches {
			dis = append(dis, strings.TrimSuffix(filepath.Base(m), ".load"))
			ev = append(ev, "enabled by "+m)
		}
	}
	what := "mod_php is loaded next to a PHP-FPM backend: Apache runs .php files itself wherever no SetHandler or ProxyPass sends them to PHP-FPM first, as Apache's user with Apache's php.ini, outside the pool's user and limits"
	fix := ""
	if d.modules["mpm_prefork"] {
		ev = append(ev, "mpm_prefork_module is loaded (mod_php needs it)")
		what += "; and mpm_prefork serves one request per process, so a few slow requests use up MaxRequestWorkers"
		if len(dis) == 0 {
			dis = []string{"php" + phpVersion()}
		}
		fix = fmt.Sprintf("%s %s mpm_prefork && %s mpm_event && systemctl restart %s (apt-get install wordpress or libapache2-mod-php enabled them)",
			d.instanceCmd("a2dismod"), strings.Join(dis, " "), d.instanceCmd("a2enmod"), d.apacheUnit())
	} else {
		if len(dis) == 0 {
			dis = []string{"php" + phpVersion()}
		}
		fix = fmt.Sprintf("%s %s && systemctl restart %s", d.instanceCmd("a2dismod"), strings.Join(dis, " "), d.apacheUnit())
	}
	d.general(Finding{ID: IDModPHP, Severity: SevWarning, What: what, Evidence: ev, Fix: fix})
}

// phpVersion guesses the installed PHP version for a2dismod's name.
func phpVersion() string {
	m, _ := filepath.Glob("/etc/php/*/fpm")
	if len(m) > 0 {
		return filepath.Base(filepath.Dir(m[0]))
	}
	return "8.2"
}

// fcgiRoot returns the directory a ProxyPass fcgi:// URL puts before the
// script path: "/var/www/" for fcgi://h/var/www/$1; "" when none.
func fcgiRoot(t *Target) string {
	if t.Directive != "ProxyPass" && t.Directive != "ProxyPassMatch" && t.Directive != "BalancerMember" {
		return ""
	}
	rest := strings.TrimPrefix(t.URL[len(t.Scheme)+1:], "//")
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return ""
	}
	p := rest[i:]
	if j := strings.IndexByte(p, '$'); j >= 0 {
		p = p[:j]
	}
	if p == "/" || p == "" {
		return ""
	}
	return p
}

// fcgiRoots checks the document root in each ProxyPass fcgi:// URL: it must
// exist, and match the sockvisor backend's document_root.
func (d *checkup) fcgiRoots() {
	for _, t := range d.fcgiTargets() {
		if t.URL == "" {
			continue
		}
		root := fcgiRoot(t)
		if root == "" {
			continue
		}
		want := ""
		if c := d.opts.Sockvisor; c != nil && t.Backend != "" {
			if b := c.Backend(t.Backend); b != nil {
				want = b.DocumentRoot
			}
		}
		dir := strings.TrimSuffix(root, "/")
		st, err := os.Stat(dir)
		switch {
		case err != nil || !st.IsDir():
			fix := fmt.Sprintf("at %s put the directory PHP-FPM serves from after the host: unix:%s|fcgi://%s/DOCUMENT_ROOT/", t.Pos, t.conf.Socket, t.conf.Host)
			if want != "" {
				fix = fmt.Sprintf("at %s use unix:%s|fcgi://%s%s/ (backend %q's document_root)", t.Pos, t.conf.Socket, t.conf.Host, strings.TrimSuffix(want, "/"), t.Backend)
			}
			t.add(Finding{ID: IDPHPDocRoot, Severity: SevError,
				What:     fmt.Sprintf("PHP-FPM is sent SCRIPT_FILENAME under %s, which does not exist: every PHP request answers 404 \"File not found.\" and Apache logs AH01071: Got error 'Primary script unknown'", dir),
				Evidence: []string{t.Pos + ": " + t.conf.Raw, errOrNotDir(err)},
				Fix:      fix})
		case want != "" && filepath.Clean(want) != filepath.Clean(dir):
			t.add(Finding{ID: IDPHPDocRoot, Severity: SevError,
				What:     fmt.Sprintf("Apache sends PHP-FPM scripts under %s, but sockvisor backend %q serves %s: requests run the wrong files or answer 404 (AH01071 Primary script unknown)", dir, t.Backend, want),
				Evidence: []string{t.Pos + ": " + t.conf.Raw},
				Fix:      fmt.Sprintf("at %s use unix:%s|fcgi://%s%s/, or set document_root = %q", t.Pos, t.conf.Socket, t.conf.Host, strings.TrimSuffix(want, "/"), dir)})
		}
	}
}

func errOrNotDir(err error) string {
	if err != nil {
		return err.Error()
	}
	return "not a directory"
}

// phpLogLines explains the error-log lines PHP-FPM causes: "Primary script
// unknown" and security.limit_extensions (both AH01071), and AH01067 from a
// backend that speaks FastCGI (so no protocol mismatch) but hung up.
func (d *checkup) phpLogLines() {
	fcgi := d.fcgiTargets()
	if len(fcgi) == 0 {
		return
	}
	var unknown, denied, dropped, past []int
	for i, l := range d.logs {
		php := strings.Contains(l, "AH01071") || (strings.Contains(l, "AH01067") && !(len(fcgi) == 1 && fcgi[0].has(IDProtocolMismatch)))
		if php && !d.current(i) {
			past = append(past, i)
			continue
		}
		switch {
		case strings.Contains(l, "AH01071") && strings.Contains(l, "Primary script unknown"):
			unknown = append(unknown, i)
		case strings.Contains(l, "AH01071") && strings.Contains(l, "has been denied"):
			denied = append(denied, i)
		case strings.Contains(l, "AH01067"):
			dropped = append(dropped, i)
		}
	}
	// A line names no socket: with one FastCGI target it is that one's;
	// with several, the report says so in General.
	var t *Target
	if len(fcgi) == 1 {
		t = fcgi[0]
	}
	add := func(f Finding, lines []int) {
		for _, i := range lines {
			d.claimed[i] = true
			f.LogCount++
			f.Log = appendKeep(f.Log, d.logs[i])
		}
		if t != nil {
			// An explaining finding already there takes the lines.
			for j := range t.Findings {
				if e := &t.Findings[j]; e.ID == IDPHPDocRoot && f.ID == IDPHPScriptUnknown {
					e.LogCount += f.LogCount
					e.Log = f.Log
					return
				}
			}
			t.add(f)
			return
		}
		var where []string
		for _, x := range fcgi {
			where = append(where, x.Pos)
		}
		f.Evidence = append(f.Evidence, "FastCGI targets: "+strings.Join(where, ", "))
		d.general(f)
	}
	if t != nil {
		// Logged under an older config, or long ago: noted, not a problem.
		for _, i := range past {
			d.claimed[i] = true
			pastError(t, d.logs[i])
		}
	}
	if len(unknown) > 0 {
		add(Finding{ID: IDPHPScriptUnknown, Severity: SevWarning,
			What: "PHP-FPM answered \"Primary script unknown\" (404): the SCRIPT_FILENAME Apache sent does not exist where PHP-FPM looks, because the .php file is missing, the document root in the fcgi:// URL (or DocumentRoot, for SetHandler) is not the directory PHP-FPM serves, or PHP-FPM runs in another root (chroot, container)",
			Fix:  "for missing files, wrap the SetHandler in <If \"-f %{REQUEST_FILENAME}\"> so Apache answers 404 itself; if existing scripts fail too, make the path after fcgi://HOST the directory PHP-FPM sees (the backend's document_root)"}, unknown)
	}
	if len(denied) > 0 {
		f := Finding{ID: IDPHPLimitExt, Severity: SevError,
			What: "PHP-FPM refused to run files that are not .php (security.limit_extensions; 403 \"Access denied.\"): Apache sends every request under the mount to PHP-FPM, static files included",
			Fix:  "send only .php to PHP-FPM and let Apache serve the rest: <FilesMatch \"\\.php$\"> SetHandler \"proxy:unix:SOCKET|fcgi://HOST/\" </FilesMatch> with the files under DocumentRoot or an Alias, or ProxyPassMatch \"^/MOUNT/(.*\\.php(/.*)?)$\" \"unix:SOCKET|fcgi://HOST/DOCUMENT_ROOT/$1\"; never widen security.limit_extensions"}
		if t != nil {
			f.Fix = strings.NewReplacer("SOCKET", t.conf.Socket, "HOST", t.conf.Host, "/MOUNT/", orSlash(t.Mount), "/DOCUMENT_ROOT/", orSlash(fcgiRoot(t))).Replace(f.Fix)
			f.Evidence = []string{t.Pos + ": " + t.Directive + " " + t.Mount + " " + t.conf.Raw}
		}
		add(f, denied)
	}
	if len(dropped) > 0 && (t == nil || !t.has(IDProtocolMismatch)) {
		fix := "set process_control_timeout = 30s in [global] of php-fpm.conf so a reload or stop lets running requests finish, reload PHP-FPM with SIGUSR2 (systemctl reload), and check its log for workers killed by request_terminate_timeout or signals"
		if t != nil && t.Backend != "" {
			fix = fmt.Sprintf("sockvisor backend %q: its generated pool sets process_control_timeout from stop_timeout, so give it a stop_timeout longer than the slowest request (with your own pool via -y, set process_control_timeout in [global]); restart it with `sockvisor restart %s`, never kill -9", t.Backend, t.Backend)
		}
		add(Finding{ID: IDFcgiDropped, Severity: SevWarning,
			What: "PHP-FPM closed connections before answering (AH01067: Failed to read FastCGI header, 503): its workers were stopped or killed mid-request, which is what an FPM restart or reload without a grace period does",
			Fix:  fix}, dropped)
	}
}

func orSlash(s string) string {
	if s == "" {
		return "/"
	}
	return s
}

// maxChildrenWarnAfter is how many recent "server reached pm.max_children"
// lines, with nothing queued now, make a warning rather than a note.
const maxChildrenWarnAfter = 10

var maxChildrenRe = regexp.MustCompile(`\[pool ([^\]]+)\] server reached (?:pm\.)?max_children setting \((\d+)\)`)

// maxChildren reads PHP-FPM's log for "server reached pm.max_children": for
// sockvisor's backends the pool logs to stderr, which sockvisor forwards
// into its own log (the journal, or Options.SockvisorLogs); PHP-FPM's
// system pools log where php-fpm.conf's error_log says.
func (d *checkup) maxChildren(ctx context.Context) {
	type hit struct {
		lines  []string
		n      int
		limit  string
		src    string
		recent bool
	}
	hits := map[string]*hit{}
	scan := func(src string, b []byte) {
		for _, l := range strings.Split(string(b), "\n") {
			m := maxChildrenRe.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			h := hits[m[1]]
			if h == nil {
				h = &hit{src: src}
				hits[m[1]] = h
			}
			h.n++
			h.limit = m[2]
			if t := fpmLogTime(l); t.IsZero() || time.Since(t) < recentLog {
				h.recent = true
			}
			h.lines = appendKeep(h.lines, strings.TrimSpace(l))
		}
	}
	if len(d.phpBackends()) > 0 {
		if src, b := d.sockvisorLog(ctx); b != nil {
			scan(src, b)
		}
	}
	fpmLogs, _ := filepath.Glob("/etc/php/*/fpm/php-fpm.conf")
	for _, conf := range fpmLogs {
		if l := iniValue(conf, "error_log"); strings.HasPrefix(l, "/") && !strings.HasPrefix(l, "/proc/") && !strings.HasPrefix(l, "/dev/") {
			if b, err := tail(l, defaultLogTail); err == nil {
				scan(l, b)
			}
		}
	}
	pools := make([]string, 0, len(hits))
	for p := range hits {
		pools = append(pools, p)
	}
	sort.Strings(pools)
	for _, pool := range pools {
		h := hits[pool]
		var ts []*Target
		var be *config.Backend
		if c := d.opts.Sockvisor; c != nil {
			if be = c.Backend(pool); be != nil {
				for _, s := range be.Sockets {
					ts = append(ts, d.targetsFor(s.Path)...)
				}
			}
		}
		if be == nil {
			for _, t := range d.fcgiTargets() {
				if o, ok := d.owners[t.Socket]; ok && strings.Contains(o.Service, "["+pool+"]") {
					ts = append(ts, t)
				}
			}
		}
		queued := uint32(0)
		qev := ""
		for _, t := range ts {
			if st, ok := d.diag[t.Socket]; ok {
				queued += st.Queue
				qev = fmt.Sprintf("%s's accept queue (sock_diag): %d queued, backlog %d", t.Socket, st.Queue, st.Backlog)
			}
		}
		// A burst that filled the pool once and drained is no problem now:
		// only a pool that keeps hitting its limit is a trap (a rolling
		// upgrade's health gate must not fail on one busy second).
		sev, now := SevInfo, "recently"
		if h.recent && h.n >= maxChildrenWarnAfter {
			sev = SevWarning
		}
		if !h.recent {
			now = fmt.Sprintf("over %v ago", recentLog)
		}
		if queued > 0 {
			sev, now = SevError, fmt.Sprintf("and now %d request(s) wait in the socket's queue", queued)
		}
		f := Finding{ID: IDPHPMaxChildren, Severity: sev,
			What:     fmt.Sprintf("PHP-FPM pool [%s] reached pm.max_children (%s) %d time(s) %s: every worker was busy, so further requests wait in the socket's queue until they time out (Apache logs AH01075 or AH01102 timeouts, 503/504)", pool, h.limit, h.n, now),
			Evidence: []string{fmt.Sprintf("%s: %d line(s) \"server reached pm.max_children setting (%s)\"", h.src, h.n, h.limit)},
			Log:      h.lines, LogCount: h.n}
		if qev != "" {
			f.Evidence = append(f.Evidence, qev)
		}
		if be != nil {
			f.Fix = fmt.Sprintf("the pool sockvisor generates for backend %q allows %s children: set `fpm { max_children = N }` in that backend (N = free memory / one worker's RSS), then `sockvisor reload`; or find the slow requests with request_slowlog_timeout", pool, h.limit)
		} else {
			f.Fix = fmt.Sprintf("raise pm.max_children in pool [%s]'s config (size it: free memory / one worker's RSS) and reload PHP-FPM (systemctl reload php%s-fpm); or find the slow requests with request_slowlog_timeout", pool, phpVersion())
		}
		if len(ts) == 0 {
			d.general(f)
			continue
		}
		for _, t := range ts {
			t.add(f)
		}
	}
}

var fpmTimeRe = regexp.MustCompile(`\[(\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2})\]`)

// fpmLogTime reads PHP-FPM's "[01-Dec-2026 09:20:28]" (local time); zero
// when absent.
func fpmLogTime(s string) time.Time {
	m := fpmTimeRe.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}
	}
	t, err := time.ParseInLocation("02-Jan-2006 15:04:05", m[1], time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}

// iniValue returns the last value of key in an ini-style file.
func iniValue(file, key string) string {
	b, err := os.ReadFile(file)
	if err != nil || len(b) > maxOwnerFile {
		return ""
	}
	val := ""
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if ok && strings.TrimSpace(k) == key {
			val = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return val
}

// sourceLeak requests, through Apache, .php files under each PHP backend's
// document_root that Apache maps to a URL (DocumentRoot, Alias). A 200 whose
// body holds the file's "<?php" means Apache served the source as text:
// nothing routes .php there to PHP-FPM.
func (d *checkup) sourceLeak(ctx context.Context) {
	addr := d.httpAddr()
	for _, b := range d.phpBackends() {
		if b.DocumentRoot == "" {
			continue
		}
		files := phpFiles(b.DocumentRoot)
		if len(files) == 0 {
			continue
		}
		if addr == "" {
			d.uncheck("whether Apache serves %s's PHP source: no plain-HTTP Listen address in Apache's config", b.Name)
			continue
		}
		tried := 0
		for _, f := range files {
			if tried >= maxLeakRequests {
				break
			}
			url, r, ok := d.urlFor(f)
			if !ok {
				continue
			}
			tried++
			host := "localhost"
			if n := d.conf.ServerNames[r.VirtualHost]; n != "" {
				host = n
			}
			code, body, err := getLocal(ctx, addr, host, url)
			if err != nil {
				d.uncheck("GET %s through Apache: %v", url, err)
				continue
			}
			if code != http.StatusOK || !bytes.Contains(body, []byte("<?php")) {
				continue
			}
			sock, worker := "SOCKET", b.Name+".invalid"
			if len(b.Sockets) > 0 {
				sock = b.Sockets[0].Path
			}
			for _, t := range d.report.Targets {
				if t.Backend == b.Name {
					worker = t.conf.Host
				}
			}
			fix := fmt.Sprintf("route .php to PHP-FPM where Apache serves %s: next to %s add <FilesMatch \"\\.php$\"> SetHandler \"proxy:unix:%s|fcgi://%s/\" </FilesMatch>", r.Dir, r.Pos, sock, worker)
			if b.Mount == "" {
				fix += fmt.Sprintf(", or give backend %q a mount so sockvisor routes it", b.Name)
			}
			f := Finding{ID: IDSourceLeak, Severity: SevError,
				What: fmt.Sprintf("Apache serves the PHP source of %s as plain text at %s: nothing routes .php files under %s to PHP-FPM backend %q, so anyone can read the code, database passwords in config files included", f, url, b.DocumentRoot, b.Name),
				Evidence: []string{fmt.Sprintf("GET http://%s%s (Host: %s) answered %d with the file's source (%q...)", addr, url, host, code, firstLine(body)),
					fmt.Sprintf("%s: Apache serves %s at %s", r.Pos, r.Dir, r.URL)},
				Fix: fix}
			ts := []*Target{}
			for _, t := range d.report.Targets {
				if t.Backend == b.Name {
					ts = append(ts, t)
				}
			}
			if len(ts) == 0 {
				d.general(f)
			} else {
				ts[0].add(f)
			}
			break
		}
	}
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// phpFiles lists .php files under root, index.php first, bounded.
func phpFiles(root string) []string {
	var out []string
	seen := 0
	filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if seen++; seen > maxPHPWalk {
			return filepath.SkipAll
		}
		if e.Type().IsRegular() && strings.HasSuffix(p, ".php") {
			out = append(out, p)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(out[i], "/") < strings.Count(out[j], "/") ||
			(strings.Count(out[i], "/") == strings.Count(out[j], "/") && filepath.Base(out[i]) == "index.php" && filepath.Base(out[j]) != "index.php")
	})
	return out
}

// urlFor maps a file to the URL path Apache serves it at: the longest
// Alias or DocumentRoot that holds it.
func (d *checkup) urlFor(file string) (string, rootRef, bool) {
	best, bestLen := rootRef{}, -1
	for _, r := range d.roots() {
		dir := filepath.Clean(r.Dir)
		if (strings.HasPrefix(file, dir+"/") || dir == "/") && len(dir) > bestLen {
			best, bestLen = r, len(dir)
		}
	}
	if bestLen < 0 {
		return "", rootRef{}, false
	}
	rel := strings.TrimPrefix(file, filepath.Clean(best.Dir))
	return strings.TrimSuffix(best.URL, "/") + "/" + strings.TrimPrefix(rel, "/"), best, true
}

type rootRef struct{ URL, Dir, VirtualHost, Pos string }

func (d *checkup) roots() []rootRef {
	var out []rootRef
	for _, r := range d.conf.Roots {
		out = append(out, rootRef{r.URL, r.Dir, r.VirtualHost, r.Pos})
	}
	if len(out) == 0 && d.rc.DocumentRoot != "" {
		out = append(out, rootRef{"/", d.rc.DocumentRoot, "", "Main DocumentRoot"})
	}
	return out
}

// httpAddr is the first plain-HTTP Listen address, on loopback when Apache
// listens on every address.
func (d *checkup) httpAddr() string {
	for _, l := range d.conf.Listens {
		if strings.HasSuffix(l, ":443") || l == "443" {
			continue
		}
		host, port, err := net.SplitHostPort(l)
		if err != nil {
			host, port = "", l
		}
		if _, err := strconv.Atoi(port); err != nil {
			continue
		}
		switch host {
		case "", "0.0.0.0", "*":
			host = "127.0.0.1"
		case "::", "[::]":
			host = "::1"
		}
		return net.JoinHostPort(host, port)
	}
	return ""
}

// getLocal does one bounded GET without following redirects.
func getLocal(ctx context.Context, addr, host, path string) (int, []byte, error) {
	rctx, cancel := context.WithTimeout(ctx, leakTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Host = host
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxLeakBody))
	return resp.StatusCode, b, nil
}
