package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// The state file names this sockvisor, each socket's inode and each backend
// process with its start time, follows a restart of the backend, and is
// removed by a clean stop.
func TestStateFileFollowsTheDaemon(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/app/", ""))
	path := statePath(filepath.Join(h.dir, "state"), filepath.Join(h.dir, "s"))
	read := func(wantPID int) *runState {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, err := readState(path)
			if err == nil && st != nil && len(st.Processes) == 1 && st.Processes[0].PID == wantPID {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("state file %s never named backend pid %d: %+v %v", path, wantPID, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pid := h.waitStatus().Backends[0].PID
	st := read(pid)
	self, _ := procfs.ReadStat(os.Getpid())
	if st.PID != os.Getpid() || st.StartTime != self.StartTime || !sameProcess(st.PID, st.StartTime) {
		t.Errorf("state names sockvisor %d/%d; want %d/%d", st.PID, st.StartTime, os.Getpid(), self.StartTime)
	}
	h.d.mu.Lock()
	l := h.d.socks["app.sock"]
	h.d.mu.Unlock()
	if len(st.Sockets) != 1 || l == nil || st.Sockets[0].Inode != l.Inode() || st.Sockets[0].Path != l.Path() {
		t.Errorf("state sockets = %+v; want %s, inode %d", st.Sockets, l.Path(), l.Inode())
	}
	p := st.Processes[0]
	if p.Backend != "app" || p.PGID != pid || !sameProcess(p.PID, p.StartTime) {
		t.Errorf("state process = %+v", p)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v", fi, err)
	}

	if err := h.client.Restart(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	read(h.waitStatus().Backends[0].PID)

	h.stop()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("state file left after a clean stop: %v", err)
	}
}

// A state file anyone else could have written is never trusted, and
// writing never replaces something that is not a regular file.
func TestStateFileRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sockvisor-x.json")
	if st, err := readState(path); st != nil || err != nil {
		t.Fatalf("missing state file = %v, %v", st, err)
	}
	if err := writeAtomic(path, []byte(`{"version": 1, "pid": 1}`)); err != nil {
		t.Fatal(err)
	}
	if st, err := readState(path); err != nil || st == nil || st.PID != 1 {
		t.Fatalf("readState = %+v, %v", st, err)
	}
	os.Chmod(path, 0o666)
	if _, err := readState(path); err == nil {
		t.Error("a world-writable state file was trusted")
	}
	os.Remove(path)
	if err := os.Symlink("/etc/passwd", path); err != nil {
		t.Fatal(err)
	}
	if _, err := readState(path); err == nil {
		t.Error("a symlinked state file was followed")
	}
	if err := writeAtomic(path, []byte("{}")); err == nil {
		t.Error("writeAtomic replaced a symlink")
	}
	if b, _ := os.ReadFile("/etc/passwd"); len(b) < 10 {
		t.Fatal("/etc/passwd damaged?")
	}
}

// A second sockvisor on the same socket_dir but another control_socket is
// refused (its sockets are in use); it used to delete the state file of
// the one that runs, so a kill -9 of that one was no longer recoverable.
// The running one also writes the file again if it goes missing.
func TestRefusedSecondDaemonKeepsTheStateFile(t *testing.T) {
	h := newHarness(t, backendHCL("app", "/app/", ""))
	state := statePath(filepath.Join(h.dir, "state"), filepath.Join(h.dir, "s"))
	before, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("no state file: %v", err)
	}

	cfg2 := filepath.Join(h.dir, "sv2.hcl")
	src := fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\n%s", filepath.Join(h.dir, "s"), filepath.Join(h.dir, "ctl2"), backendHCL("app", "/app/", ""))
	if err := os.WriteFile(cfg2, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	d2, err := New(Options{
		ConfigPath: cfg2,
		Log:        testutil.Logger("second", hclog.Info),
		Executable: os.Args[0],
		StateDir:   filepath.Join(h.dir, "state"),
		Apache: func(*config.Config, hclog.Logger) (*apache.Manager, error) {
			return nil, errors.New("no Apache for the second sockvisor")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d2.Run(ctx); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second sockvisor: %v, want a refusal naming the socket in use", err)
	}
	after, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("the refused second sockvisor removed the running one's state file: %v", err)
	}
	if string(after) != string(before) {
		t.Errorf("state file changed by the refused sockvisor:\n%s\nwas:\n%s", after, before)
	}

	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if st, err := readState(state); err == nil && st != nil && st.PID == os.Getpid() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the running sockvisor did not write its deleted state file again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.stop()
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after a clean stop: %v", err)
	}
}
