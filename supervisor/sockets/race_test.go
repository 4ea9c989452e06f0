package sockets

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestRenameExchangeRace reproduces issue [K] item 7: while another process
// swaps socket_dir with a symlink to a decoy directory (renameat2
// RENAME_EXCHANGE) in a tight loop, a start (PrepareDir, LockDir, Create)
// either fails or works entirely inside the real socket_dir. Before the fix,
// 2 of 120 starts escaped: the lock file, or a bound, chowned and linked
// socket, landed in the decoy. Nothing may ever appear there.
func TestRenameExchangeRace(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	dir := filepath.Join(base, "s")
	decoy := filepath.Join(base, "decoy")
	swap := filepath.Join(base, "swap")
	mkdir(t, decoy, 0o755, 0, 0)
	if err := os.Symlink(decoy, swap); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir, 1, "")
	log, _ := testLog()
	if err := PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}

	const starts = 1000
	budget := time.Now().Add(25 * time.Second)
	var swaps, spin atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50_000_000; i++ { // bounded, and stopped below
			select {
			case <-stop:
				return
			default:
			}
			if unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, swap, unix.RENAME_EXCHANGE) == nil {
				swaps.Add(1)
			}
			// Hold each state for a varying moment, so that starts get
			// past the open and are swapped under mid-way.
			for j := rand.IntN(4096); j > 0; j-- {
				spin.Add(1)
			}
		}
	}()
	stopSwapping := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		wg.Wait()
		// Leave socket_dir at its own name, whichever way the last swap went.
		if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, swap, unix.RENAME_EXCHANGE)
		}
	}
	t.Cleanup(stopSwapping)

	spec := cfg.AllSockets()[0]
	quiet := testQuietLog()
	var ok, failed, escapes int
	reasons := map[string]int{}
	why := func(stage string, err error) {
		msg := err.Error()
		if len(msg) > 70 {
			msg = msg[:70]
		}
		reasons[stage+": "+msg]++
	}
	var escaped []string
	for i := 0; i < starts && time.Now().Before(budget); i++ {
		func() {
			if err := PrepareDir(cfg, quiet); err != nil {
				why("PrepareDir", err)
				failed++
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			release, err := LockDir(ctx, cfg.SocketDir)
			if err != nil {
				why("LockDir", err)
				failed++
				return
			}
			defer release()
			l, err := Create(cfg, spec, quiet)
			if err != nil {
				why("Create", err)
				failed++
				return
			}
			ok++
			l.Close()
		}()
		// Start the next one after a swap, so starts do not bunch up in
		// whichever state lasts (a failing start is much quicker).
		for seen, until := swaps.Load(), time.Now().Add(2*time.Millisecond); swaps.Load() == seen && time.Now().Before(until); {
			runtime.Gosched()
		}
		ents, _ := os.ReadDir(decoy)
		if len(ents) > 0 {
			escapes++
			for _, e := range ents {
				escaped = append(escaped, e.Name())
				os.Remove(filepath.Join(decoy, e.Name()))
			}
		}
	}
	n := swaps.Load()
	for r, c := range reasons {
		t.Logf("%4d× %s", c, r)
	}
	stopSwapping()
	t.Logf("%d starts: %d succeeded, %d failed cleanly, %d escaped to the decoy %v; %d swaps", ok+failed, ok, failed, escapes, escaped, n)
	if escapes > 0 {
		t.Errorf("%d of %d starts escaped into the decoy directory: %v", escapes, ok+failed, escaped)
	}
	if ok+failed < starts {
		t.Errorf("only %d starts in the time budget; want %d", ok+failed, starts)
	}
	if ok == 0 || n == 0 {
		t.Errorf("%d starts succeeded during %d swaps; the race did not run", ok, n)
	}
}

// testQuietLog discards logs, for loops that would flood the test output.
func testQuietLog() hclog.Logger { return hclog.NewNullLogger() }

// A directory swapped in for socket_dir after PrepareDir (a real one, which
// O_NOFOLLOW alone would not catch) is refused by the path-based functions
// and by a listener's repairs, and nothing is created in it.
func TestSwappedDirRefused(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	dir := filepath.Join(base, "s")
	decoy := filepath.Join(base, "decoy")
	cfg := testConfig(t, dir, 1, "")
	log, _ := testLog()
	d, err := OpenDir(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	spec := cfg.AllSockets()[0]
	l, err := d.Create(cfg, spec, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mkdir(t, decoy, 0o2750, uidDaemon, gidWWW)
	if err := unix.Renameat2(unix.AT_FDCWD, dir, unix.AT_FDCWD, decoy, unix.RENAME_EXCHANGE); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := LockDir(ctx, dir); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "no longer the directory sockvisor prepared") {
		t.Errorf("LockDir on a swapped socket_dir = %v; want ErrUnsafe", err)
	}
	if _, err := Create(cfg, spec, log); !errors.Is(err, ErrUnsafe) {
		t.Errorf("Create in a swapped socket_dir = %v; want ErrUnsafe", err)
	}
	if _, err := l.EnsurePath(); !errors.Is(err, ErrUnsafe) {
		t.Errorf("EnsurePath in a swapped socket_dir = %v; want ErrUnsafe", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Errorf("entries created in the swapped-in directory: %v", ents)
	}
	// The held directory still works wherever it now is.
	release, err := d.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if !exists(filepath.Join(decoy, LockName)) || !exists(filepath.Join(decoy, spec.Name)) {
		t.Error("the held directory lost its lock file or socket")
	}
}
