package apache

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// fakeSystemd stands in for systemd's D-Bus API to drive job results,
// which a real systemd only produces by breaking Apache for real (the node
// test does that).
type fakeSystemd struct {
	t      *testing.T
	mu     sync.Mutex
	states []string // ActiveState per read; the last one repeats
	pids   []uint32 // MainPID per read; the last one repeats
	result string   // sent on the job channel; "" sends nothing
	err    error    // returned by the job call
	onJob  func()   // runs when a job starts
	reads  int
	jobs   []string
	closed bool
}

func (f *fakeSystemd) job(verb string, ch chan<- string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs = append(f.jobs, verb)
	if f.onJob != nil {
		f.onJob()
	}
	if f.err != nil {
		return 0, f.err
	}
	// go-systemd sends from its dispatcher; an unbuffered channel would
	// block it if the result came before we wait.
	if cap(ch) < 1 {
		f.t.Error("job channel is unbuffered")
	}
	if f.result != "" {
		ch <- f.result
	}
	return 7, nil
}

func (f *fakeSystemd) ReloadUnitContext(_ context.Context, _, mode string, ch chan<- string) (int, error) {
	if mode != "replace" {
		f.t.Errorf("mode %q", mode)
	}
	return f.job("reload", ch)
}

func (f *fakeSystemd) StartUnitContext(_ context.Context, _, _ string, ch chan<- string) (int, error) {
	return f.job("start", ch)
}

func pick[T any](list []T, i int) T {
	if i >= len(list) {
		i = len(list) - 1
	}
	return list[i]
}

func (f *fakeSystemd) GetUnitPropertyContext(_ context.Context, _, name string) (*sdbus.Property, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != "ActiveState" {
		f.t.Errorf("unit property %q", name)
	}
	return &sdbus.Property{Name: name, Value: godbus.MakeVariant(pick(f.states, f.reads))}, nil
}

func (f *fakeSystemd) GetServicePropertyContext(_ context.Context, _, name string) (*sdbus.Property, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != "MainPID" {
		f.t.Errorf("service property %q", name)
	}
	v := pick(f.pids, f.reads)
	f.reads++
	return &sdbus.Property{Name: name, Value: godbus.MakeVariant(v)}, nil
}

func (f *fakeSystemd) Close() { f.closed = true }

func fakeReloader(f *fakeSystemd) (*DBusReloader, *int) {
	dials := 0
	r := &DBusReloader{Unit: "apache2.service", JobTimeout: 100 * time.Millisecond, Settle: 10 * time.Millisecond,
		dial: func(context.Context) (systemdConn, error) { dials++; return f, nil }}
	return r, &dials
}

func TestDBusJobResults(t *testing.T) {
	// A live pid with no children stands in for Apache's main process.
	me := uint32(os.Getpid())
	cases := []struct {
		name   string
		fake   *fakeSystemd
		want   error
		jobs   int
		phrase string
	}{
		{"done", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}, result: "done"}, nil, 1, ""},
		{"inactive before", &fakeSystemd{states: []string{"inactive"}, pids: []uint32{0}, result: "done"}, ErrNotRunning, 0, "is inactive"},
		{"invalid", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}, result: "invalid"}, ErrNotRunning, 1, "not active"},
		{"failed", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}, result: "failed"}, ErrReload, 1, "ExecReload= exited non-zero); see journalctl -u apache2.service"},
		{"canceled", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}, result: "canceled"}, ErrReload, 1, "canceled"},
		{"unknown", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}, result: "frobbed"}, ErrReload, 1, `unknown result "frobbed"`},
		{"no result", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}}, ErrReload, 1, "did not finish within 100ms"},
		{"call error", &fakeSystemd{states: []string{"active"}, pids: []uint32{me}, err: errors.New("access denied")}, ErrReload, 1, "access denied"},
		{"failed after", &fakeSystemd{states: []string{"active", "failed"}, pids: []uint32{me, 0}, result: "done"}, ErrApacheDied, 1, "is failed with main PID 0"},
		{"new main pid", &fakeSystemd{states: []string{"active"}, pids: []uint32{me, me + 1}, result: "done"}, ErrApacheDied, 1, "after the reload"},
		{"main pid dies", dying(t), ErrApacheDied, 1, "exited after the reload"},
		// A main PID this namespace cannot see is checked through systemd only.
		{"main pid invisible", &fakeSystemd{states: []string{"active"}, pids: []uint32{1<<22 + 1}, result: "done"}, nil, 1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.fake
			f.t = t
			r, _ := fakeReloader(f)
			err := r.Reload(context.Background())
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Reload = %v, want %v", err, c.want)
			}
			if err != nil && !strings.Contains(err.Error(), c.phrase) {
				t.Errorf("error %q lacks %q", err, c.phrase)
			}
			if len(f.jobs) != c.jobs {
				t.Errorf("%d jobs, want %d", len(f.jobs), c.jobs)
			}
		})
	}
}

