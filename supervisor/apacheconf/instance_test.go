package apacheconf

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

// fakeProc writes /proc/PID/{stat,cmdline,environ} for one process.
func fakeProc(t *testing.T, proc string, pid, ppid int, comm string, argv, env []string) {
	t.Helper()
	dir := filepath.Join(proc, itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"stat":    itoa(pid) + " (" + comm + ") S " + itoa(ppid) + " 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 100",
		"cmdline": strings.Join(argv, "\x00") + "\x00",
		"environ": strings.Join(env, "\x00") + "\x00",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestRunningFindsMainProcessesAndTheirRoots(t *testing.T) {
	proc := t.TempDir()
	// Debian's second instance, as apache2ctl-web starts it, and a worker.
	fakeProc(t, proc, 100, 1, "apache2", []string{"/usr/sbin/apache2", "-d", "/etc/apache2-web", "-k", "start"}, nil)
	fakeProc(t, proc, 101, 100, "apache2", []string{"/usr/sbin/apache2", "-d", "/etc/apache2-web", "-k", "start"}, nil)
	// One started by systemd's apache2@blog.service: APACHE_CONFDIR only.
	fakeProc(t, proc, 200, 1, "apache2", []string{"/usr/sbin/apache2", "-k", "start"}, []string{"APACHE_CONFDIR=/etc/apache2-blog"})
	// A private server with its own main file and a define.
	fakeProc(t, proc, 300, 1, "apache2", []string{"/usr/sbin/apache2", "-d", "/tmp/x", "-f", "/tmp/x/main.conf", "-DFOREGROUND"}, nil)
	fakeProc(t, proc, 400, 1, "bash", []string{"bash"}, nil)

	got := running(procfs.Dir(proc), osRoot)
	if len(got) != 3 {
		t.Fatalf("running = %+v, want 3 main processes", got)
	}
	want := []Instance{
		{Name: "web", ServerRoot: "/etc/apache2-web", ConfigFile: "/etc/apache2-web/apache2.conf", PID: 100},
		{Name: "blog", ServerRoot: "/etc/apache2-blog", ConfigFile: "/etc/apache2-blog/apache2.conf", PID: 200},
		{Name: "", ServerRoot: "/tmp/x", ConfigFile: "/tmp/x/main.conf", PID: 300},
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.Name || g.ServerRoot != w.ServerRoot || g.ConfigFile != w.ConfigFile || g.PID != w.PID {
			t.Errorf("instance %d = %+v, want %+v", i, g, w)
		}
		if len(g.Apachectl) < 3 || g.Apachectl[1] != "-d" || g.Apachectl[2] != w.ServerRoot {
			t.Errorf("instance %d command %v does not address %s", i, g.Apachectl, w.ServerRoot)
		}
	}
	if c := strings.Join(got[2].Apachectl, " "); !strings.Contains(c, "-f /tmp/x/main.conf") || !strings.Contains(c, "-DFOREGROUND") {
		t.Errorf("private instance command %q lacks its -f and -D", c)
	}
}

func TestFromCommand(t *testing.T) {
	t.Setenv("APACHE_CONFDIR", "")
	cases := []struct {
		argv       []string
		name, root string
		main       string
	}{
		{[]string{"/usr/local/sbin/apache2ctl-web"}, "web", "/etc/apache2-web", "/etc/apache2-web/apache2.conf"},
		{[]string{"/usr/sbin/apache2", "-d", "/etc/apache2-web"}, "web", "/etc/apache2-web", "/etc/apache2-web/apache2.conf"},
		{[]string{"/usr/sbin/apache2", "-d", "/srv/a", "-f", "main.conf"}, "", "/srv/a", "/srv/a/main.conf"},
	}
	for _, c := range cases {
		in := FromCommand(c.argv)
		if in.Name != c.name || in.ServerRoot != c.root || in.ConfigFile != c.main {
			t.Errorf("FromCommand(%v) = %+v, want %s %s %s", c.argv, in, c.name, c.root, c.main)
		}
	}
	t.Setenv("APACHE_CONFDIR", "/etc/apache2-blog")
	if in := FromCommand([]string{"/usr/sbin/apache2ctl"}); in.Name != "blog" || in.ConfigFile != "/etc/apache2-blog/apache2.conf" {
		t.Errorf("apache2ctl with APACHE_CONFDIR = %+v", in)
	}
	if u := unitRoot("apache2@blog.service"); u != "/etc/apache2-blog" {
		t.Errorf("unitRoot = %q", u)
	}
}

func TestLocate(t *testing.T) {
	for _, c := range []struct {
		argv       []string
		main, root string
	}{
		{[]string{"apache2", "-d", "/srv/a", "-f", "x.conf"}, "/srv/a/x.conf", "/srv/a"},
		{[]string{"httpd", "-d/srv/b", "-f/etc/b.conf"}, "/etc/b.conf", "/srv/b"},
	} {
		m, r := locate(osRoot, c.argv)
		if m != c.main || r != c.root {
			t.Errorf("locate(%q) = %q %q", c.argv, m, r)
		}
	}
}

// TestDiscoverByConfigAndInstalledFiles is the choice the daemon makes
// (no running servers given), on fake roots: the flavor's root and its
// command and unit, the config's unit and file naming a second Debian
// instance, and nothing found.
func TestDiscoverByConfigAndInstalledFiles(t *testing.T) {
	t.Setenv("APACHE_CONFDIR", "")
	deb := fakeRoot(t, "etc/apache2/apache2.conf", "usr/sbin/apache2")
	rhel := fakeRoot(t, "etc/httpd/conf/httpd.conf")
	empty := fakeRoot(t)
	for _, c := range []struct {
		name string
		fs   fsRoot
		h    Hint
		want Instance
	}{
		{"debian", deb, Hint{Flavor: "auto"},
			Instance{Flavor: "debian", ServerRoot: "/etc/apache2", ConfigFile: "/etc/apache2/apache2.conf", Apachectl: []string{"/usr/sbin/apache2ctl"}, Unit: "apache2.service"}},
		{"rhel, unit from the config", rhel, Hint{Flavor: "auto", Unit: "web.service"},
			Instance{Flavor: "rhel", ServerRoot: "/etc/httpd", ConfigFile: "/etc/httpd/conf/httpd.conf", Apachectl: []string{"/usr/sbin/httpd"}, Unit: "web.service"}},
		{"explicit flavor, nothing installed", empty, Hint{Flavor: "debian", ConfigFile: "/etc/apache2/sites-enabled/sv.conf"},
			Instance{Flavor: "debian", ServerRoot: "/etc/apache2", ConfigFile: "/etc/apache2/apache2.conf", Apachectl: []string{"/usr/sbin/apache2ctl"}, Unit: "apache2.service"}},
		{"second instance by config file", deb, Hint{Flavor: "auto", ConfigFile: "/etc/apache2-web/conf-available/sockvisor.conf"},
			Instance{Name: "web", Flavor: "debian", ServerRoot: "/etc/apache2-web", ConfigFile: "/etc/apache2-web/apache2.conf",
				Apachectl: []string{"/usr/sbin/apache2", "-d", "/etc/apache2-web"}, Unit: "apache2@web.service"}},
		{"second instance by unit", deb, Hint{Unit: "apache2@blog.service"},
			Instance{Name: "blog", Flavor: "debian", ServerRoot: "/etc/apache2-blog", ConfigFile: "/etc/apache2-blog/apache2.conf",
				Apachectl: []string{"/usr/sbin/apache2", "-d", "/etc/apache2-blog"}, Unit: "apache2@blog.service"}},
		{"explicit command, private root", deb, Hint{Apachectl: []string{"/usr/sbin/apache2", "-d", "/srv/a", "-f", "main.conf"}},
			Instance{Flavor: "debian", ServerRoot: "/srv/a", ConfigFile: "/srv/a/main.conf",
				Apachectl: []string{"/usr/sbin/apache2", "-d", "/srv/a", "-f", "main.conf"}, Unit: "apache2.service"}},
	} {
		got, others := discover(c.h, c.fs)
		if !sameInstance(got, c.want) || others != nil {
			t.Errorf("%s: Discover = %+v, others %v; want %+v", c.name, got, others, c.want)
		}
	}
	// Nothing installed and no flavor: whatever PATH has, of no flavor.
	if got, _ := discover(Hint{Flavor: "auto"}, empty); got.Flavor != "" || got.Unit != "" {
		t.Errorf("nothing installed: %+v, want no flavor and no unit", got)
	}
}

// TestDiscoverPrefersTheRunningInstalledInstance is the doctor's choice:
// the default instance that runs, else a running second one, before a
// server run by hand; a running chosen one carries its pid and argv.
func TestDiscoverPrefersTheRunningInstalledInstance(t *testing.T) {
	deb := fakeRoot(t, "etc/apache2/apache2.conf", "usr/sbin/apache2")
	private := Instance{ServerRoot: "/tmp/x", ConfigFile: "/tmp/x/main.conf", Apachectl: []string{"/usr/sbin/apache2", "-d", "/tmp/x"}, PID: 300}
	web := Instance{Name: "web", ServerRoot: "/etc/apache2-web", ConfigFile: "/etc/apache2-web/apache2.conf", Apachectl: []string{"/usr/sbin/apache2", "-d", "/etc/apache2-web"}, PID: 100}
	def := Instance{ServerRoot: "/etc/apache2", ConfigFile: "/etc/apache2/apache2.conf", Apachectl: []string{"/usr/sbin/apache2", "-d", "/etc/apache2", "-DFOREGROUND"}, PID: 50}

	got, others := discover(Hint{Running: []Instance{def, web, private}}, deb)
	if got.PID != 50 || got.ServerRoot != "/etc/apache2" || len(others) != 2 || got.Unit != "apache2.service" {
		t.Errorf("default running: %+v, others %+v", got, others)
	}
	got, others = discover(Hint{Running: []Instance{web, private}}, deb)
	if got.PID != 100 || got.Name != "web" || got.Unit != "apache2@web.service" || len(others) != 1 || others[0].PID != 300 {
		t.Errorf("second instance running: %+v, others %+v", got, others)
	}
	got, _ = discover(Hint{Running: []Instance{private}}, deb)
	if got.PID != 0 || got.ServerRoot != "/etc/apache2" {
		t.Errorf("only a private server runs: %+v, want the stopped default instance", got)
	}
	// The config's file names the instance; a running one lends its argv.
	got, _ = discover(Hint{ConfigFile: "/etc/apache2/conf-available/sockvisor.conf", Running: []Instance{web, def}}, deb)
	if got.PID != 50 || strings.Join(got.Apachectl, " ") != strings.Join(def.Apachectl, " ") {
		t.Errorf("by config file: %+v", got)
	}
}

// fakeRoot makes an empty file at each path under a new directory.
func fakeRoot(t *testing.T, paths ...string) fsRoot {
	t.Helper()
	root := t.TempDir()
	for _, p := range paths {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fsRoot(root)
}

func sameInstance(a, b Instance) bool {
	return a.Name == b.Name && a.ServerRoot == b.ServerRoot && a.ConfigFile == b.ConfigFile && a.PID == b.PID &&
		a.Flavor == b.Flavor && a.Unit == b.Unit && strings.Join(a.Apachectl, " ") == strings.Join(b.Apachectl, " ")
}

func TestParseListensRootsAndServerNames(t *testing.T) {
	files := memFS{"/etc/apache2/apache2.conf": `Listen 80
Listen 127.0.0.1:8080
DocumentRoot /var/www/html
<VirtualHost *:80>
  ServerName wp.example
  DocumentRoot /usr/share/wordpress
  Alias /wp-content /var/lib/wordpress/wp-content
</VirtualHost>
`}
	c, err := newParser("/etc/apache2/apache2.conf", ParseOptions{ServerRoot: "/etc/apache2"}, files).parse()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Listens, " ") != "80 127.0.0.1:8080" {
		t.Errorf("listens %v", c.Listens)
	}
	if len(c.Roots) != 3 || c.Roots[0] != (Root{URL: "/", Dir: "/var/www/html", Pos: "/etc/apache2/apache2.conf:3"}) ||
		c.Roots[2].URL != "/wp-content" || c.Roots[2].Dir != "/var/lib/wordpress/wp-content" || c.Roots[1].VirtualHost != "/etc/apache2/apache2.conf:4" {
		t.Errorf("roots %+v", c.Roots)
	}
	if c.ServerNames["/etc/apache2/apache2.conf:4"] != "wp.example" {
		t.Errorf("server names %v", c.ServerNames)
	}
}
