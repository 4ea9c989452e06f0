package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// SetHandlerMaxPath is the longest socket path SetHandler can use: Apache
// connects with the whole 108-byte sun_path and no NUL.
const SetHandlerMaxPath = 108

// workerDirective reports whether Apache defines a worker for d, and so
// limits its socket path to MaxApachePath.
func workerDirective(d string) bool {
	return d == "ProxyPass" || d == "ProxyPassMatch" || d == "BalancerMember" || d == "Proxy"
}

// urlChecks looks at the URL after "|".
func (d *checkup) urlChecks(t *Target) {
	sock := t.conf.Socket
	switch {
	case t.Directive == "SetHandler" && t.URL == "":
		t.add(Finding{ID: IDSetHandlerNoFcgi, Severity: SevError,
			What:     "SetHandler names the socket but no |fcgi://host part: Apache cannot canonicalise the URL and serves the matched files itself, so PHP source code is sent to clients as text (200, nothing logged)",
			Evidence: []string{t.Pos + ": SetHandler \"proxy:" + t.conf.Raw + "\""},
			Fix:      fmt.Sprintf("at %s write SetHandler \"proxy:unix:%s|fcgi://localhost\"", t.Pos, sock)})
	case t.Directive == "SetHandler" && (t.Scheme == "http" || t.Scheme == "https"):
		t.add(Finding{ID: IDSetHandlerHTTP, Severity: SevWarning,
			What:     "SetHandler with " + t.Scheme + ":// sends the backend the file-system path (GET /<DocumentRoot>/...), not the URL path",
			Evidence: []string{t.Pos + ": SetHandler \"proxy:" + t.conf.Raw + "\""},
			Fix:      "use SetHandler only for FastCGI (|fcgi://); for an HTTP backend use ProxyPass \"/mount/\" \"unix:" + sock + "|http://" + hostFor(sock) + "/\""})
	case t.URL == "" && t.Directive != "SetHandler":
		t.add(Finding{ID: IDInvalidURL, Severity: SevError,
			What:     t.Directive + " has a unix: URL without |scheme://host: Apache refuses the config (" + t.Directive + " uses an invalid \"unix:\" URL)",
			Evidence: []string{t.Pos + ": " + t.conf.Raw},
			Fix:      fmt.Sprintf("at %s write unix:%s|http://%s/ (or fcgi:// / uwsgi:// as the backend speaks)", t.Pos, sock, hostFor(sock))})
	}
}

var hostRe = regexp.MustCompile(`[^a-z0-9-]+`)

// hostFor suggests a unique, never-resolving worker host for a socket.
func hostFor(sock string) string {
	b := strings.ToLower(strings.TrimSuffix(filepath.Base(sock), filepath.Ext(sock)))
	b = strings.Trim(hostRe.ReplaceAllString(b, "-"), "-")
	if b == "" {
		b = "backend"
	}
	return b + ".invalid"
}

func shortenFix(t *Target, over int) string {
	s := fmt.Sprintf("shorten the socket path by at least %d bytes, e.g. /run/<app>/<app>.sock, in %s and in the backend", over, t.Pos)
	if t.Backend != "" {
		s += fmt.Sprintf(" (sockvisor backend %q: a shorter socket_dir or socket name)", t.Backend)
	}
	return s
}

// pathBudget checks the socket path against Apache's and the kernel's
// limits. It returns true when no connect can succeed.
func (d *checkup) pathBudget(t *Target) bool {
	n := len(t.Socket)
	if n == 0 {
		return false
	}
	switch {
	case workerDirective(t.Directive) && n > config.MaxApachePath:
		t.add(Finding{ID: IDPathTooLong, Severity: SevError,
			What:     fmt.Sprintf("the socket path is %d bytes; Apache allows %d in %s, so it refuses the config: \"ProxyPass worker uds path (%s) too long\"", n, config.MaxApachePath, t.Directive, t.Socket),
			Evidence: []string{fmt.Sprintf("len(%q) = %d > %d", t.Socket, n, config.MaxApachePath)},
			Fix:      shortenFix(t, n-config.MaxApachePath)})
	case n > SetHandlerMaxPath:
		t.add(Finding{ID: IDPathTooLong, Severity: SevError,
			What:     fmt.Sprintf("the socket path is %d bytes; a socket address holds %d, so %s", n, SetHandlerMaxPath, answers503(t, "(22)Invalid argument")),
			Evidence: []string{fmt.Sprintf("len(%q) = %d > %d", t.Socket, n, SetHandlerMaxPath)},
			Fix:      shortenFix(t, n-config.MaxSocketPath)})
	case n > config.MaxSocketPath:
		t.add(Finding{ID: IDPathTooLong, Severity: SevWarning,
			What:     fmt.Sprintf("the socket path is %d bytes: Apache can connect, but most servers (Go, Python, systemd) cannot bind a path over %d bytes, and the doctor cannot connect to check it", n, config.MaxSocketPath),
			Evidence: []string{fmt.Sprintf("len(%q) = %d > %d", t.Socket, n, config.MaxSocketPath)},
			Fix:      shortenFix(t, n-config.MaxSocketPath)})
	}
	return n > config.MaxSocketPath
}