// dying fakes a unit whose main process, a real child, dies during the
// reload job while systemd still reports it active.
func dying(t *testing.T) *fakeSystemd {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return &fakeSystemd{states: []string{"active"}, pids: []uint32{uint32(cmd.Process.Pid)}, result: "done",
		onJob: func() { cmd.Process.Kill() }}
}

func TestDBusRedialsAfterError(t *testing.T) {
	f := &fakeSystemd{t: t, states: []string{"active"}, pids: []uint32{uint32(os.Getpid())}, err: errors.New("bus gone")}
	r, dials := fakeReloader(f)
	if err := r.Reload(context.Background()); !errors.Is(err, ErrReload) {
		t.Fatal(err)
	}
	if !f.closed {
		t.Error("failed connection not closed")
	}
	f.err, f.result = nil, "done"
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if *dials != 2 {
		t.Errorf("%d dials, want 2", *dials)
	}
	// A healthy connection is kept.
	if err := r.Reload(context.Background()); err != nil || *dials != 2 {
		t.Errorf("Reload = %v after %d dials; want the connection reused", err, *dials)
	}
}

func TestDBusStart(t *testing.T) {
	f := &fakeSystemd{t: t, states: []string{"active"}, pids: []uint32{1}, result: "done"}
	r, _ := fakeReloader(f)
	if err := r.Start(context.Background()); err != nil || len(f.jobs) != 1 || f.jobs[0] != "start" {
		t.Fatalf("Start = %v, jobs %v", err, f.jobs)
	}
	f2 := &fakeSystemd{t: t, states: []string{"failed"}, pids: []uint32{0}, result: "failed"}
	r2, _ := fakeReloader(f2)
	if err := r2.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded on a failed job")
	}
	// The job succeeds but the unit is not active: the error says so,
	// without a trailing ": <nil>".
	f3 := &fakeSystemd{t: t, states: []string{"failed"}, pids: []uint32{0}, result: "done"}
	r3, _ := fakeReloader(f3)
	err := r3.Start(context.Background())
	if err == nil || strings.Contains(err.Error(), "<nil>") || !strings.Contains(err.Error(), `is "failed" after its start job`) {
		t.Fatalf("Start of a unit that stays failed = %v", err)
	}
}

// TestDBusNoSystemd: without a bus (this host has no systemd) the error
// says what to do instead of hanging.
func TestDBusNoSystemd(t *testing.T) {
	r := NewDBusReloader("apache2.service")
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		// This host runs systemd: dial a bus socket that does not exist
		// instead, which is what a machine without systemd offers.
		missing := filepath.Join(testutil.ShortDir(t), "no-bus")
		r.dial = func(context.Context) (systemdConn, error) {
			c, err := sdbus.NewConnection(func() (*godbus.Conn, error) { return godbus.Dial("unix:path=" + missing) })
			if err != nil {
				return nil, err
			}
			return c, nil
		}
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := r.Reload(ctx)
	if !errors.Is(err, ErrReload) || !strings.Contains(err.Error(), `apache.reload = "apachectl"`) {
		t.Fatalf("Reload without systemd = %v", err)
	}
}
