package doctor

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/probe"
)

func TestCheckLabel(t *testing.T) {
	for _, c := range []struct {
		label string
		want  []string
		ok    bool
	}{
		{"system_u:object_r:httpd_var_run_t:s0", httpdSocketTypes, true},
		{"system_u:object_r:httpd_runtime_t:s0:c1,c2", httpdSocketTypes, true},
		{"system_u:object_r:var_run_t:s0", httpdSocketTypes, false},
		{"unconfined_u:object_r:user_tmp_t:s0", []string{"httpd_var_run_t"}, false},
		{"system_u:object_r:httpd_tmp_t:s0", []string{"httpd_var_run_t"}, false},
		{"garbage", httpdSocketTypes, false},
		{"", httpdSocketTypes, false},
	} {
		msg := checkLabel(c.label, c.want)
		if (msg == "") != c.ok {
			t.Errorf("checkLabel(%q, %v) = %q, want ok=%v", c.label, c.want, msg, c.ok)
		}
		if !c.ok && c.label != "garbage" && c.label != "" && !strings.Contains(msg, labelType(c.label)) {
			t.Errorf("message %q does not name the type", msg)
		}
	}
	if got := labelFix("/run/sv/app.sock", "httpd_var_run_t"); got != "semanage fcontext -a -t httpd_var_run_t '/run/sv(/.*)?' && restorecon -Rv /run/sv" {
		t.Errorf("labelFix = %q", got)
	}
}

func aclBytes(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

func TestAllowed(t *testing.T) {
	www := Identity{User: "www-data", UID: 33, GID: 33, Groups: []uint32{33, 1001}}
	step := func(mode os.FileMode, uid, gid uint32, a *acl) Step {
		return Step{mode: mode, uid: uid, gid: gid, acl: a}
	}
	const x, w = 1, 2
	none := ^uint32(0)
	userX := parseACL(aclBytes([3]uint32{aclUserObj, 7, none}, [3]uint32{aclUser, 1, 33}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclMask, 1, none}, [3]uint32{aclOther, 0, none}))
	masked := parseACL(aclBytes([3]uint32{aclUserObj, 7, none}, [3]uint32{aclUser, 7, 33}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclMask, 0, none}, [3]uint32{aclOther, 7, none}))
	groupACL := parseACL(aclBytes([3]uint32{aclUserObj, 7, none}, [3]uint32{aclGroupObj, 0, none}, [3]uint32{aclGroup, 2, 1001}, [3]uint32{aclMask, 7, none}, [3]uint32{aclOther, 0, none}))
	for i, c := range []struct {
		s    Step
		bit  uint16
		want bool
	}{
		{step(0o700, 0, 0, nil), x, false},
		{step(0o701, 0, 0, nil), x, true},
		{step(0o710, 0, 33, nil), x, true},
		{step(0o710, 0, 1001, nil), x, true},  // supplementary group
		{step(0o707, 0, 33, nil), x, false},   // group match stops at group bits
		{step(0o070, 33, 33, nil), x, false},  // owner match stops at owner bits
		{step(0o600, 0, 0, userX), x, true},   // named user entry
		{step(0o600, 0, 0, masked), x, false}, // mask limits it; other is not consulted
		{step(0o600, 0, 0, groupACL), w, true},
		{step(0o600, 0, 0, groupACL), x, false},
	} {
		if got := allowed(c.s, www, c.bit); got != c.want {
			t.Errorf("case %d: allowed = %v, want %v", i, got, c.want)
		}
	}
	if !allowed(step(0o000, 5, 5, nil), Identity{UID: 0}, w) {
		t.Error("root is always allowed")
	}
	for _, b := range [][]byte{nil, {1, 2}, aclBytes()[:3], append(aclBytes([3]uint32{aclUser, 1, 1}), 9), aclBytes([3]uint32{aclUserObj, 7, none}, [3]uint32{aclGroupObj, 5, none}, [3]uint32{aclOther, 5, none})} {
		if parseACL(b) != nil {
			t.Errorf("parseACL(% x) should be nil (garbage or minimal ACL)", b)
		}
	}
}

