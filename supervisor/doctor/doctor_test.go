package doctor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

func TestHealthySetupIsHealthy(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/gunicorn", "/usr/bin/uwsgi")
	testutil.PHPFPM(t)
	dir := testutil.ShortDir(t)
	g, b1, b2 := dir+"/g.sock", dir+"/b1.sock", dir+"/b2.sock"
	php, u := dir+"/php.sock", dir+"/u.sock"
	gunicorn(t, dir, g, b1, b2)
	phpFPM(t, dir, php)
	uwsgi(t, dir, u)
	site := fmt.Sprintf(`ProxyPass "/app/" "unix:%s|http://g.invalid/"
ProxyPass "/u/" "unix:%s|uwsgi://u.invalid/"
<FilesMatch "\.php$">
  SetHandler "proxy:unix:%s|fcgi://php.invalid"
</FilesMatch>
<Proxy "balancer://pool">
  BalancerMember "unix:%s|http://b1.invalid/" retry=1
  BalancerMember "unix:%s|http://b2.invalid/" retry=1
</Proxy>
ProxyPass "/pool/" "balancer://pool/"
`, g, u, php, b1, b2)
	in := apachetest.Start(t, site)
	if err := os.WriteFile(filepath.Join(in.Dir, "index.php"), []byte(`<?php echo "php ok";`), 0o644); err != nil {
		t.Fatal(err)
	}
	// The setup really works end to end, so any finding would be a false alarm.
	for path, want := range map[string]string{"/app/": "wsgi ok", "/u/": "wsgi ok", "/index.php": "php ok", "/pool/": "wsgi ok"} {
		if code, body := get(t, in, path); code != 200 || !strings.Contains(body, want) {
			t.Fatalf("GET %s = %d %q\n%s", path, code, body, in.Log())
		}
	}
	cfg := &config.Config{File: "/etc/sockvisor/sockvisor.hcl", SocketDir: dir, Backends: []*config.Backend{
		{Name: "web", Mount: "/app/", Sockets: []config.Socket{{Backend: "web", Path: g}}},
	}}
	r := diagnose(t, in, Options{Sockvisor: cfg})
	if !r.Healthy() || r.ExitCode() != 0 {
		t.Fatalf("healthy setup reported problems: %+v", r.all())
	}
	wantSpeaks := map[int]string{1: "http", 2: "uwsgi-likely", 4: "fcgi", 7: "http", 8: "http"}
	if len(r.Targets) != len(wantSpeaks) {
		t.Fatalf("got %d targets, want %d", len(r.Targets), len(wantSpeaks))
	}
	for line, speaks := range wantSpeaks {
		tg := target(t, r, in, line)
		if tg.Verdict != "ok" || tg.Speaks != speaks {
			t.Errorf("%s: verdict %s speaks %q, want ok %q", tg.Pos, tg.Verdict, tg.Speaks, speaks)
		}
		if len(tg.Walk) == 0 || !tg.Walk[len(tg.Walk)-1].OK {
			t.Errorf("%s: walk %+v", tg.Pos, tg.Walk)
		}
	}
	if tg := target(t, r, in, 1); tg.Backend != "web" {
		t.Errorf("socket not mapped to sockvisor backend: %+v", tg)
	}
	if r.Apache.Identity.User != "www-data" || r.Apache.Identity.UID != 33 || r.Apache.PID != in.PID() {
		t.Errorf("apache info = %+v", r.Apache)
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Targets) != 5 || back.Targets[0].Verdict != "ok" {
		t.Fatalf("JSON round trip: %v %s", err, js.String())
	}
}

