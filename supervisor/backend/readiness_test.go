package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// asStartError fails the test unless err is a *StartError wrapping
// ErrNotReady.
func asStartError(t *testing.T, err error) *StartError {
	t.Helper()
	var se *StartError
	if !errors.As(err, &se) || !errors.Is(err, ErrNotReady) {
		t.Fatalf("error %v (%T); want a *StartError wrapping ErrNotReady", err, err)
	}
	return se
}

// TestWaitReadyStartError: a first start whose process exits makes
// WaitReady return at once (not at ctx's end, not at ready.timeout) with a
// *StartError holding the exit status and the process's last output.
func TestWaitReadyStartError(t *testing.T) {
	e := newEnv(t)
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "boot-fail", SV_DELAY = "300ms" }
mount = ""
ready { timeout = "30s" }
restart { min_delay = "10s" }
}
`, e.exe))
	b := cfg.Backends[0]
	if os.Geteuid() != 0 {
		b.UID, b.GID, b.Groups = os.Getuid(), os.Getgid(), nil
	}
	be := e.start(b, e.sockets(b), Options{})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := be.WaitReady(ctx)
	took := time.Since(start)
	se := asStartError(t, err)
	if took > 3*time.Second {
		t.Errorf("WaitReady took %v; want it to return as soon as the process exited", took)
	}
	if se.Backend != "app" || se.Instance != 0 || se.PID == 0 || se.Exit == nil || se.Exit.Code != 1 || se.Replacing {
		t.Errorf("StartError %+v; want backend app, instance 0, a pid, exit 1, not replacing", se)
	}
	if !slices.Contains(se.Tail, "RuntimeError: broken app") || !slices.Contains(se.Tail, "booting") {
		t.Errorf("Tail %q; want the process's last stdout and stderr lines", se.Tail)
	}
	t.Logf("WaitReady after %v: %v", took.Round(time.Millisecond), err)
}

func TestOutputTailBounds(t *testing.T) {
	var tl outputTail
	long := string(make([]byte, 2*TailLineBytes))
	for i := range 3 * TailLines {
		tl.add(fmt.Sprint(i))
	}
	tl.add(long)
	got := tl.lines()
	if len(got) != TailLines || got[0] != fmt.Sprint(2*TailLines+1) || len(got[TailLines-1]) != TailLineBytes {
		t.Errorf("tail has %d lines, first %q, last %d bytes; want %d lines, the newest, each at most %d bytes", len(got), got[0], len(got[len(got)-1]), TailLines, TailLineBytes)
	}
}
