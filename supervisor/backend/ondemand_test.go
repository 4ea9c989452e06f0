package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

func onDemandBackend(t *testing.T, e *env, idle string) *Backend {
	t.Helper()
	cfg := e.parse(fmt.Sprintf(`backend "app" {
command = [%q]
environment = { SV_ROLE = "http" }
mount = ""
start = "on-demand"
idle_timeout = %q
stop_timeout = "5s"
}
`, e.exe, idle))
	b := cfg.Backends[0]
	userOwn(b)
	return e.start(b, e.sockets(b), Options{})
}

func waitState(t *testing.T, be *Backend, want State, d time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := be.Status()
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s after %s; want %s (%+v)", st.State, d, want, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOnDemandColdStartAndIdleStop: an on-demand backend starts idle with
// no process, WaitReady does not wait for it, the first connection starts
// it and is served by the new process (which got the socket in blocking
// mode: the watch never touched the flag), and after idle_timeout without
// connections the process is gone and the backend idle again.
func TestOnDemandColdStartAndIdleStop(t *testing.T) {
	e := newEnv(t)
	be := onDemandBackend(t, e, "1s")
	st := waitState(t, be, StateIdle, 5*time.Second)
	if st.PID != 0 || st.Ready || st.Start != "on-demand" {
		t.Fatalf("idle status %+v; want no process", st)
	}
	waitReady(t, be, time.Second)
	if err := be.Restart(context.Background()); !errors.Is(err, ErrIdle) {
		t.Fatalf("Restart of an idle backend: %v; want ErrIdle", err)
	}
	path := be.Status().Sockets[0]
	got := fetch(t, path, "/whoami")
	if !strings.Contains(got, "nonblock=false") {
		t.Errorf("cold-started process got %q; want the socket in blocking mode", got)
	}
	st = waitState(t, be, StateReady, 5*time.Second)
	if st.PID == 0 {
		t.Fatalf("after the first request: %+v; want ready", st)
	}
	pid := st.PID
	st = waitState(t, be, StateIdle, 6*time.Second)
	if st.PID != 0 || st.LastRunAt == nil || len(procfs.GroupMembers(pid)) > 0 {
		t.Fatalf("after idle_timeout: %+v, group %v; want idle with last_ran_at and no process", st, procfs.GroupMembers(pid))
	}
	if ex := st.LastExit; ex == nil || ex.Code != 0 {
		t.Errorf("idle stop exit %+v; want a graceful exit 0", ex)
	}
	s := be.OnDemandStats()
	if s.ColdStarts != 1 || s.IdleStops != 1 || s.LatencyCount != 1 {
		t.Errorf("stats %+v; want 1 cold start, 1 idle stop, 1 latency", s)
	}
	// Again: the watch is re-armed.
	fetch(t, path, "/whoami")
	if s := be.OnDemandStats(); s.ColdStarts != 2 {
		t.Errorf("cold starts %d after a second first request; want 2", s.ColdStarts)
	}
}

// TestOnDemandStartIdle: Start runs the backend without a connection,
// Idle puts it back, and requests racing an idle stop all succeed.
func TestOnDemandStartIdle(t *testing.T) {
	e := newEnv(t)
	be := onDemandBackend(t, e, "0s")
	waitState(t, be, StateIdle, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := be.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st := be.Status(); st.State != StateReady {
		t.Fatalf("after Start: %s; want ready", st.State)
	}
	if err := be.Start(ctx); !errors.Is(err, ErrNotIdle) {
		t.Fatalf("second Start: %v; want ErrNotIdle", err)
	}
	path := be.Status().Sockets[0]
	// idle_timeout 0s: never stopped for idleness.
	time.Sleep(1500 * time.Millisecond)
	if st := be.Status(); st.State != StateReady {
		t.Fatalf("idle_timeout 0s but state %s", st.State)
	}
	for round := range 5 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		fetch(t, path, "/whoami") // running
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		idleErr := make(chan error, 1)
		go func() { idleErr <- be.Idle(ctx) }()
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * time.Millisecond)
				rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
				defer rcancel()
				if code, _, err := httpGet(rctx, path, "/whoami"); err != nil || code != 200 {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%d %v", code, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if err := <-idleErr; err != nil {
			t.Fatalf("round %d: Idle: %v", round, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("round %d took %s: the idle stop waited for SIGKILL (stop_timeout 5s)", round, d)
		}
		if len(errs) > 0 {
			t.Fatalf("round %d: %d of 40 requests racing an idle stop failed: %v", round, len(errs), errs)
		}
	}
	if s := be.OnDemandStats(); s.IdleStops != 5 {
		t.Errorf("idle stops %d; want 5", s.IdleStops)
	}
}

func TestIdleCheckEvery(t *testing.T) {
	for _, c := range []struct{ idle, want time.Duration }{
		{5 * time.Second, 500 * time.Millisecond},
		{500 * time.Millisecond, 100 * time.Millisecond},
		{30 * time.Second, time.Second},
		{10 * time.Minute, time.Second},
	} {
		if got := idleCheckEvery(c.idle); got != c.want {
			t.Errorf("idleCheckEvery(%s) = %s, want %s", c.idle, got, c.want)
		}
	}
}

func TestServing(t *testing.T) {
	st := Status{Instances: []InstanceStatus{{State: StateIdle}, {State: StateReady, Ready: true}}}
	if !st.Serving() {
		t.Error("idle and ready instances: Serving() = false")
	}
	st.Instances[1] = InstanceStatus{State: StateStarting}
	if st.Serving() {
		t.Error("a starting instance: Serving() = true")
	}
	if (Status{}).Serving() {
		t.Error("no instances: Serving() = true")
	}
}