func TestPermissionDeniedNamesComponentAndFix(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	dir := testutil.ShortDir(t)
	locked := dir + "/locked"
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	a, b := locked+"/a.sock", dir+"/b.sock"
	gunicorn(t, dir, a, b)
	if err := os.Chmod(b, 0o600); err != nil { // root-owned, no write for www-data
		t.Fatal(err)
	}
	in := apachetest.Start(t, fmt.Sprintf(`ProxyPass "/a/" "unix:%s|http://a.invalid/"
ProxyPass "/b/" "unix:%s|http://b.invalid/"
`, a, b))
	for _, p := range []string{"/a/", "/b/"} {
		if code, _ := get(t, in, p); code != 503 {
			t.Fatalf("GET %s = %d, want 503", p, code)
		}
	}
	r := diagnose(t, in, Options{})
	if r.Healthy() || r.ExitCode() != 1 {
		t.Fatal("broken setup reported healthy")
	}
	ta := target(t, r, in, 1)
	f := finding(t, ta, IDPermission)
	mustContain(t, "what", f.What, "www-data cannot search (x) the directory "+locked, "drwx------ root:root")
	mustContain(t, "fix", f.Fix, "setfacl -m u:www-data:x "+locked, "chmod o+x "+locked)
	mustContain(t, "log", strings.Join(f.Log, "\n"), "(13)Permission denied", "AH02454", a)
	for _, st := range ta.Walk {
		if !st.OK {
			if st.Path != locked {
				t.Errorf("first denial at %s, want %s: %+v", st.Path, locked, ta.Walk)
			}
			break
		}
	}
	if ta.Speaks != "http" {
		t.Errorf("liveness as root not checked: speaks %q", ta.Speaks)
	}
	fb := finding(t, target(t, r, in, 2), IDPermission)
	mustContain(t, "what", fb.What, "cannot write (w) the socket "+b)
	mustContain(t, "fix", fb.Fix, fmt.Sprintf("chgrp www-data %s && chmod g+w %s", b, b))

	// Apply the fixes (the ACL as setfacl would write it) and expect health.
	setACL(t, locked, 33)
	if err := os.Chown(b, 0, 33); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(b, 0o660); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a/", "/b/"} {
		if code, _ := get(t, in, p); code != 200 {
			t.Fatalf("after the fix GET %s = %d\n%s", p, code, in.Log())
		}
	}
	r = diagnose(t, in, Options{})
	if !r.Healthy() {
		t.Fatalf("fixed setup still unhealthy: %+v", r.all())
	}
	if len(r.Find(IDPastError)) == 0 {
		t.Errorf("the earlier 503s should remain as past-error notes")
	}
	if w := target(t, r, in, 1).Walk; !strings.HasSuffix(w[len(w)-2].Mode, "+") {
		t.Errorf("ACL not shown in the walk: %+v", w)
	}
}

// setACL writes system.posix_acl_access granting uid search on dir, as
// `setfacl -m u:UID:x` does (mask recomputed to x).
func setACL(t *testing.T, dir string, uid uint32) {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{aclUserObj, 7, ^uint32(0)}, {aclUser, 1, uid}, {aclGroupObj, 0, ^uint32(0)}, {aclMask, 1, ^uint32(0)}, {aclOther, 0, ^uint32(0)}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	if err := unix.Setxattr(dir, "system.posix_acl_access", b, 0); err != nil {
		testutil.Unavailable(t, "needs a file system with POSIX ACLs for %s: %v", dir, err)
	}
}

func TestMissingSocketNamesOwner(t *testing.T) {
	dir := testutil.ShortDir(t)
	app := dir + "/app.sock"
	gone := dir + "/nodir/b.sock"
	in := apachetest.Start(t, fmt.Sprintf(`ProxyPass "/a/" "unix:%s|http://app.invalid/"
ProxyPass "/b/" "unix:%s|http://b.invalid/"
`, app, gone))
	if code, _ := get(t, in, "/a/"); code != 503 {
		t.Fatalf("GET /a/ = %d", code)
	}
	cfg := &config.Config{File: "/etc/sockvisor/sockvisor.hcl", SocketDir: dir, Backends: []*config.Backend{
		{Name: "app", Mount: "/a/", Sockets: []config.Socket{{Backend: "app", Path: app}}},
	}}
	r := diagnose(t, in, Options{Sockvisor: cfg})
	f := finding(t, target(t, r, in, 1), IDSocketMissing)
	mustContain(t, "fix", f.Fix, `sockvisor backend "app"`)
	mustContain(t, "log", strings.Join(f.Log, "\n"), "(2)No such file or directory", "AH02454")
	if f.LogCount < 1 {
		t.Errorf("log count %d", f.LogCount)
	}
	f = finding(t, target(t, r, in, 2), IDSocketMissing)
	mustContain(t, "what", f.What, "its directory "+dir+"/nodir is missing")
	if r.ExitCode() != 1 {
		t.Errorf("exit code %d", r.ExitCode())
	}
}

