package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
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
