package cli

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// checkOut runs `check --json` and decodes what it printed.
func checkOut(t *testing.T, args ...string) (int, checkJSON, string) {
	t.Helper()
	code, out, errOut := run(append([]string{"check", "--json"}, args...)...)
	var r checkJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("check --json printed no JSON (%v): %q (stderr %q)", err, out, errOut)
	}
	return code, r, errOut
}

// The Ansible role enables exactly required_modules: the list must be the
// one the rendered Apache config names, per protocol and for balancers.
func TestCheckJSONValid(t *testing.T) {
	dir := testutil.ShortDir(t)
	sd := filepath.Join(dir, "s")
	cfg := writeConfig(t, dir, `socket_dir = "`+sd+`"
site "www.example" {
  aliases = ["example.com"]
}
backend "app" {
  command = ["/bin/true"]
  user    = "root"
  mount   = "/app/"
  site    = "www.example"
}
backend "php" {
  preset        = "php-fpm"
  command       = ["/usr/sbin/php-fpm8.2"]
  user          = "root"
  mount         = "/php/"
  document_root = "/srv/php"
  instances     = 2
}
backend "quiet" {
  command = ["/bin/true"]
  user    = "root"
  mount   = ""
  handoff = "self"
}
`)
	code, r, errOut := checkOut(t, "--config", cfg)
	if code != ExitOK || !r.Valid || len(r.Problems) != 0 || errOut != "" {
		t.Fatalf("valid config: exit %d, %+v, stderr %q", code, r, errOut)
	}
	want := []string{"alias", "authz_core", "dir", "env", "headers", "lbmethod_byrequests", "mime", "proxy", "proxy_balancer", "proxy_fcgi", "proxy_http", "slotmem_shm"}
	if !reflect.DeepEqual(r.RequiredModules, want) {
		t.Errorf("required_modules = %v, want %v", r.RequiredModules, want)
	}
	// The same list apache-config writes in its header.
	_, conf, _ := run("apache-config", "--config", cfg)
	if !strings.Contains(conf, "# Needs the modules: "+strings.Join(want, ", ")+".") {
		t.Errorf("apache-config names other modules than check --json:\n%s", conf)
	}
	if r.File != cfg || r.SocketDir != sd || r.SocketDirMode != "2750" || r.SocketOwner != "root" {
		t.Errorf("header fields: %+v", r)
	}
	if !reflect.DeepEqual(r.Backends, []string{"app", "php", "quiet"}) {
		t.Errorf("backends = %v", r.Backends)
	}
	if len(r.Sockets) != 4 {
		t.Fatalf("sockets = %+v, want 4", r.Sockets)
	}
	s := r.Sockets[2]
	if s.Backend != "php" || s.Instance != 1 || s.Path != sd+"/php-1.sock" || s.Bytes != len(s.Path) ||
		s.Mode != "0660" || s.Protocol != "fcgi" || s.Handoff != "fpm" || s.Mount != "/php/" {
		t.Errorf("second php socket = %+v", s)
	}
	if q := r.Sockets[3]; q.Mount != "" || q.Handoff != "self" {
		t.Errorf("unmounted socket = %+v", q)
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], `backend "quiet" binds its own socket`) {
		t.Errorf("notes = %q", r.Notes)
	}
	if len(r.Sites) != 1 || r.Sites[0].Name != "www.example" || !reflect.DeepEqual(r.Sites[0].Aliases, []string{"example.com"}) ||
		!reflect.DeepEqual(r.Sites[0].Backends, []string{"app"}) || r.Sites[0].TLSListen != nil || r.Sites[0].Render != "vhost" {
		t.Errorf("sites = %+v", r.Sites)
	}
	if r.Limits.Socket != 107 || r.Limits.Apache != 95 {
		t.Errorf("limits = %+v", r.Limits)
	}

	// No mounted backend: no modules, and an empty list rather than null.
	cfg = writeConfig(t, dir, "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"\"\n}\n")
	code, out, _ := run("check", "--json", "--config", cfg)
	if code != ExitOK || !strings.Contains(out, `"required_modules": []`) || !strings.Contains(out, `"problems": []`) {
		t.Errorf("config without mounts: exit %d\n%s", code, out)
	}
}

// An invalid config: exit 1, every problem with its file, line and column,
// nothing on stderr (the JSON carries it).
func TestCheckJSONInvalid(t *testing.T) {
	dir := testutil.ShortDir(t)
	cfg := writeConfig(t, dir, "backend \"app\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  socket_mode = 0660\n}\n")
	code, r, errOut := checkOut(t, "--config", cfg)
	if code != ExitProblems || r.Valid || errOut != "" {
		t.Fatalf("invalid config: exit %d valid %v stderr %q", code, r.Valid, errOut)
	}
	if len(r.Problems) == 0 {
		t.Fatalf("no problems reported: %+v", r)
	}
	p := r.Problems[0]
	if p.File != cfg || p.Line != 4 || p.Col < 3 || p.Pos != p.File+":4:"+itoa(p.Col) || !strings.Contains(p.Message, "socket_mode") {
		t.Errorf("problem = %+v, want %s:4:COL naming socket_mode", p, cfg)
	}
	// The same problems plain check prints, one per line.
	_, _, plain := run("check", "--config", cfg)
	for _, p := range r.Problems {
		if !strings.Contains(plain, p.Pos+": "+p.Message) {
			t.Errorf("plain check lacks %q:\n%s", p.Pos+": "+p.Message, plain)
		}
	}
	if len(r.RequiredModules) != 0 || len(r.Sockets) != 0 || r.RequiredModules == nil {
		t.Errorf("an invalid config has no plan: %+v", r)
	}

	// A syntax error is a problem too.
	cfg = writeConfig(t, dir, "backend \"app\" {\n  command = [\n")
	if code, r, _ := checkOut(t, "--config", cfg); code != ExitProblems || len(r.Problems) == 0 || r.Problems[0].Line == 0 {
		t.Errorf("syntax error: exit %d %+v", code, r.Problems)
	}

	// A missing file: exit 2 and the reason in "error".
	code, r, _ = checkOut(t, "--config", filepath.Join(dir, "missing.hcl"))
	if code != ExitFailure || r.Valid || !strings.Contains(r.Error, "does not exist") || len(r.Problems) != 0 {
		t.Errorf("missing config: exit %d %+v", code, r)
	}
}

func TestCutProblemPos(t *testing.T) {
	for _, c := range []struct {
		pos, file string
		line, col int
	}{
		{"/etc/s.hcl:12:3", "/etc/s.hcl", 12, 3},
		{"/weird:name.hcl:2:1", "/weird:name.hcl", 2, 1},
		{"/etc/s.hcl", "/etc/s.hcl", 0, 0},
		{"/etc/s.hcl:7", "/etc/s.hcl:7", 0, 0},
	} {
		p := newCheckProblem(configProblem(c.pos))
		if p.File != c.file || p.Line != c.line || p.Col != c.col {
			t.Errorf("%q -> %+v, want %s %d %d", c.pos, p, c.file, c.line, c.col)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func configProblem(pos string) config.Problem { return config.Problem{Pos: pos, Msg: "m"} }