func TestLsMode(t *testing.T) {
	for m, want := range map[uint32]string{
		0o040755: "drwxr-xr-x", 0o041777: "drwxrwxrwt", 0o140660: "srw-rw----",
		0o100644: "-rw-r--r--", 0o042750: "drwxr-s---", 0o102600: "-rw---S---",
	} {
		if got := lsMode(m); got != want {
			t.Errorf("lsMode(%o) = %q, want %q", m, got, want)
		}
	}
}

func TestResolveIdentity(t *testing.T) {
	f := filepath.Join(t.TempDir(), "group")
	os.WriteFile(f, []byte("root:x:0:\nwww-data:x:33:\nsv:x:990:alice,www-data\nother:x:991:alice\nbad line\n"), 0o644)
	id, err := resolveIdentity("www-data", 33, "www-data", 33, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Groups) != 2 || id.Groups[0] != 33 || id.Groups[1] != 990 {
		t.Errorf("groups = %v, want [33 990]", id.Groups)
	}
}

// targets builds a checkup over targets parsed from an Apache config snippet.
func targets(t *testing.T, src string, modules map[string]bool) *checkup {
	t.Helper()
	dir := t.TempDir()
	main := filepath.Join(dir, "main.conf")
	os.WriteFile(main, []byte(src), 0o644)
	conf, err := apacheconf.Parse(main, apacheconf.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := &checkup{report: &Report{Apache: ApacheInfo{ServerRoot: "/etc/apache2"}}, modules: modules, sockets: map[string]*sockState{}, conf: conf}
	for _, ct := range conf.Targets {
		tg := &Target{Pos: ct.Pos(), Directive: ct.Directive, Mount: ct.Mount, Balancer: ct.Balancer,
			Socket: ct.Path, URL: ct.URL, Scheme: ct.Scheme, conf: ct}
		d.urlChecks(tg)
		d.pathBudget(tg)
		d.moduleCheck(tg)
		d.retryCheck(tg)
		d.report.Targets = append(d.report.Targets, tg)
	}
	d.sharedWorkers()
	return d
}

func ids(tg *Target) string {
	var out []string
	for _, f := range tg.Findings {
		out = append(out, string(f.Severity)+":"+f.ID)
	}
	return strings.Join(out, ",")
}

func TestConfigTraps(t *testing.T) {
	long := "/run/" + strings.Repeat("x", 100) + ".sock"
	d := targets(t, `ProxyPass /a/ unix:/run/a.sock|http://localhost/
ProxyPass /b/ unix:/run/b.sock|http://localhost/b/
<FilesMatch \.php$>
SetHandler proxy:unix:/run/php.sock|fcgi://localhost
</FilesMatch>
<Proxy unix:/run/fpm.sock|fcgi://localhost/>
</Proxy>
<Proxy balancer://p>
BalancerMember unix:/run/m1.sock|http://m.invalid/ retry=0
BalancerMember unix:/run/m2.sock|http://m.invalid/ retry=0
BalancerMember unix:/run/m3.sock|http://m3.invalid/
</Proxy>
ProxyPass /u/ unix:/run/u.sock|uwsgi://u.invalid/
ProxyPass /bad/ unix:/run/bad.sock
ProxyPass /long/ unix:`+long+`|http://long.invalid/
<VirtualHost *:80>
ProxyPass /v/ unix:/run/v1.sock|http://v.invalid/
</VirtualHost>
<VirtualHost *:81>
ProxyPass /v/ unix:/run/v2.sock|http://v.invalid/
</VirtualHost>
`, map[string]bool{"proxy": true, "proxy_http": true, "proxy_fcgi": true, "proxy_balancer": true, "slotmem_shm": true})
	want := []string{
		"warning:shared-worker",     // a: /b/... requests go to b
		"",                          // b
		"error:shared-worker",       // SetHandler captured by the <Proxy> worker
		"",                          // <Proxy>
		"error:shared-worker",       // m1 and m2 are one worker
		"error:shared-worker",       //
		"warning:balancer-no-retry", // m3
		"error:module-missing",      // uwsgi
		"error:invalid-url",         // no |
		"error:path-too-long",       // > 95 in ProxyPass
		"", "",                      // separate vhosts do not share
	}
	if len(d.report.Targets) != len(want) {
		t.Fatalf("%d targets", len(d.report.Targets))
	}
	for i, w := range want {
		if got := ids(d.report.Targets[i]); got != w {
			t.Errorf("%s: findings %q, want %q", d.report.Targets[i].Pos, got, w)
		}
	}
	f := d.report.Targets[7].Findings[0]
	if f.Fix != "a2enmod proxy_uwsgi && systemctl restart apache2" || !strings.Contains(f.What, "AH01144") {
		t.Errorf("module finding %+v", f)
	}
	if f := d.report.Targets[2].Findings[0]; !strings.Contains(f.What, "/run/fpm.sock") {
		t.Errorf("capture finding %+v", f)
	}
}

func TestLogLinesMapToFindings(t *testing.T) {
	d := targets(t, `ProxyPass /x/ unix:/run/sv/x.sock|http://x.invalid/
ProxyPass /f/ unix:/run/sv/f.sock|fcgi://f.invalid/
ProxyPass /u/ unix:/run/sv/u.sock|uwsgi://u.invalid/
`, nil)
	tx, tf, tu := d.report.Targets[0], d.report.Targets[1], d.report.Targets[2]
	tx.add(Finding{ID: IDSocketMissing, Severity: SevError})
	tf.add(Finding{ID: IDProtocolMismatch, Severity: SevError})
	tu.add(Finding{ID: IDModuleMissing, Severity: SevError})
	for _, l := range []string{
		"[Tue Nov 24 00:17:50 2026] [proxy:error] [pid 1:tid 2] (2)No such file or directory: AH02454: http: attempt to connect to Unix domain socket /run/sv/x.sock (x.invalid:80) failed",
		"[Tue Nov 24 00:17:50 2026] [proxy_http:error] [pid 1:tid 2] [client 127.0.0.1:5] AH01114: HTTP: failed to make connection to backend: x.invalid",
		"[Tue Nov 24 00:17:50 2026] [proxy:error] [pid 1:tid 2] (111)Connection refused: AH02454: http: attempt to connect to Unix domain socket /run/sv/x.sock (x.invalid:80) failed",
		"[Tue Nov 24 00:17:51 2026] [proxy_fcgi:error] [pid 1:tid 2] [client 127.0.0.1:5] AH01068: Got bogus version 72",
		"[Tue Nov 24 00:17:51 2026] [proxy:warn] [pid 1:tid 2] [client 127.0.0.1:5] AH01144: No protocol handler was valid for the URL /u/ (scheme 'uwsgi'). If you are using a DSO version of mod_proxy, make sure the proxy submodules are included in the configuration using LoadModule.",
		"[Tue Nov 24 00:17:52 2026] [core:error] [pid 1:tid 2] AH00000: unrelated",
		"not a log line",
	} {
		if pl, ok := parseLogLine(l); ok {
			d.attach(pl)
		}
	}
	if f := tx.Findings[0]; f.LogCount != 2 {
		t.Errorf("socket-missing got %d lines: %q", f.LogCount, f.Log)
	}
	if f := tx.Findings[1]; f.ID != IDPastError || f.LogCount != 1 || !strings.Contains(f.Log[0], "(111)") {
		t.Errorf("the refused connect explains nothing current: %+v", tx.Findings)
	}
	if f := tf.Findings[0]; f.LogCount != 1 || !strings.Contains(f.Log[0], "AH01068") {
		t.Errorf("fcgi mismatch log: %+v", f)
	}
	if f := tu.Findings[0]; f.LogCount != 1 {
		t.Errorf("module log: %+v", f)
	}
}

func TestMismatchPredictions(t *testing.T) {
	for _, c := range []struct{ scheme, kind, want string }{
		{"http", "fcgi", "AH01102"}, {"http", "uwsgi-likely", "502"}, {"fcgi", "http", "AH01068"},
		{"fcgi", "uwsgi-likely", "AH01067"}, {"uwsgi", "http", "500"},
	} {
		if got := mismatch(c.scheme, probeKind(c.kind)); !strings.Contains(got, c.want) {
			t.Errorf("mismatch(%s, %s) = %q", c.scheme, c.kind, got)
		}
	}
}

func probeKind(s string) probe.Kind { return probe.Kind(s) }
