package apacheconf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestLoadedModulesAndRunConfigOfPrivateApache(t *testing.T) {
	in := apachetest.Start(t, "")
	mods, err := LoadedModules(ctx(t), in.Command())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]string{"core", "so"}, apachetest.Modules...) {
		if !mods[m] {
			t.Errorf("module %q missing from %v", m, mods)
		}
	}
	if mods["proxy_ajp"] || mods["proxy_fcgi_module"] {
		t.Errorf("unexpected keys in %v", mods)
	}
	rc, err := RunConfig(ctx(t), in.Command())
	if err != nil {
		t.Fatal(err)
	}
	if rc.User.Name != "www-data" || rc.User.ID != 33 || rc.Group.Name != "www-data" || rc.Group.ID != 33 {
		t.Errorf("identity = %+v %+v", rc.User, rc.Group)
	}
	if rc.ServerRoot != in.Dir || rc.ErrorLog != in.ErrorLog || rc.PidFile != filepath.Join(in.Dir, "apache2.pid") {
		t.Errorf("run config = %+v", rc)
	}
	if !slices.Contains(rc.Defines, "DUMP_RUN_CFG") {
		t.Errorf("defines = %q", rc.Defines)
	}
}

func TestCommandErrorsCarryApacheMessage(t *testing.T) {
	testutil.NeedBinary(t, apachetest.Binary)
	dir := testutil.ShortDir(t)
	conf := filepath.Join(dir, "bad.conf")
	os.WriteFile(conf, []byte("LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\nNoSuchDirective on\n"), 0o644)
	argv := []string{apachetest.Binary, "-d", dir, "-f", conf}
	_, err := LoadedModules(ctx(t), argv)
	var ee *exec.ExitError
	if err == nil || !strings.Contains(err.Error(), "NoSuchDirective") {
		t.Fatalf("LoadedModules error = %v, want Apache's message", err)
	}
	_, err = RunConfig(ctx(t), argv)
	if err == nil || !strings.Contains(err.Error(), "Invalid command 'NoSuchDirective'") || !errors.As(err, &ee) {
		t.Fatalf("RunConfig error = %v", err)
	}
	if _, err := LoadedModules(ctx(t), nil); err != ErrNoCommand {
		t.Fatalf("empty argv: %v", err)
	}
}

// TestParseMatchesApacheIncludes parses the system's Debian config and
// checks the file list against Apache's own DUMP_INCLUDES.
func TestParseMatchesApacheIncludes(t *testing.T) {
	testutil.NeedBinary(t, "apache2ctl", "/etc/apache2/apache2.conf")
	out, err := exec.Command("apache2ctl", "-t", "-D", "DUMP_INCLUDES").Output()
	if err != nil {
		t.Fatalf("Debian's own Apache config does not load (apache2ctl -t): %v", err)
	}
	var want []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "(") {
			want = append(want, f[1])
		}
	}
	vars, err := ReadEnvvars("/etc/apache2/envvars")
	if err != nil {
		t.Fatal(err)
	}
	if vars["APACHE_RUN_DIR"] != "/var/run/apache2" || vars["APACHE_RUN_USER"] != "www-data" {
		t.Errorf("envvars = %v", vars)
	}
	mods, err := LoadedModules(ctx(t), []string{"apache2ctl"})
	if err != nil {
		t.Fatal(err)
	}
	in := FromCommand([]string{"apache2ctl"})
	main, root := in.ConfigFile, in.ServerRoot
	if main != "/etc/apache2/apache2.conf" || root != "/etc/apache2" {
		t.Fatalf("FromCommand = %q %q", main, root)
	}
	c, err := Parse(main, ParseOptions{ServerRoot: root, Vars: vars, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Files, "\n") != strings.Join(want, "\n") {
		t.Errorf("files differ from Apache's:\nours:\n%s\napache:\n%s", strings.Join(c.Files, "\n"), strings.Join(want, "\n"))
	}
	if c.DefaultRuntimeDir != "/var/run/apache2" || !slices.Contains(c.ErrorLogs, "/var/log/apache2/error.log") {
		t.Errorf("runtime dir %q, error logs %q", c.DefaultRuntimeDir, c.ErrorLogs)
	}
	// The bare binary needs envvars supplied; CommandEnv does it.
	rc, err := RunConfig(ctx(t), []string{apachetest.Binary})
	if err != nil {
		t.Fatal(err)
	}
	if rc.User.Name != "www-data" || rc.PidFile != "/var/run/apache2/apache2.pid" {
		t.Errorf("run config via bare binary = %+v", rc)
	}
}
