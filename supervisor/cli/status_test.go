package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

// status shows sockvisor's last Apache apply: a failure names the step and
// Apache's own message, a success says so.
func TestStatusShowsLastApacheApply(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	writeStatus(&env{stdout: &out}, &daemon.StatusReport{Phase: "running", LastApacheApply: &daemon.ApacheApply{
		At: at, Step: "configtest", Error: "apache: configtest failed: AH00526: Syntax error on line 2 of /etc/apache2/sites-enabled/x.conf:\nInvalid command 'Bogus'",
	}})
	s := out.String()
	for _, want := range []string{"Apache config NOT applied", "configtest failed", "AH00526", "Invalid command 'Bogus'", "previous config"} {
		if !strings.Contains(s, want) {
			t.Errorf("status output %q lacks %q", s, want)
		}
	}
	if strings.Count(strings.TrimSpace(s), "\n") > 2 {
		t.Errorf("the apply error spans lines: %q", s)
	}
	out.Reset()
	writeStatus(&env{stdout: &out}, &daemon.StatusReport{Phase: "running", LastApacheApply: &daemon.ApacheApply{At: at, OK: true}})
	if !strings.Contains(out.String(), "Apache config: applied") {
		t.Errorf("status output %q does not say the apply succeeded", out.String())
	}
}

// doctor --config diagnoses the Apache instance the config's apache block
// names (here by the file sockvisor renders into it), not the default one.
func TestDoctorDiagnosesTheInstanceTheConfigNames(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, apachetest.Binary)
	dir := testutil.ShortDir(t)
	in := apachetest.Start(t, "")
	cfg := writeConfig(t, dir, fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\napache {\n  config_file = %q\n}\n",
		dir+"/s", dir+"/ctl", filepath.Join(in.Dir, "sockvisor.conf")))
	code, out, errOut := run("doctor", "--json", "--config", cfg)
	if code != ExitOK {
		t.Fatalf("doctor exit %d: %s\n%s", code, errOut, out)
	}
	var r struct {
		Apache struct {
			ConfigFile string   `json:"config_file"`
			PID        int      `json:"pid"`
			ErrorLogs  []string `json:"error_logs"`
		} `json:"apache"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	if r.Apache.ConfigFile != in.ConfFile || r.Apache.PID != in.PID() || len(r.Apache.ErrorLogs) == 0 || r.Apache.ErrorLogs[0] != in.ErrorLog {
		t.Errorf("doctor diagnosed %+v, want %s (pid %d, log %s)", r.Apache, in.ConfFile, in.PID(), in.ErrorLog)
	}
}

// status during start-up used to print "sockvisor is starting" over an
// empty table; it says what is going on and lists the backends started.
func TestStatusWhileStarting(t *testing.T) {
	var out bytes.Buffer
	writeStatus(&env{stdout: &out}, &daemon.StatusReport{Phase: "starting"})
	if s := out.String(); !strings.Contains(s, "no backend started yet") || strings.Contains(s, "BACKEND") {
		t.Errorf("status before any backend started: %q", s)
	}
	out.Reset()
	writeStatus(&env{stdout: &out}, &daemon.StatusReport{Phase: "starting", Backends: []daemon.BackendReport{{
		Status: backend.Status{Name: "app", State: backend.StateStarting, PID: 42},
		Queues: []daemon.SocketQueue{{Path: "/run/sockvisor/app.sock"}},
	}}})
	s := out.String()
	for _, want := range []string{"1 backend(s) started", "waiting until they are ready", "app", "42", "/run/sockvisor/app.sock"} {
		if !strings.Contains(s, want) {
			t.Errorf("status while starting %q lacks %q", s, want)
		}
	}
}

// status --config with a missing file used to answer "not running on
// /run/sockvisor.ctl", the default control socket.
func TestStatusMissingConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent.hcl")
	code, _, errOut := run("status", "--config", missing)
	if code != ExitFailure || !strings.Contains(errOut, missing+" does not exist") || strings.Contains(errOut, "not running") {
		t.Errorf("status --config MISSING: exit %d %q", code, errOut)
	}
	t.Setenv("SOCKVISOR_CONFIG", missing)
	if code, _, errOut := run("reload"); code != ExitFailure || !strings.Contains(errOut, "does not exist") {
		t.Errorf("reload with $SOCKVISOR_CONFIG missing: exit %d %q", code, errOut)
	}
}

// A missing config file is config.ErrNotFound, whose text names its
// package, while the user reads the same sentence as before.
func TestMissingConfigSentence(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nonexistent.hcl")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--config", missing}, "config file not found: " + missing + " does not exist; pass the config file sockvisor run uses with --config\n"},
		{[]string{"check", "--config", missing}, "config file not found: " + missing + " does not exist; create it (examples are in /usr/share/doc/sockvisor/examples/) or pass --config\n"},
	} {
		if code, _, errOut := run(c.args...); code != ExitFailure || !strings.HasSuffix(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want it to end in %q", c.args, code, errOut, c.want)
		}
	}
}
