package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// On-demand backends (start = "on-demand"). An idle instance has no
// process: the owner watches its listening socket for a waiting connection
// (watch.go) and starts the usual process when one arrives, which then
// accepts that connection from the backlog. A ready instance is sampled
// with sock_diag every idleCheckEvery; after idle_timeout without an
// established connection or a queued one it is stopped with stop_signal
// and watched again. A connection that arrives meanwhile waits in the
// backlog (sockvisor's descriptor keeps the listener open) and, since the
// watch is level-triggered, starts the next process as soon as the old
// one exited: no interleaving refuses it.

// StateIdle is an on-demand instance with no process, waiting for a
// connection. It is healthy: neither failed nor unready.
const StateIdle State = "idle"

// Errors of the on-demand requests; test with errors.Is.
var (
	// ErrIdle means a restart or reload found every instance idle: there
	// is no process to replace, and the next connection starts the new one.
	ErrIdle = errors.New("backend: idle")
	// ErrNotIdle means Start found every instance already running.
	ErrNotIdle = errors.New("backend: already running")
	// ErrEager means Start or Idle was asked of a backend with start = "eager".
	ErrEager = errors.New("backend: starts eagerly")
)

// ColdStartBuckets are the bounds, in seconds, of the cold-start histogram.
var ColdStartBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// OnDemandStats counts an on-demand backend's cold starts and idle stops.
type OnDemandStats struct {
	ColdStarts uint64
	IdleStops  uint64
	// Latency is the cold-start histogram: from the first waiting
	// connection seen on an idle socket to the new process proven ready
	// (its own group answered the probe), which is when it accepts.
	LatencyCount   uint64
	LatencySum     float64
	LatencyBuckets map[float64]uint64 // cumulative, by upper bound
}

// odStats is OnDemandStats kept by the owner, read by anyone.
type odStats struct {
	mu sync.Mutex // guards st
	st OnDemandStats
}

func (s *odStats) observe(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.LatencyBuckets == nil {
		s.st.LatencyBuckets = map[float64]uint64{}
	}
	sec := d.Seconds()
	s.st.LatencyCount++
	s.st.LatencySum += sec
	for _, ub := range ColdStartBuckets {
		if sec <= ub {
			s.st.LatencyBuckets[ub]++
		}
	}
}

func (s *odStats) add(cold, idle uint64) {
	s.mu.Lock()
	s.st.ColdStarts += cold
	s.st.IdleStops += idle
	s.mu.Unlock()
}

// OnDemandStats returns the counters; zero for an eager backend.
func (b *Backend) OnDemandStats() OnDemandStats {
	b.od.mu.Lock()
	defer b.od.mu.Unlock()
	st := b.od.st
	st.LatencyBuckets = make(map[float64]uint64, len(ColdStartBuckets))
	for _, ub := range ColdStartBuckets {
		st.LatencyBuckets[ub] = b.od.st.LatencyBuckets[ub]
	}
	return st
}

// odInstance is an instance's on-demand state. Owner only.
type odInstance struct {
	gen      uint64 // bumping it disowns the pending watch
	unwatch  func() // cancels the pending watch; nil when none
	wokeAt   time.Time
	lastBusy time.Time
	idleGen  uint64 // bumping it disowns the pending idle check
	lastRun  time.Time
	idleOps  []*op // Idle calls waiting for this instance to be idle
}

// idleCheckEvery is how often a running on-demand instance is sampled:
// a tenth of idle_timeout, between 100 ms and 1 s.
func idleCheckEvery(idle time.Duration) time.Duration {
	return min(max(idle/10, 100*time.Millisecond), time.Second)
}

// goIdle makes in idle and watches its socket. Owner only.
func (b *Backend) goIdle(in *instance) {
	in.state = StateIdle
	in.failures = 0
	in.lastErr = ""
	in.od.wokeAt = time.Time{}
	for _, o := range in.od.idleOps {
		o.finish(nil)
	}
	in.od.idleOps = nil
	in.slot.drain()
	b.watch(in)
}

