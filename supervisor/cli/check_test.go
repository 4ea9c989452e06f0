package cli

import (
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// checkRefuses runs `sockvisor check` on body and wants exit 1 with one
// line per problem, the first at sv.hcl:pos and containing every fragment.
func checkRefuses(t *testing.T, body, pos string, fragments ...string) {
	t.Helper()
	cfg := writeConfig(t, testutil.ShortDir(t), body)
	code, _, errOut := run("check", "--config", cfg)
	if code != ExitProblems {
		t.Fatalf("check exit %d, want %d; stderr %q", code, ExitProblems, errOut)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(errOut), "\n")
	if !regexp.MustCompile(`sv\.hcl:\d+:\d+: `).MatchString(first) {
		t.Errorf("%q has no file:line:col", first)
	}
	if !strings.Contains(first, "sv.hcl:"+pos+": ") {
		t.Errorf("%q does not point at sv.hcl:%s", first, pos)
	}
	for _, f := range fragments {
		if !strings.Contains(first, f) {
			t.Errorf("%q lacks %q", first, f)
		}
	}
}

// Issue [K] item 8 at the CLI: each value that can never work is one
// sentence at file:line:col.
func TestCheckUnusableValues(t *testing.T) {
	const be = "backend \"a\" {\n  command = [\"/bin/true\"]\n  user = \"root\"\n"
	cases := []struct{ name, body, pos, frag string }{
		{"NUL in an argument", "backend \"a\" {\n  user = \"root\"\n  command = [\"/bin/true\", \"-x\\u0000\"]\n}\n", "3:13", "NUL byte"},
		{"NUL in an environment value", be + "  environment = { A = \"\\u0000\" }\n}\n", "4:17", "NUL byte"},
		{"socket_mode 0", be + "  socket_mode = \"0\"\n}\n", "4:17", "\"0660\""},
		{"socket_dir_mode 660", "socket_dir_mode = \"660\"\n", "1:19", "no search (x) bit"},
		{"socket_dir_mode 06600", "socket_dir_mode = \"06600\"\n", "1:19", "no search (x) bit"},
		{"selinux_type = true", "selinux_type = true\n", "1:16", "selinux_type is a bool, not a string"},
		{"control_socket in socket_dir", "socket_dir = \"/run/sv\"\ncontrol_socket = \"/run/sv/ctl\"\n", "2:18", "control_socket = \"/run/sockvisor.ctl\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkRefuses(t, c.body, c.pos, c.frag) })
	}
}

// Issue [K] item 2 at the CLI: a config nested 100,000 deep is one sentence
// at file:line:col (it overflowed the stack at 1.1 GB), and --config on a
// FIFO or /dev/zero is refused at once instead of hanging or growing.
func TestCheckLimits(t *testing.T) {
	deep := "backend \"a\" {\n  command = " + strings.Repeat("[", 100_000) + "\"x\"" + strings.Repeat("]", 100_000) + "\n}\n"
	checkRefuses(t, deep, "2:111", "nest more than 100 levels")

	dir := testutil.ShortDir(t)
	fifo := filepath.Join(dir, "fifo.hcl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "named pipe", "/dev/zero": "character device"} {
		start := time.Now()
		code, _, errOut := runAs(t, "check", "--config", path)
		if code != ExitFailure || !strings.Contains(errOut, kind) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("check --config %s: exit %d, %q; want 2 and one sentence naming a %s", path, code, errOut, kind)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("check --config %s took %s", path, took)
		}
	}
}

// Issue [K] item 1 at the CLI: check refuses a system socket_dir.
func TestCheckSystemSocketDir(t *testing.T) {
	for _, dir := range []string{"/etc", "/var", "/run"} {
		checkRefuses(t, "socket_dir = \""+dir+"\"\ncontrol_socket = \"/srv/sv.ctl\"\n", "1:14", "is a system directory")
	}
}
