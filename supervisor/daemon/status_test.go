package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
)

func TestApplyRecordNamesTheFailedStep(t *testing.T) {
	cases := []struct {
		err  error
		step string
	}{
		{fmt.Errorf("%w: proxy_uwsgi", apache.ErrModuleMissing), "modules"},
		{fmt.Errorf("%w: AH00526: Syntax error", apache.ErrConfigTest), "configtest"},
		{errors.New("listing Apache's loaded modules: AH00526: Syntax error on line 2"), "configtest"},
		{fmt.Errorf("%w: job failed", apache.ErrReload), "reload"},
		{fmt.Errorf("%w: pid 7 gone", apache.ErrApacheDied), "apache-died"},
		{fmt.Errorf("%w: /etc/apache2/conf-available/sockvisor.conf", apache.ErrNotOurs), "files"},
		{fmt.Errorf("%w: no flavor", apache.ErrNoApache), "integration"},
		{errors.New("disk full"), "other"},
	}
	var r applyRecord
	if r.get() != nil {
		t.Fatal("a fresh record is not empty")
	}
	for _, c := range cases {
		r.record("/x.conf", false, c.err)
		a := r.get()
		if a.OK || a.Step != c.step || a.Error != c.err.Error() || a.ConfigFile != "/x.conf" || a.At.IsZero() {
			t.Errorf("record(%v) = %+v, want step %s", c.err, a, c.step)
		}
	}
	if n := r.note(); n != "; Apache config not applied (other failed)" {
		t.Errorf("STATUS= note %q", n)
	}
	r.record("/x.conf", true, nil)
	if n := r.note(); n != "" {
		t.Errorf("STATUS= note after a success %q", n)
	}
	if a := r.get(); !a.OK || a.Step != "" || a.Error != "" || !a.Changed {
		t.Errorf("success recorded as %+v", a)
	}
}

// status during start-up used to show "starting" and no backend at all
// until the slowest one was ready; it shows the ones being started.
func TestStatusShowsBackendsWhileStarting(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	cfg := filepath.Join(dir, "sv.hcl")
	src := fmt.Sprintf(`socket_dir = %q
control_socket = %q
backend "slow" {
  preset  = "generic"
  command = ["/bin/sleep", "60"]
  mount   = ""
  stop_timeout = "1s"
  ready { timeout = "30s" }
}
`, filepath.Join(dir, "s"), filepath.Join(dir, "ctl"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, c, _ := runWithoutApache(t, dir, cfg, hclog.Info)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st StatusReport
		raw, err := c.Status(context.Background())
		if err == nil {
			err = json.Unmarshal(raw, &st)
		}
		if err == nil && st.Phase == "starting" && len(st.Backends) == 1 {
			b := st.Backends[0]
			if b.Name != "slow" || b.Ready || b.PID == 0 || len(b.Queues) != 1 {
				t.Fatalf("backend while starting = %+v", b)
			}
			return
		}
		if err == nil && st.Phase != "starting" {
			t.Fatalf("phase %q before the slow backend was shown", st.Phase)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend in status during start-up: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runWithoutApache runs sockvisor on the config file cfg, whose
// control_socket is dir/ctl, with no Apache integration, until the test
// ends, when t.Cleanup stops it and checks what Run returned; stopped is
// closed once Run has returned.
func runWithoutApache(t *testing.T, dir, cfg string, level hclog.Level) (d *Daemon, c *control.Client, stopped <-chan struct{}) {
	t.Helper()
	d, err := New(Options{
		ConfigPath: cfg,
		Log:        testutil.Logger("sockvisor", level),
		Executable: os.Args[0],
		StateDir:   filepath.Join(dir, "state"),
		Apache: func(*config.Config, hclog.Logger) (*apache.Manager, error) {
			return nil, errors.New("no Apache in this test")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	})
	return d, control.NewClient(filepath.Join(dir, "ctl")), done
}