// watch arms the readability watch of in's socket. Owner only.
func (b *Backend) watch(in *instance) {
	b.unwatch(in)
	fired, cancel, err := watchReadable(in.sock.File())
	if err != nil {
		b.log.Error("cannot watch the socket for connections; starting the backend now", "instance", in.idx, "error", err)
		in.od.wokeAt = b.clock.Now()
		b.spawn(in)
		return
	}
	in.od.gen++
	gen := in.od.gen
	stop := make(chan struct{})
	in.od.unwatch = func() { cancel(); close(stop) }
	b.helpers.Add(1)
	go func() {
		defer b.helpers.Done()
		select {
		case <-fired:
			b.send(event{kind: evWake, in: in, gen: gen})
		case <-stop:
		case <-b.quit:
		}
	}()
}

func (b *Backend) unwatch(in *instance) {
	if in.od.unwatch != nil {
		in.od.unwatch()
		in.od.unwatch = nil
	}
	in.od.gen++
}

// woken handles the watch of generation gen seeing a connection wait on
// in's socket. Owner only.
func (b *Backend) woken(in *instance, gen uint64) {
	if gen == in.od.gen && in.state == StateIdle && !b.stopping {
		in.od.unwatch = nil
		b.wake(in, "a connection is waiting")
	}
}

// wake starts an idle instance. Owner only.
func (b *Backend) wake(in *instance, why string) {
	b.unwatch(in)
	in.od.wokeAt = b.clock.Now()
	b.od.add(1, 0)
	b.log.Info("starting on demand", "instance", in.idx, "reason", why)
	b.spawn(in)
}

// onReady records a cold start's latency and arms the idle check. Owner only.
func (b *Backend) onReady(in *instance, p *process) {
	if !b.cfg.OnDemand() {
		return
	}
	if !in.od.wokeAt.IsZero() {
		b.od.observe(p.readyAt.Sub(in.od.wokeAt))
		in.od.wokeAt = time.Time{}
	}
	in.od.lastBusy = b.clock.Now()
	b.armIdleCheck(in)
}

func (b *Backend) armIdleCheck(in *instance) {
	if b.cfg.IdleTimeout <= 0 {
		return
	}
	in.od.idleGen++
	b.after(idleCheckEvery(b.cfg.IdleTimeout), event{kind: evIdleCheck, in: in, gen: in.od.idleGen})
}

// idleCheck samples in's socket and stops its process once it was idle for
// idle_timeout. Owner only.
func (b *Backend) idleCheck(in *instance, gen uint64) {
	if gen != in.od.idleGen || b.stopping || in.cur == nil || in.cur.phase != phaseReady {
		return
	}
	now := b.clock.Now()
	if in.next != nil {
		in.od.lastBusy = now // a replacement is under way
	} else {
		a, err := socketActivity(in.path)
		if err != nil {
			// Without the kernel's view the backend is never idle.
			b.log.Warn("cannot read the socket's connections; not stopping it for idleness", "instance", in.idx, "error", err)
			in.od.lastBusy = now
		} else if a.Conns > 0 || a.Queue > 0 {
			in.od.lastBusy = now
		}
	}
	if now.Sub(in.od.lastBusy) < b.cfg.IdleTimeout {
		b.armIdleCheck(in)
		return
	}
	b.log.Info("idle; stopping the backend until the next connection", "instance", in.idx, "pid", in.cur.pid, "idle_for", now.Sub(in.od.lastBusy).Round(time.Millisecond))
	b.idleStop(in)
}

// idleStop stops in's processes and makes it idle once its main process
// exited. Owner only.
func (b *Backend) idleStop(in *instance) {
	b.od.add(0, 1)
	in.od.idleGen++
	for _, p := range []*process{in.cur, in.next} {
		if p != nil {
			p.idleStop = true
			p.noPark.Store(true)
			b.stopProc(p)
		}
	}
	in.next = nil
	in.state = StateStopping
}

// idleExited handles the exit of a process stopped for idleness; it
// reports whether it did. Owner only.
func (b *Backend) idleExited(in *instance, p *process) bool {
	if !p.idleStop || p != in.cur || b.stopping {
		return false
	}
	in.cur = nil
	in.od.lastRun = b.clock.Now()
	b.goIdle(in)
	return true
}

