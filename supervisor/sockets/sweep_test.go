package sockets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// sweepDir builds a socket_dir holding one of everything and returns it with
// the pid of the process listening on live.sock.
func sweepDir(t *testing.T) (dir string, livePID int) {
	t.Helper()
	testutil.NeedRoot(t)
	dir = filepath.Join(testutil.ShortDir(t), "s")
	mkdir(t, dir, 0o2750, 0, gidWWW)
	staleSocket(t, filepath.Join(dir, "stale.sock"))
	staleSocket(t, filepath.Join(dir, ".stale.sock.keep")) // left by a crash
	live := startChild(t, "listen", filepath.Join(dir, "live.sock"), true)
	startChild(t, "bound", filepath.Join(dir, "bound.sock"), true)
	write(t, filepath.Join(dir, "notes.txt"), "keep me")
	write(t, filepath.Join(filepath.Dir(dir), "target"), "target")
	if err := os.Symlink("../target", filepath.Join(dir, "link.sock")); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(dir, "sub"), 0o755, 0, 0)
	return dir, live.pid()
}

func byName(entries []Entry) map[string]Entry {
	m := map[string]Entry{}
	for _, e := range entries {
		m[e.Name] = e
	}
	return m
}

func TestSweep(t *testing.T) {
	dir, livePID := sweepDir(t)
	release, err := LockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	log, _ := testLog()

	want := map[string]struct {
		kind    Kind
		dry     Action
		real    Action
		present bool // after the real sweep
	}{
		"stale.sock":       {KindSocket, ActionWouldRemove, ActionRemoved, false},
		".stale.sock.keep": {KindSocket, ActionWouldRemove, ActionRemoved, false},
		"live.sock":        {KindSocket, ActionKept, ActionKept, true},
		"bound.sock":       {KindSocket, ActionKept, ActionKept, true},
		"notes.txt":        {KindFile, ActionIgnored, ActionIgnored, true},
		"link.sock":        {KindSymlink, ActionIgnored, ActionIgnored, true},
		"sub":              {KindDir, ActionIgnored, ActionIgnored, true},
	}

	dry, err := Sweep(context.Background(), dir, SweepOptions{DryRun: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	got := byName(dry)
	if len(got) != len(want) {
		t.Errorf("dry run reported %d entries, want %d (lock file excluded): %+v", len(got), len(want), dry)
	}
	for name, w := range want {
		if e := got[name]; e.Kind != w.kind || e.Action != w.dry {
			t.Errorf("dry run %s = %s/%s; want %s/%s (%s)", name, e.Kind, e.Action, w.kind, w.dry, e.Reason)
		}
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("dry run removed %s", name)
		}
	}

	real, err := Sweep(context.Background(), dir, SweepOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	got = byName(real)
	for name, w := range want {
		if e := got[name]; e.Kind != w.kind || e.Action != w.real {
			t.Errorf("sweep %s = %s/%s; want %s/%s (%s)", name, e.Kind, e.Action, w.kind, w.real, e.Reason)
		}
		if exists(filepath.Join(dir, name)) != w.present {
			t.Errorf("after sweep, %s present = %v; want %v", name, !w.present, w.present)
		}
	}
	if e := got["live.sock"]; e.PID != livePID {
		t.Errorf("live.sock reported with pid %d; want %d (%s)", e.PID, livePID, e.Reason)
	}
	if b, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), "target")); string(b) != "target" {
		t.Error("the symlink's target was touched")
	}
	if !exists(filepath.Join(dir, LockName)) {
		t.Error("the lock file went away")
	}
	for _, e := range real {
		t.Logf("%-18s %-9s %-12s pid=%-6d %s", e.Name, e.Kind, e.Action, e.PID, e.Reason)
	}
}

func TestSweepKeepsRunningDaemonSockets(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	create(t, cfg, spec)
	log, _ := testLog()
	got, err := Sweep(context.Background(), cfg.SocketDir, SweepOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(got)
	for _, name := range []string{spec.Name, KeepName(spec.Name)} {
		if e := m[name]; e.Action != ActionKept || e.PID != os.Getpid() {
			t.Errorf("%s = %+v; want kept with pid %d", name, e, os.Getpid())
		}
	}
}

func TestSweepSkip(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	staleSocket(t, filepath.Join(dir, "app.sock"))
	staleSocket(t, filepath.Join(dir, KeepName("app.sock")))
	staleSocket(t, filepath.Join(dir, "old.sock"))
	log, _ := testLog()
	got, err := Sweep(context.Background(), dir, SweepOptions{Skip: map[string]bool{"app.sock": true}}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := byName(got)
	for _, name := range []string{"app.sock", KeepName("app.sock")} {
		if m[name].Action != ActionKept || !exists(filepath.Join(dir, name)) {
			t.Errorf("skipped %s = %+v", name, m[name])
		}
	}
	if m["old.sock"].Action != ActionRemoved {
		t.Errorf("old.sock = %+v; want removed", m["old.sock"])
	}
}

func TestSweepConcurrentUnderLock(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	const n = 60
	for i := range n {
		staleSocket(t, filepath.Join(dir, fmt.Sprintf("s%02d.sock", i)))
	}
	log, _ := testLog()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		removed = map[string]int{}
		errs    []error
		inside  atomic.Int32 // sweeps holding the lock right now
		overlap atomic.Bool
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			release, err := LockDir(ctx, dir)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer release()
			if inside.Add(1) > 1 {
				overlap.Store(true)
			}
			got, err := Sweep(ctx, dir, SweepOptions{}, log)
			inside.Add(-1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			for _, e := range got {
				if e.Action == ActionRemoved {
					removed[e.Name]++
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if overlap.Load() {
		t.Error("two sweeps held the lock at the same time")
	}
	if len(removed) != n {
		t.Errorf("%d sockets removed; want %d", len(removed), n)
	}
	for name, c := range removed {
		if c != 1 {
			t.Errorf("%s reported removed %d times", name, c)
		}
	}
}

func TestLockDir(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	release, err := LockDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := LockDir(ctx, dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second LockDir = %v; want ErrLocked", err)
	}

	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := LockDir(ctx, dir)
		if err == nil {
			err = r()
		}
		got <- err
	}()
	// The waiter is inside LockDir once it has the lock file open too (a
	// second descriptor besides ours); from then on it must keep waiting
	// while we hold the lock, through several of its polls.
	lockFile := map[string]bool{filepath.Join(dir, LockName): true}
	for deadline := time.Now().Add(5 * time.Second); len(procfs.HoldersIn([]int{os.Getpid()}, lockFile)) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second LockDir never opened the lock file")
		}
	}
	select {
	case err := <-got:
		t.Fatalf("LockDir returned (%v) while another holder had the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Errorf("second release = %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("waiting LockDir = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting LockDir did not get the lock within 2 s of its release")
	}

	// The lock file must not be a symlink someone planted.
	other := testutil.ShortDir(t)
	if err := os.Symlink(filepath.Join(other, "x"), filepath.Join(other, LockName)); err != nil {
		t.Fatal(err)
	}
	if _, err := LockDir(context.Background(), other); !errors.Is(err, ErrUnsafe) {
		t.Errorf("LockDir over a symlink = %v; want ErrUnsafe", err)
	}
}
