package config

import (
	"strings"
	"testing"
)

// Issue [K] item 8: values that parse but can never work are errors with
// file:line:col and a fix that works.
func TestUnusableValues(t *testing.T) {
	const be = "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n"
	cases := []struct {
		name, src, line string
		fragments       []string
	}{
		{"NUL in an argument", "backend \"a\" {\n  user = \"root\"\n  command = [\"/bin/true\", \"a\\u0000b\"]\n}\n", "3", []string{"command argument 2", "NUL byte", "remove it"}},
		{"NUL in an environment value", be + "  environment = { A = \"x\\u0000y\" }\n}\n", "4", []string{"environment variable A", "NUL byte"}},
		{"NUL in apachectl", "apache {\n  apachectl = [\"/bin/true\", \"-d\\u0000\"]\n}\n", "2", []string{"apachectl argument 2", "NUL"}},
		{"NUL in a unit", "apache {\n  unit = \"apache2\\u0000.service\"\n}\n", "2", []string{"unit", "NUL byte", "remove it"}},
		{"NUL in metrics_listen", "metrics_listen = \"127.0.0.1\\u0000:9\"\n", "1", []string{"metrics_listen", "NUL byte"}},
		{"socket_mode 0", be + "  socket_mode = \"0\"\n}\n", "4", []string{"socket_mode 0000", "nobody write permission", "\"0660\""}},
		{"socket_mode without group write", be + "  socket_mode = \"0640\"\n}\n", "4", []string{"socket_mode 0640", "no write permission", "\"0660\""}},
		{"socket_dir_mode 660", "socket_dir_mode = \"660\"\n", "1", []string{"socket_dir_mode 0660", "no search (x) bit", "\"2750\""}},
		{"socket_dir_mode 06600", "socket_dir_mode = \"06600\"\n", "1", []string{"socket_dir_mode 6600", "no search (x) bit", "setuid"}},
		{"selinux_type bool", "selinux_type = true\n", "1", []string{"selinux_type is a bool, not a string", "\"httpd_var_run_t\""}},
		{"selinux_type number", "selinux_type = 42\n", "1", []string{"selinux_type is a number"}},
		{"backend string as bool", be + "  stop_signal = true\n}\n", "4", []string{"stop_signal is a bool"}},
		{"selinux_type not a type", "selinux_type = \"system_u:object_r:x\"\n", "1", []string{"not an SELinux type name"}},
		{"control socket inside socket_dir", "socket_dir = \"/run/sv\"\ncontrol_socket = \"/run/sv/ctl\"\n", "2", []string{"inside socket_dir", "control_socket = \"/run/sockvisor.ctl\""}},
		{"default control socket inside socket_dir", "socket_dir = \"/srv/run\"\ncontrol_socket = \"/srv/run/x/ctl\"\n", "2", []string{"control_socket = \"/run/sockvisor.ctl\""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantProblem(t, tc.src, tc.line, tc.fragments...) })
	}
}

// The rejected path is never the suggestion: with socket_dir = "/run" the
// default control_socket is inside it, and the error points at socket_dir.
func TestControlSocketSuggestionIsOutside(t *testing.T) {
	_, err := parse(t, "socket_dir = \"/run/sockvisor\"\ncontrol_socket = \"/run/sockvisor/sockvisor.ctl\"\n")
	if err == nil || !strings.Contains(err.Error(), "test.hcl:2:") || strings.Contains(err.Error(), "e.g. control_socket = \"/run/sockvisor/") {
		t.Errorf("error %v", err)
	}
	v := &validator{file: "test.hcl", pos: map[string]string{"socket_dir": "test.hcl:1:14"}}
	v.controlSocketOutside(&Config{SocketDir: "/run", ControlSocket: defaultControlSocket})
	if len(v.problems) != 1 || v.problems[0].Pos != "test.hcl:1:14" {
		t.Fatalf("problems %v; want one at socket_dir", v.problems)
	}
	msg := v.problems[0].Msg
	if !strings.Contains(msg, "control_socket = \"/run.ctl\"") || strings.Contains(msg, "= \"/run/sockvisor.ctl\"") {
		t.Errorf("suggestion in %q must be outside /run", msg)
	}
}

// Modes that work stay valid.
func TestUsableModes(t *testing.T) {
	for _, src := range []string{
		"socket_dir_mode = \"2710\"\n",
		"socket_dir_mode = \"0755\"\n",
		"backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  socket_mode = \"0620\"\n}\n",
		"backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n  mount = \"\"\n  socket_mode = \"0600\"\n}\n",
		"selinux_type = \"\"\n",
	} {
		if _, err := parse(t, src); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
}

// Issue [K] item 1: socket_dir = "/etc", "/var" or "/run" passed check, and
// run would have re-owned and swept it.
func TestSystemSocketDir(t *testing.T) {
	for _, dir := range []string{"/etc", "/var", "/run", "/tmp", "/usr/local/run", "/etc/sockvisor", "/var/lib", "/home", "/lib64", "/run/user", "/run/systemd/x", "/dev/shm"} {
		wantProblem(t, "socket_dir = \""+dir+"\"\ncontrol_socket = \"/x/sv.ctl\"\n", "1", "is a system directory", "\"/run/sockvisor\"")
	}
	for _, dir := range []string{"/run/sockvisor", "/run/sv/a", "/var/lib/app/run", "/srv/www/run", "/tmp/sv1/s"} {
		if SystemDir(dir) {
			t.Errorf("SystemDir(%q) = true", dir)
		}
	}
}