// startNow handles Start: every idle or backing-off instance starts at once.
func (b *Backend) startNow(reply chan error) {
	if !b.cfg.OnDemand() {
		b.answer(reply, fmt.Errorf("backend %q has start = %q, so it always runs; %w", b.cfg.Name, b.cfg.Start, ErrEager))
		return
	}
	o := &op{b: b, reply: reply, remaining: 1}
	started := 0
	for _, in := range b.insts {
		switch {
		case in.state == StateIdle:
			started++
			o.remaining++
			in.ops = append(in.ops, o)
			b.wake(in, "sockvisor start")
		case in.cur == nil && in.next == nil && !in.spawnWhenGone && in.state != StateStopping:
			started++
			o.remaining++
			in.ops = append(in.ops, o)
			in.backoff++
			in.failures = 0
			b.spawn(in)
		}
	}
	if started == 0 {
		o.remaining = 0
		b.answer(reply, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrNotIdle))
		return
	}
	o.finish(nil)
}

// idleNow handles Idle: every instance's process is stopped and the
// instance watched again; the reply comes once every instance is idle.
func (b *Backend) idleNow(reply chan error) {
	if !b.cfg.OnDemand() {
		b.answer(reply, fmt.Errorf("backend %q has start = %q and cannot be idle; set start = \"on-demand\" or remove the backend from the config; %w", b.cfg.Name, b.cfg.Start, ErrEager))
		return
	}
	o := &op{b: b, reply: reply, remaining: 1}
	for _, in := range b.insts {
		if in.state == StateIdle {
			continue
		}
		o.remaining++
		in.od.idleOps = append(in.od.idleOps, o)
		in.finishOps(fmt.Errorf("backend %q was put back to idle: %w", b.cfg.Name, ErrIdle))
		switch {
		case in.cur != nil || in.next != nil:
			if in.cur == nil {
				in.cur, in.next = in.next, nil
			}
			if !in.cur.idleStop {
				b.idleStop(in)
			}
		case in.spawnWhenGone:
			in.spawnWhenGone = false
			in.state = StateStopping
		default: // backing off or failed
			in.backoff++
			b.goIdle(in)
		}
	}
	o.finish(nil)
}

// allIdle reports whether every instance is idle.
func (b *Backend) allIdle() bool {
	for _, in := range b.insts {
		if in.state != StateIdle {
			return false
		}
	}
	return len(b.insts) > 0
}

// Start starts every idle instance of an on-demand backend now, without
// waiting for a connection, and returns once each is ready (errors as for
// Restart). It returns ErrNotIdle when every instance already runs and
// ErrEager for an eager backend.
func (b *Backend) Start(ctx context.Context) error { return b.call(ctx, reqStart) }

// Idle stops every process of an on-demand backend (stop_signal,
// stop_timeout, SIGKILL) and returns once every instance is idle again,
// watching its socket. It returns ErrEager for an eager backend.
func (b *Backend) Idle(ctx context.Context) error { return b.call(ctx, reqIdle) }

// activityCache shares one sock_diag dump among every backend of the
// process: with hundreds of on-demand sites, each sampling once a second,
// a dump per sample would cost more than the backends' idle CPU.
var activityCache struct {
	mu  sync.Mutex // guards the fields below
	at  time.Time
	m   map[string]sockdiag.Activity
	err error
}

// activityMaxAge is how old a shared dump may be.
const activityMaxAge = 250 * time.Millisecond

func socketActivity(path string) (sockdiag.Activity, error) {
	c := &activityCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > activityMaxAge {
		c.m, c.err = sockdiag.ActivityByPath()
		c.at = time.Now()
	}
	if c.err != nil {
		return sockdiag.Activity{}, c.err
	}
	return c.m[path], nil
}

// Serving reports whether every instance is ready or idle: the backend
// serves its sockets, now or on the next connection. Before Run it is false.
func (st Status) Serving() bool {
	for _, in := range st.Instances {
		if !in.Ready && in.State != StateIdle {
			return false
		}
	}
	return len(st.Instances) > 0
}
