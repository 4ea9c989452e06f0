package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
	"github.com/sockvisor/sockvisor/supervisor/shim"
)

// roleEnv makes the test binary run the doctor and print JSON instead of
// running tests; TestWithoutRoot starts it as nobody.
const roleEnv = "SOCKVISOR_DOCTOR_TEST_APACHECTL"

func TestMain(m *testing.M) {
	// The in-process daemon of the live-state tests re-executes this
	// binary as its exec shim.
	testutil.RunRole(shim.Arg, shim.Main)
	if argv := os.Getenv(roleEnv); argv != "" {
		os.Exit(runAsChild(strings.Split(argv, "\t")))
	}
	testutil.Main(m)
}

func runAsChild(apachectl []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Apachectl: apachectl})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r.WriteText(os.Stderr)
	r.WriteJSON(os.Stdout)
	return r.ExitCode()
}

func TestWithoutRootSaysWhatItCouldNotCheck(t *testing.T) {
	testutil.NeedBinary(t, "/usr/bin/gunicorn")
	dir := testutil.ShortDir(t)
	locked := dir + "/locked"
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	a, b := locked+"/a.sock", dir+"/b.sock"
	gunicorn(t, dir, a, b)
	in := apachetest.Start(t, fmt.Sprintf(`ProxyPass "/a/" "unix:%s|http://a.invalid/"
ProxyPass "/b/" "unix:%s|http://b.invalid/"
`, a, b))

	// The go test binary sits in a root-only build directory: copy it.
	exe := testutil.CopySelf(t, filepath.Join(dir, "doctor.test"))
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+strings.Join(in.Command(), "\t"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("doctor as nobody: %v, want exit status 1", err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out.String())
	}
	un := strings.Join(r.Unchecked, "\n")
	mustContain(t, "unchecked", un, "connecting as www-data: needs root", a+": lstat "+a+": permission denied")
	if len(r.Targets) != 2 {
		t.Fatalf("targets: %+v", r.Targets)
	}
	ta, tb := r.Targets[0], r.Targets[1]
	if ta.Verdict != "fail" || len(ta.Findings) == 0 || ta.Findings[0].ID != IDPermission {
		t.Errorf("target a: %+v", ta)
	}
	if tb.Verdict != "ok" || tb.Speaks != "http" {
		t.Errorf("target b: %+v", tb)
	}
	if r.Apache.Identity.User != "www-data" || len(r.General) != 0 {
		t.Errorf("apache %+v general %+v", r.Apache, r.General)
	}
}

// TestSystemApache runs the doctor as the CLI does by default, against the
// distribution's own Apache config, which it must read without error.
func TestSystemApache(t *testing.T) {
	testutil.NeedBinary(t, "apache2ctl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.WriteText(os.Stderr)
	if r.Apache.ConfigFile != "/etc/apache2/apache2.conf" || r.Apache.Identity.User != "www-data" || r.Apache.Files < 2 {
		t.Errorf("apache info %+v", r.Apache)
	}
	for _, f := range r.General {
		if f.ID == IDApacheConfig {
			t.Errorf("system config reported invalid: %+v", f)
		}
	}
}

func TestRunWithoutConfigIsExitTwo(t *testing.T) {
	testutil.NeedBinary(t, apachetest.Binary)
	dir := testutil.ShortDir(t)
	_, err := Run(context.Background(), Options{Apachectl: []string{apachetest.Binary, "-d", dir, "-f", dir + "/none.conf"}})
	if !errors.Is(err, ErrNoApache) || !errors.Is(err, apacheconf.ErrMainConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Run = %v, want ErrNoApache wrapping the missing file", err)
	}
}