// TestMissingFPMSocketNamesPool uses Debian's own phpX.Y-fpm.conf: the
// doctor finds the SetHandler inside its <IfModule> sections and names the
// PHP-FPM pool that should create the socket.
func TestMissingFPMSocketNamesPool(t *testing.T) {
	_, v := testutil.PHPFPM(t)
	conf, sock, pool := "/etc/apache2/conf-available/php"+v+"-fpm.conf", "/run/php/php"+v+"-fpm.sock", "/etc/php/"+v+"/fpm/pool.d/www.conf"
	testutil.NeedBinary(t, conf, pool)
	if _, err := os.Stat(sock); err == nil {
		testutil.Unavailable(t, "needs the system PHP-FPM stopped (its socket %s exists)", sock)
	}
	in := apachetest.Start(t, "Include "+conf+"\n")
	r := diagnose(t, in, Options{})
	if len(r.Targets) != 1 || r.Targets[0].Socket != sock || r.Targets[0].Scheme != "fcgi" {
		t.Fatalf("targets %+v", r.Targets)
	}
	f := finding(t, r.Targets[0], IDSocketMissing)
	mustContain(t, "fix", f.Fix, "PHP-FPM pool [www] in "+pool, "systemctl start php"+v+"-fpm")
}

func TestStaleSocketAndNonSocket(t *testing.T) {
	dir := testutil.ShortDir(t)
	stale, plain := dir+"/stale.sock", dir+"/plain.sock"
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	os.Chmod(stale, 0o777)
	if err := os.WriteFile(plain, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	in := apachetest.Start(t, fmt.Sprintf(`ProxyPass "/s/" "unix:%s|http://stale.invalid/"
ProxyPass "/p/" "unix:%s|http://plain.invalid/"
`, stale, plain))
	if code, _ := get(t, in, "/s/"); code != 503 {
		t.Fatalf("GET /s/ = %d", code)
	}
	r := diagnose(t, in, Options{})
	f := finding(t, target(t, r, in, 1), IDStale)
	mustContain(t, "what", f.What, "no process listens")
	mustContain(t, "log", strings.Join(f.Log, "\n"), "(111)Connection refused", stale)
	f = finding(t, target(t, r, in, 2), IDNotSocket)
	mustContain(t, "what", f.What, "a regular file")
	mustContain(t, "fix", f.Fix, "rm "+plain)
}

func TestFullBacklog(t *testing.T) {
	dir := testutil.ShortDir(t)
	sock := dir + "/full.sock"
	testutil.ListenUnix(t, sock, 1)
	os.Chmod(sock, 0o777)
	// Never accept; fill the queue until the kernel says EAGAIN.
	full := false
	for i := 0; i < 64 && !full; i++ {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(c) })
		err = unix.Connect(c, &unix.SockaddrUnix{Name: sock})
		full = err == unix.EAGAIN
	}
	if !full {
		t.Fatal("could not fill the backlog")
	}
	in := apachetest.Start(t, fmt.Sprintf("ProxyPass \"/f/\" \"unix:%s|http://full.invalid/\"\n", sock))
	r := diagnose(t, in, Options{})
	f := finding(t, target(t, r, in, 1), IDBacklogFull)
	mustContain(t, "what", f.What, "listen queue is full", "backlog 1)")
	mustContain(t, "evidence", strings.Join(f.Evidence, "\n"), "Recv-Q (waiting) 2, Send-Q (backlog) 1")
	if n := len(r.Find(IDBacklogFull)); n != 1 {
		t.Errorf("%d backlog findings, want 1", n)
	}
}

