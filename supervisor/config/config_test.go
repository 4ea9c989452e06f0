package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func parse(t *testing.T, src string) (*Config, error) {
	t.Helper()
	return Parse([]byte(src), "test.hcl")
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := parse(t, src)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// wantProblem asserts Parse fails with ErrInvalid and a message at line that
// contains every fragment.
func wantProblem(t *testing.T, src string, line string, fragments ...string) {
	t.Helper()
	_, err := parse(t, src)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse error = %v, want ErrInvalid", err)
	}
	msg := err.Error()
	if line != "" && !strings.Contains(msg, "test.hcl:"+line+":") {
		t.Errorf("error %q does not point at test.hcl:%s", msg, line)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, `backend "app" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  user    = "root"
}`)
	if c.SocketDir != "/run/sockvisor" || c.SocketDirMode != 0o2750 || c.SocketOwner != "root" {
		t.Errorf("socket dir defaults = %s %s %s", c.SocketDir, c.SocketDirMode, c.SocketOwner)
	}
	if c.ControlSocket != "/run/sockvisor.ctl" || c.LogLevel != "info" || c.LogFormat != "text" {
		t.Errorf("defaults = %q %q %q", c.ControlSocket, c.LogLevel, c.LogFormat)
	}
	if c.Apache.Flavor != "auto" || c.Apache.Reload != "dbus" {
		t.Errorf("apache defaults = %+v", c.Apache)
	}
	b := c.Backends[0]
	if b.Protocol != "http" || b.Handoff != "listen-fds" || b.StopSignal != syscall.SIGTERM || b.ReloadSignal != syscall.SIGHUP {
		t.Errorf("gunicorn preset = %s %s %v %v", b.Protocol, b.Handoff, b.StopSignal, b.ReloadSignal)
	}
	if b.SocketMode != 0o660 || b.Umask != 0o007 || b.Mount != "/" || b.StopTimeout != 30*time.Second {
		t.Errorf("backend defaults = %s %s %q %s", b.SocketMode, b.Umask, b.Mount, b.StopTimeout)
	}
	if b.Proxy.Retry != 0 || !b.Proxy.PreserveHost || b.Proxy.Timeout != time.Minute {
		t.Errorf("proxy defaults = %+v", b.Proxy)
	}
	if len(b.Sockets) != 1 || b.Sockets[0].Path != "/run/sockvisor/app.sock" {
		t.Errorf("sockets = %+v", b.Sockets)
	}
	if b.UID != 0 || b.Pos != "test.hcl:1" {
		t.Errorf("uid %d pos %q", b.UID, b.Pos)
	}
}

func TestPresets(t *testing.T) {
	c := mustParse(t, `
backend "php" {
  preset        = "php-fpm"
  command       = ["/bin/true"]
  mount         = "/php/"
  document_root = "/var/www/html"
  user          = "root"
}
backend "u" {
  preset    = "uwsgi"
  command   = ["/bin/true"]
  mount     = "/u/"
  instances = 3
  user      = "root"
}
backend "g" {
  command       = ["/bin/true"]
  mount         = ""
  reload_signal = "replace"
  user          = "root"
}`)
	php, u, g := c.Backend("php"), c.Backend("u"), c.Backend("g")
	if php.Protocol != "fcgi" || php.Handoff != "fpm" || php.StopSignal != syscall.SIGQUIT || php.ReloadSignal != syscall.SIGUSR2 {
		t.Errorf("php-fpm = %+v", php)
	}
	if u.Protocol != "uwsgi" || len(u.Sockets) != 3 || u.Sockets[2].Name != "u-2.sock" {
		t.Errorf("uwsgi = %s %+v", u.Protocol, u.Sockets)
	}
	if !g.ReloadReplace || g.Preset != "generic" {
		t.Errorf("generic = %+v", g)
	}
	if got := len(c.AllSockets()); got != 5 {
		t.Errorf("AllSockets = %d, want 5", got)
	}
}

