package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
)

// fakeDaemon answers the control API as a daemon reading configFile would.
type fakeDaemon struct {
	configFile string
	phase      string
	backends   []daemon.BackendReport
	reloads    atomic.Int32
}

func (f *fakeDaemon) Status(context.Context) (any, error) {
	return &daemon.StatusReport{Phase: f.phase, ConfigFile: f.configFile, Backends: f.backends}, nil
}
func (f *fakeDaemon) Restart(context.Context, string) error { return nil }
func (f *fakeDaemon) Reload(context.Context) error          { f.reloads.Add(1); return nil }

// serveFake serves f on ctl until the test ends.
func serveFake(t *testing.T, ctl string, f *fakeDaemon) {
	t.Helper()
	srv, err := control.Listen(ctl, f, nil, testutil.Logger("control", hclog.Info))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// `reload --config OTHER.hcl` used to print "config reloaded" and exit 0
// while the daemon re-read its own file; now it is refused, naming both.
func TestReloadRefusesAnotherConfigFile(t *testing.T) {
	testutil.NeedRoot(t) // the control API is root-only
	dir := testutil.ShortDir(t)
	ctl := filepath.Join(dir, "ctl")
	cfg := writeConfig(t, dir, fmt.Sprintf("control_socket = %q\n", ctl))
	other := filepath.Join(dir, "other.hcl")
	if err := os.WriteFile(other, []byte(fmt.Sprintf("control_socket = %q\nsocket_dir = \"/run/other\"\n", ctl)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fakeDaemon{configFile: cfg, phase: "running"}
	serveFake(t, ctl, f)

	code, out, errOut := run("reload", "--config", other)
	if code != ExitProblems || strings.Contains(out, "reloaded") || f.reloads.Load() != 0 {
		t.Fatalf("reload --config OTHER: exit %d, %q %q, %d reloads; want exit 1 and none", code, out, errOut, f.reloads.Load())
	}
	for _, want := range []string{"reads " + cfg, "edit " + cfg, "--config " + other} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal %q lacks %q", errOut, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
		t.Errorf("refusal spans %d lines: %q", n+1, errOut)
	}

	// The daemon's own file, also through a symlink, reloads.
	link := filepath.Join(dir, "link.hcl")
	if err := os.Symlink(cfg, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfg, link} {
		if code, out, errOut := run("reload", "--config", p); code != ExitOK || !strings.Contains(out, "reloaded") {
			t.Errorf("reload --config %s: exit %d %q %q", p, code, out, errOut)
		}
	}
	if n := f.reloads.Load(); n != 2 {
		t.Errorf("%d reloads reached the daemon, want 2", n)
	}
}