func TestProtocolMismatch(t *testing.T) {
	testutil.PHPFPM(t)
	dir := testutil.ShortDir(t)
	php, g := dir+"/php.sock", dir+"/g.sock"
	phpFPM(t, dir, php)
	httpServer(t, dir, g, "http ok")
	in := apachetest.Start(t, fmt.Sprintf(`ProxyPass "/php/" "unix:%s|http://php.invalid/"
ProxyPass "/g/" "unix:%s|fcgi://g.invalid/"
`, php, g))
	if code, _ := get(t, in, "/php/x"); code != 502 {
		t.Fatalf("GET /php/x = %d, want 502\n%s", code, in.Log())
	}
	if code, _ := get(t, in, "/g/x"); code != 503 {
		t.Fatalf("GET /g/x = %d, want 503\n%s", code, in.Log())
	}
	// The HTTP server answers 400 and closes at once: Apache logs AH01068
	// (bogus version) when it reads the answer, or AH01074 (broken pipe)
	// when the close beats its own writes, as it does on a loaded machine.
	fcgiLine := func() string {
		for _, c := range []string{"AH01068", "AH01074"} {
			if strings.Contains(in.Log(), c) {
				return c
			}
		}
		return ""
	}
	for deadline := time.Now().Add(5 * time.Second); fcgiLine() == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Apache logged neither AH01068 nor AH01074:\n%s", in.Log())
		}
	}
	r := diagnose(t, in, Options{})
	tp := target(t, r, in, 1)
	f := finding(t, tp, IDProtocolMismatch)
	mustContain(t, "what", f.What, "speaks http", "backend speaks fcgi", "502", "AH01102")
	mustContain(t, "fix", f.Fix, "unix:"+php+"|fcgi://php.invalid/")
	mustContain(t, "log", strings.Join(f.Log, "\n"), "AH01102")
	if tp.Speaks != "fcgi" {
		t.Errorf("speaks %q", tp.Speaks)
	}
	f = finding(t, target(t, r, in, 2), IDProtocolMismatch)
	mustContain(t, "what", f.What, "backend speaks http", "503", "AH01068")
	mustContain(t, "fix", f.Fix, "|http://g.invalid/")
	mustContain(t, "log", strings.Join(f.Log, "\n"), fcgiLine())
}

func TestSharedWorkerHost(t *testing.T) {
	dir := testutil.ShortDir(t)
	a, b := dir+"/a.sock", dir+"/b.sock"
	httpServer(t, dir, a, "served by A")
	httpServer(t, dir, b, "served by B")
	in := apachetest.Start(t, fmt.Sprintf(`ProxyPass "/a/" "unix:%s|http://localhost/"
ProxyPass "/b/" "unix:%s|http://localhost/"
`, a, b))
	// The trap is real: /b/ is answered by A's socket.
	if code, body := get(t, in, "/b/"); code != 200 || body != "served by A" {
		t.Fatalf("GET /b/ = %d %q; expected misrouting to A", code, body)
	}
	r := diagnose(t, in, Options{})
	fb := finding(t, target(t, r, in, 2), IDSharedWorker)
	mustContain(t, "what", fb.What, "http://localhost/", "requests go to "+a)
	mustContain(t, "fix", fb.Fix, "unix:"+b+"|http://b.invalid/")
	fa := finding(t, target(t, r, in, 1), IDSharedWorker)
	mustContain(t, "fix", fa.Fix, "|http://a.invalid/")
	if r.Healthy() {
		t.Error("shared worker reported healthy")
	}
}