func TestProblems(t *testing.T) {
	cases := []struct {
		name, src, line string
		fragments       []string
	}{
		{"unknown key", "socket_dri = \"/run/x\"\n", "1", []string{"socket_dri", "not expected"}},
		{"unknown key in backend", "backend \"a\" {\n  command = [\"/bin/true\"]\n  comand = 1\n}\n", "3", []string{"comand"}},
		{"wrong type", "backend \"a\" {\n  command = \"/bin/true\"\n}\n", "2", []string{"command"}},
		{"bad mode", "socket_dir_mode = \"rwx\"\n", "1", []string{"octal"}},
		{"world-writable dir", "socket_dir_mode = \"2777\"\n", "1", []string{"every user"}},
		{"mode not a string", "socket_dir_mode = 0750\n", "1", []string{"octal"}},
		{"bad duration", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  stop_timeout = \"soon\"\n}\n", "4", []string{"duration"}},
		{"bad signal", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  stop_signal = \"BOOM\"\n}\n", "4", []string{"signal"}},
		{"bad name", "backend \"App\" {\n  command = [\"/bin/true\"]\n}\n", "1", []string{"lowercase"}},
		{"duplicate name", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"/a\"\n}\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"/b\"\n  socket = \"b.sock\"\n}\n", "6", []string{"defined twice", "test.hcl:1"}},
		{"shared socket", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"/a\"\n}\nbackend \"b\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  socket = \"a.sock\"\n}\n", "9", []string{"already uses"}},
		{"escaping socket", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  socket = \"../etc/x.sock\"\n}\n", "4", []string{"plain file name"}},
		{"mount twice", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\nbackend \"b\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n", "", []string{"mount \"/\" is used by backends \"a\" and \"b\""}},
		{"unknown user", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"no-such-user-sv\"\n}\n", "3", []string{"does not exist"}},
		{"missing command", "backend \"a\" {\n  user = \"root\"\n}\n", "1", []string{"no command"}},
		{"command not found", "backend \"a\" {\n  command = [\"/nonexistent/gunicorn\"]\n  user = \"root\"\n}\n", "2", []string{"not an executable"}},
		{"protocol vs preset", "backend \"a\" {\n  preset = \"php-fpm\"\n  protocol = \"http\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n", "3", []string{"does not work with preset"}},
		{"handoff vs preset", "backend \"a\" {\n  preset = \"uvicorn\"\n  handoff = \"stdin\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n", "3", []string{"handoff \"stdin\" does not work with preset \"uvicorn\"", "listen-fds or self"}},
		{"fcgi needs document_root", "backend \"a\" {\n  preset = \"php-fpm\"\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n", "1", []string{"document_root"}},
		{"relative socket_dir", "socket_dir = \"run/x\"\n", "1", []string{"absolute"}},
		{"control socket in socket_dir", "control_socket = \"/run/sockvisor/ctl\"\n", "1", []string{"inside socket_dir"}},
		{"bad flavor", "apache {\n  flavor = \"arch\"\n}\n", "2", []string{"auto, debian, rhel"}},
		{"min over max", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  restart {\n    min_delay = \"1m\"\n    max_delay = \"1s\"\n  }\n}\n", "4", []string{"longer than"}},
		{"bad metrics_listen", "metrics_listen = \"localhost\"\n", "1", []string{"HOST:PORT"}},
		{"self not writable", "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"nobody\"\n  handoff = \"self\"\n}\n", "4", []string{"cannot create files in socket_dir", "2770"}},
		{"syntax error", "backend \"a\" {\n", "", []string{"test.hcl:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantProblem(t, tc.src, tc.line, tc.fragments...) })
	}
}

// The acceptance: a 108-byte socket path and a 96-byte Apache path are
// rejected with the limit and the length.
func TestPathBudgets(t *testing.T) {
	dirFor := func(total int, sock string) string {
		return "/run/" + strings.Repeat("d", total-len("/run/")-1-len(sock))
	}
	kernel := dirFor(108, "a.sock")
	wantProblem(t, "socket_dir = \""+kernel+"\"\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"\"\n}\n", "1",
		"108 bytes", "limit (sun_path) is 107")

	apache := dirFor(96, "a.sock")
	wantProblem(t, "socket_dir = \""+apache+"\"\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n", "1",
		"96 bytes", "limit for a ProxyPass socket is 95")

	// 95 bytes with a mount, and 107 without one, are fine.
	mustParse(t, "socket_dir = \""+dirFor(95, "a.sock")+"\"\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n")
	mustParse(t, "socket_dir = \""+dirFor(107, "a.sock")+"\"\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"\"\n}\n")
}

func TestEqualIgnoresPosition(t *testing.T) {
	src := "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n}\n"
	a := mustParse(t, src).Backends[0]
	b := mustParse(t, "\n\n"+src).Backends[0]
	if !a.Equal(b) {
		t.Error("moving a block changed Equal")
	}
	c := mustParse(t, strings.Replace(src, "root", "root\"\n  umask = \"0022", 1)).Backends[0]
	if a.Equal(c) {
		t.Error("a different umask is Equal")
	}
}

func TestLoadMissingAndPath(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load missing = %v", err)
	}
	t.Setenv(EnvPath, "/from/env.hcl")
	if Path("") != "/from/env.hcl" || Path("/x.hcl") != "/x.hcl" {
		t.Error("Path precedence wrong")
	}
	os.Unsetenv(EnvPath)
	if Path("") != DefaultPath {
		t.Error("Path default wrong")
	}
}

// The shipped examples must always load.
func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("../../packaging/examples/*.hcl")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Commands in examples name servers that may not be installed here.
		if _, err := Parse(src, f); err != nil && !strings.Contains(err.Error(), "not an executable") {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// FuzzParse: no input makes Parse panic or crash the process, every error
// wraps ErrInvalid, and the size and nesting limits hold: with small limits
// a file over the size is refused for its size, and each kind of nesting
// is refused exactly when it is deeper than the limit.
func FuzzParse(f *testing.F) {
	f.Add([]byte("socket_dir = \"/run/sv\"\nbackend \"a\" {\n  command = [\"/bin/true\"]\n  ready { path = \"/\" }\n}\n"), uint8(3), uint8(0))
	f.Add([]byte("apache { flavor = \"debian\" }\nbackend \"b\" { instances = 3\n socket_mode = \"0777\" }"), uint8(17), uint8(3))
	f.Add([]byte("backend \"x\" { environment = { A = \"b\" } proxy { max = -1 } }"), uint8(200), uint8(9))
	f.Add([]byte("x = <<EOF\n${[[[\"${1}\"]]]}\n  EOF\n# [[[\ny = \"$${[[\"\n"), uint8(16), uint8(10))
	f.Add([]byte(strings.Repeat("[", 600)), uint8(8), uint8(4))
	f.Add([]byte("selinux_type = true\nsocket_dir_mode = \"660\"\n"), uint8(0), uint8(6))
	lim := limits{size: 512, nesting: 16, tokens: 64}
	f.Fuzz(func(t *testing.T, src []byte, depth, kind uint8) {
		c, err := Parse(src, "fuzz.hcl")
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "failed while parsing") {
			t.Fatalf("Parse panicked: %v", err)
		}

		_, err = parseLimited(src, "fuzz.hcl", lim)
		if len(src) > lim.size && (err == nil || !strings.Contains(err.Error(), "longer than 512 bytes")) {
			t.Fatalf("%d-byte file not refused for its size: %v", len(src), err)
		}

		k := nestKinds[int(kind)%len(nestKinds)]
		n := int(depth)
		_, err = parseLimited([]byte(k.build(n)), "fuzz.hcl", limits{size: MaxFileSize, nesting: lim.nesting, tokens: MaxTokens})
		refused := err != nil && strings.Contains(err.Error(), "nest more than 16 levels")
		if want := k.depth(n) > lim.nesting; refused != want {
			t.Fatalf("%s nested %d deep (depth %d, limit %d): refused %v; error %v", k.name, n, k.depth(n), lim.nesting, refused, err)
		}

		// x = [1,1,...] is 2n+5 tokens with its newline.
		flat := "x = [" + strings.Repeat("1,", n) + "]\n"
		_, err = parseLimited([]byte(flat), "fuzz.hcl", limits{size: MaxFileSize, nesting: lim.nesting, tokens: lim.tokens})
		refused = err != nil && strings.Contains(err.Error(), "more than 64 tokens")
		if want := 2*n+5 > lim.tokens; refused != want {
			t.Fatalf("a list of %d numbers: refused for its tokens %v, want %v; error %v", n, refused, want, err)
		}
	})
}

func TestPeekControlSocket(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.hcl")
	os.WriteFile(p, []byte("control_socket = \"/run/x.ctl\"\nbackend \"a\" { bogus = 1 }\n"), 0o644)
	if got := PeekControlSocket(p); got != "/run/x.ctl" {
		t.Errorf("PeekControlSocket(broken file) = %q", got)
	}
	if got := PeekControlSocket(filepath.Join(dir, "none")); got != "/run/sockvisor.ctl" {
		t.Errorf("PeekControlSocket(missing) = %q", got)
	}
}