// schemeModules are the modules a scheme needs besides mod_proxy; any one
// of each inner list will do.
var schemeModules = map[string][]string{
	"http": {"proxy_http"}, "https": {"proxy_http"},
	"ws": {"proxy_wstunnel", "proxy_http"}, "wss": {"proxy_wstunnel", "proxy_http"},
	"fcgi": {"proxy_fcgi"}, "uwsgi": {"proxy_uwsgi"}, "h2c": {"proxy_http2"}, "h2": {"proxy_http2"},
	"ajp": {"proxy_ajp"}, "scgi": {"proxy_scgi"},
}

func (d *checkup) moduleCheck(t *Target) {
	if d.modules == nil {
		return
	}
	var missing []string
	if !d.modules["proxy"] {
		missing = append(missing, "proxy")
	}
	if alts, ok := schemeModules[t.Scheme]; ok && !anyLoaded(d.modules, alts) {
		missing = append(missing, alts[0])
	}
	if t.Directive == "BalancerMember" {
		for _, m := range []string{"proxy_balancer", "slotmem_shm"} {
			if !d.modules[m] {
				missing = append(missing, m)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	var names []string
	for _, m := range missing {
		names = append(names, "mod_"+m)
	}
	effect := "Apache answers 500 and logs AH01144: No protocol handler was valid for the URL"
	if missing[0] == "proxy" {
		effect = "the proxy directives are unknown (or skipped inside <IfModule>), so nothing is proxied"
	}
	t.add(Finding{ID: IDModuleMissing, Severity: SevError,
		What:     strings.Join(names, ", ") + " not loaded: " + effect,
		Evidence: []string{"`" + strings.Join(d.report.Apache.Apachectl, " ") + " -M` does not list " + strings.Join(missing, "_module, ") + "_module"},
		Fix:      d.enableFix(missing)})
}

func anyLoaded(mods map[string]bool, alts []string) bool {
	for _, a := range alts {
		if mods[a] {
			return true
		}
	}
	return false
}

// enableFix says how to load modules: a2enmod for Debian's layout,
// conf.modules.d for RHEL's, else LoadModule lines in the main file.
func (d *checkup) enableFix(mods []string) string {
	root := d.report.Apache.ServerRoot
	if strings.HasPrefix(root, "/etc/apache2") {
		return d.instanceCmd("a2enmod") + " " + strings.Join(mods, " ") + " && systemctl restart " + d.apacheUnit()
	}
	dir, where, restart := "modules", d.report.Apache.ConfigFile, "restart Apache"
	if root == "/etc/httpd" {
		where, restart = "/etc/httpd/conf.modules.d/00-proxy.conf", "systemctl restart httpd"
	} else if fileExists("/usr/lib/apache2/modules") {
		dir = "/usr/lib/apache2/modules"
	}
	var lines []string
	for _, m := range mods {
		lines = append(lines, fmt.Sprintf("LoadModule %s_module %s/mod_%s.so", m, dir, m))
	}
	return "add to " + where + ": " + strings.Join(lines, "; ") + "; then " + restart
}

func (d *checkup) retryCheck(t *Target) {
	if t.Directive != "BalancerMember" {
		return
	}
	if _, ok := t.conf.Param("retry"); ok {
		return
	}
	t.add(Finding{ID: IDBalancerRetry, Severity: SevWarning,
		What:     "balancer member without retry=: one failed connect (e.g. during a backend restart) takes it out of the balancer for 60 s (AH00959 disabling worker), although the socket works again at once",
		Evidence: []string{t.Pos + ": BalancerMember " + t.conf.Raw},
		Fix:      fmt.Sprintf("at %s append retry=1 (seconds) to the BalancerMember line", t.Pos)})
}

// privateTmp catches sockets in the system temp directories, which a
// systemd-started Apache (PrivateTmp=true on Debian and RHEL) cannot see.
// A running Apache is asked directly: /proc/PID/root resolves paths in its
// mount namespace, so its /tmp is ours exactly when the inodes agree.
// Otherwise the unit file decides, for the distribution's own Apache.
func (d *checkup) privateTmp(t *Target) {
	if !strings.HasPrefix(t.Socket, "/tmp/") && !strings.HasPrefix(t.Socket, "/var/tmp/") {
		return
	}
	tmp := tmpRoot(t.Socket)
	fix := "move the socket out of the temp directories, e.g. to /run/<app>/ (sockvisor: socket_dir = \"/run/sockvisor\"), in the backend and at " + t.Pos
	if pid := d.report.Apache.PID; pid > 0 {
		var ours, theirs unix.Stat_t
		if unix.Stat(tmp, &ours) == nil && unix.Stat(fmt.Sprintf("/proc/%d/root%s", pid, tmp), &theirs) == nil {
			if ours.Dev == theirs.Dev && ours.Ino == theirs.Ino {
				return
			}
			t.add(Finding{ID: IDPrivateTmp, Severity: SevError,
				What:     fmt.Sprintf("Apache (pid %d) has a private %s and cannot see %s: %s", pid, tmp, t.Socket, answers503(t, "(2)No such file or directory")),
				Evidence: []string{fmt.Sprintf("%s and /proc/%d/root%s are different directories (PrivateTmp=true or another mount namespace)", tmp, pid, tmp)},
				Fix:      fix})
			return
		}
	}
	if d.opts.Unit == "" && !d.inst.Installed() {
		return // not the distribution's Apache: its unit says nothing here
	}
	if unit, on := d.unitPrivateTmp(); on {
		t.add(Finding{ID: IDPrivateTmp, Severity: SevError,
			What:     fmt.Sprintf("%s has PrivateTmp=true, so Apache started by systemd sees its own empty %s, not %s", unit, tmp, t.Socket),
			Evidence: []string{unit + ": PrivateTmp=true"},
			Fix:      fix})
	}
}

func tmpRoot(p string) string {
	if strings.HasPrefix(p, "/var/tmp/") {
		return "/var/tmp"
	}
	return "/tmp"
}

// unitPrivateTmp reads Apache's unit file and drop-ins for PrivateTmp=.
func (d *checkup) unitPrivateTmp() (string, bool) {
	candidates := []string{d.opts.Unit}
	if d.opts.Unit == "" {
		candidates = nil
		names := []string{"apache2.service", "httpd.service"}
		if d.report.Apache.Instance != "" {
			// Debian's instances run from the template unit.
			names = []string{"apache2@.service"}
		}
		for _, name := range names {
			for _, dir := range []string{"/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"} {
				candidates = append(candidates, filepath.Join(dir, name))
			}
		}
	}
	for _, f := range candidates {
		if !fileExists(f) {
			continue
		}
		name := filepath.Base(f)
		on := false
		files := []string{f}
		dropins, _ := filepath.Glob(filepath.Join("/etc/systemd/system", name+".d", "*.conf"))
		files = append(files, dropins...)
		for _, file := range files {
			if v, ok := unitValue(file, "PrivateTmp"); ok {
				on = v == "true" || v == "yes" || v == "1" || v == "on"
			}
		}
		return name, on
	}
	return "", false
}

// unitValue returns the last value of key in a unit file.
func unitValue(file, key string) (string, bool) {
	fh, err := os.Open(file)
	if err != nil {
		return "", false
	}
	defer fh.Close()
	val, found := "", false
	sc := bufio.NewScanner(fh)
	for n := 0; sc.Scan() && n < 10000; n++ {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && strings.TrimSpace(k) == key {
			val, found = strings.ToLower(strings.TrimSpace(v)), true
		}
	}
	return val, found
}

// sharedWorkers finds sockets hidden behind another socket's worker:
// Apache identifies a worker by the URL after "|" alone and routes by
// longest prefix, so two sockets behind one scheme://host mix their traffic.
func (d *checkup) sharedWorkers() {
	ts := d.report.Targets
	sameScope := func(a, b *Target) bool {
		return a.conf.VirtualHost == "" || b.conf.VirtualHost == "" || a.conf.VirtualHost == b.conf.VirtualHost
	}
	definer := func(t *Target) bool {
		return t.conf.Worker != "" && t.Socket != "" && (t.Directive == "ProxyPass" || t.Directive == "ProxyPassMatch" || t.Directive == "Proxy")
	}
	for i, a := range ts {
		for j, b := range ts {
			if i == j || a.Socket == b.Socket || a.conf.Worker == "" || b.conf.Worker == "" || !sameScope(a, b) {
				continue
			}
			wa, wb := a.conf.Worker, b.conf.Worker
			switch {
			case a.Directive == "BalancerMember" || b.Directive == "BalancerMember":
				if a.Directive == b.Directive && a.Balancer == b.Balancer && wa == wb {
					a.add(sharedFinding(a, b, SevError, "both members of "+a.Balancer+" are one worker (AH01149/AH01150), so the balancer uses one socket only"))
				}
			case definer(a) && definer(b) && wa == wb && i > j:
				a.add(sharedFinding(a, b, SevError, fmt.Sprintf("Apache shares worker %s with %s (AH01145, logged only at LogLevel info): this rule's requests go to %s", wa, b.Pos, b.Socket)))
			case definer(a) && definer(b) && wa == wb:
				a.add(sharedFinding(a, b, SevError, fmt.Sprintf("%s reuses this rule's worker %s (AH01145, logged only at LogLevel info): its requests come to %s instead of %s", b.Pos, wa, a.Socket, b.Socket)))
			case definer(a) && definer(b) && strings.HasPrefix(wb, wa):
				a.add(sharedFinding(a, b, SevWarning, fmt.Sprintf("this rule's requests whose backend URL starts with %s match %s's longer worker and go to %s", wb, b.Pos, b.Socket)))
			case a.Directive == "SetHandler" && definer(b) && strings.HasPrefix(wa, wb):
				a.add(sharedFinding(a, b, SevError, fmt.Sprintf("the worker %s defined at %s captures this handler's requests: they go to %s", wb, b.Pos, b.Socket)))
			}
		}
	}
}

func sharedFinding(a, b *Target, sev Severity, what string) Finding {
	return Finding{ID: IDSharedWorker, Severity: sev, What: what,
		Evidence: []string{a.Pos + ": unix:" + a.conf.Socket + "|" + a.URL, b.Pos + ": unix:" + b.conf.Socket + "|" + b.URL},
		Fix: fmt.Sprintf("give each socket its own host: at %s use unix:%s|%s://%s/ (the .invalid host never resolves; add ProxyPreserveHost On if the app needs the client's Host)",
			a.Pos, a.conf.Socket, a.Scheme, hostFor(a.Socket))}
}

// notInApache flags sockvisor backends with a mount whose socket no
// enabled Apache directive uses.
func (d *checkup) notInApache() {
	c := d.opts.Sockvisor
	if c == nil {
		return
	}
	used := map[string]bool{}
	for _, t := range d.report.Targets {
		used[t.Socket] = true
	}
	for _, b := range c.Backends {
		routed := b.Mount
		if b.Site != "" {
			routed = strings.TrimSpace(routed + " in site " + b.Site)
		}
		if routed == "" {
			continue
		}
		for _, s := range b.Sockets {
			if !used[s.Path] {
				fix := "make Apache Include the config sockvisor renders (see sockvisor's apache settings in " + c.File + ") and reload Apache"
				if d.applyFailed() {
					fix = "sockvisor could not apply its Apache config (see " + IDApacheApply + "): fix that, then `sockvisor reload`"
				}
				d.general(Finding{ID: IDNotInApache, Severity: SevError,
					What:     fmt.Sprintf("sockvisor backend %q is routed at %s, but no enabled Apache config of this instance uses its socket %s: those requests are not proxied (404, or another rule answers)", b.Name, routed, s.Path),
					Evidence: []string{fmt.Sprintf("%d Apache files read from %s", len(d.conf.Files), d.report.Apache.ConfigFile)},
					Fix:      fix})
			}
		}
	}
}