func TestSetHandlerWithoutFcgiLeaksSource(t *testing.T) {
	testutil.PHPFPM(t)
	dir := testutil.ShortDir(t)
	php := dir + "/php.sock"
	phpFPM(t, dir, php)
	in := apachetest.Start(t, fmt.Sprintf(`<FilesMatch "\.php$">
  SetHandler "proxy:unix:%s"
</FilesMatch>
`, php))
	if err := os.WriteFile(filepath.Join(in.Dir, "leak.php"), []byte(`<?php echo "secret";`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, in, "/leak.php"); code != 200 || !strings.Contains(body, "<?php") {
		t.Fatalf("GET /leak.php = %d %q; expected the source", code, body)
	}
	r := diagnose(t, in, Options{})
	f := finding(t, target(t, r, in, 2), IDSetHandlerNoFcgi)
	mustContain(t, "what", f.What, "PHP source")
	mustContain(t, "fix", f.Fix, `SetHandler "proxy:unix:`+php+`|fcgi://localhost"`)
}

func TestPathTooLong(t *testing.T) {
	dir := testutil.ShortDir(t)
	long := dir + "/" + strings.Repeat("p", 110) + ".sock" // > 108
	if err := os.WriteFile(filepath.Join(dir, "x.php"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	in := apachetest.Start(t, fmt.Sprintf(`<FilesMatch "\.php$">
  SetHandler "proxy:unix:%s|fcgi://localhost"
</FilesMatch>
`, long))
	if err := os.WriteFile(filepath.Join(in.Dir, "x.php"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, in, "/x.php"); code != 503 {
		t.Fatalf("GET /x.php = %d, want 503", code)
	}
	// Someone now adds a ProxyPass over Apache's 95-byte limit: Apache
	// refuses the edited config.
	mid := dir + "/" + strings.Repeat("q", 80) + ".sock" // 96..107
	site, _ := os.ReadFile(in.Site)
	site = append(site, fmt.Sprintf("ProxyPass \"/m/\" \"unix:%s|http://m.invalid/\"\n", mid)...)
	if err := os.WriteFile(in.Site, site, 0o644); err != nil {
		t.Fatal(err)
	}
	r := diagnose(t, in, Options{})
	f := finding(t, target(t, r, in, 2), IDPathTooLong)
	mustContain(t, "what", f.What, fmt.Sprintf("%d bytes", len(long)), "Invalid argument")
	mustContain(t, "fix", f.Fix, fmt.Sprintf("by at least %d bytes", len(long)-config.MaxSocketPath))
	mustContain(t, "log", strings.Join(f.Log, "\n"), "(22)Invalid argument")
	f = finding(t, target(t, r, in, 4), IDPathTooLong)
	mustContain(t, "what", f.What, "refuses the config", fmt.Sprintf("%d bytes", len(mid)))
	g := r.Find(IDApacheConfig)
	if len(g) != 1 {
		t.Fatalf("apache-config-invalid findings: %+v", r.General)
	}
	mustContain(t, "evidence", strings.Join(g[0].Evidence, ""), "too long")
}

func TestPrivateTmpHidesSocket(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/gunicorn", "/usr/bin/unshare")
	dir := testutil.ShortDir(t) // under /tmp, which the private Apache cannot see
	sock := dir + "/app.sock"
	gunicorn(t, dir, sock)
	in := apachetest.Start(t, fmt.Sprintf("ProxyPass \"/a/\" \"unix:%s|http://app.invalid/\"\n", sock), apachetest.PrivateTmp())
	if code, _ := get(t, in, "/a/"); code != 503 {
		t.Fatalf("GET /a/ = %d, want 503", code)
	}
	r := diagnose(t, in, Options{})
	tg := target(t, r, in, 1)
	f := finding(t, tg, IDPrivateTmp)
	mustContain(t, "what", f.What, fmt.Sprintf("pid %d", in.PID()), "private /tmp")
	mustContain(t, "fix", f.Fix, "/run/")
	mustContain(t, "log", strings.Join(f.Log, "\n"), "(2)No such file or directory")
	if tg.has(IDSocketMissing) {
		t.Error("the socket exists for us: socket-missing would mislead")
	}
}

// A stopped Apache used to be reported "Status: not running" and then
// "Healthy" with exit 0, so a fleet health gate passed on a dead node.
func TestStoppedApacheIsAnError(t *testing.T) {
	dir := testutil.ShortDir(t)
	sock := filepath.Join(dir, "g.sock")
	gunicorn(t, dir, sock)
	in := apachetest.Start(t, fmt.Sprintf("ProxyPass \"/app/\" \"unix:%s|http://g.invalid/\"\n", sock))
	if code, _ := get(t, in, "/app/"); code != 200 {
		t.Fatalf("GET /app/ = %d before the stop\n%s", code, in.Log())
	}
	// Stop the server but keep its files, as `apachectl -k stop` does.
	if err := syscall.Kill(in.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); in.Alive(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Apache did not stop in 15 s")
		}
	}
	r := diagnose(t, in, Options{})
	if r.Healthy() || r.ExitCode() != 1 {
		t.Fatalf("stopped Apache reported healthy (exit %d): %+v", r.ExitCode(), r.all())
	}
	fs := r.Find(IDApacheStopped)
	if len(fs) != 1 || fs[0].Severity != SevError || len(fs[0].Evidence) == 0 {
		t.Fatalf("findings %+v lack one %s error with evidence", r.all(), IDApacheStopped)
	}
	mustContain(t, "fix", fs[0].Fix, strings.Join(in.Command(), " ")+" -k start")
	var b bytes.Buffer
	r.WriteText(&b)
	if strings.Contains(b.String(), "Healthy") {
		t.Errorf("text report of a stopped Apache says healthy:\n%s", b.String())
	}
}
