package backend

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// instance is one socket and the processes serving it.
type instance struct {
	idx  int
	sock Socket // nil for handoff self
	spec config.Socket
	path string
	slot probeSlot // the one pending probe connection; see ready.go

	cur  *proc // serving, or starting
	next *proc // replacement being started
	// spawnWhenGone: a self-binding process must be gone before the next
	// one can bind the path; spawn once no process of in is left.
	spawnWhenGone bool

	state     State
	everReady bool        // some process of in has been ready
	startErr  *StartError // latest failed start while never ready
	failures  int         // consecutive failed runs
	restarts  int
	lastExit  *Exit
	lastErr   string
	backoff   uint64 // generation; bumping it cancels the pending timer
	nextStart time.Time
	ops       []*op // Restart/Reload calls waiting for this instance
	od        odInstance
}

// spawn starts a process as in.cur; a failure counts as a crash.
func (b *Backend) spawn(in *instance) {
	if in.failures < CrashLoopAfter {
		in.state = StateStarting
	}
	p, err := b.startProcess(in)
	if err != nil {
		b.log.Error("start failed", "instance", in.idx, "error", err)
		in.lastErr = err.Error()
		b.startFailed(in, b.startError(in, nil, nil, err))
		b.scheduleRestart(in, nil)
		return
	}
	in.cur = p
	b.track(p)
}

// track registers p and starts its readiness probe.
func (b *Backend) track(p *proc) {
	b.procs[p] = struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancelProbe = cancel
	b.helpers.Add(1)
	go b.readiness(ctx, p, p.inst.path, p.inst.spec, p.deadline)
}

// startFailed reports a failed start attempt to the calls waiting on in
// and, while in has never been ready, to WaitReady.
func (b *Backend) startFailed(in *instance, err *StartError) {
	if !in.everReady {
		in.startErr = err
	}
	in.finishOps(err)
}

// maybeReady promotes p once its own group answered the probe (see
// ready.go) and, if the backend notifies, READY=1 arrived from that group.
// Presets that notify must send it; a generic backend is expected to once
// any of its processes has. READY=1 alone is never enough: gunicorn's
// arbiter sends it before its workers import the app.
func (b *Backend) maybeReady(p *proc) {
	if p.ready || !p.probeOK || (b.notify != nil && (b.srv.notifies || b.sawReady) && !p.notified) {
		return
	}
	p.ready = true
	p.readyAt = b.clock.Now()
	in := p.inst
	if p == in.next {
		old := in.cur
		in.cur, in.next = p, nil
		if old != nil {
			b.log.Info("replacement ready; stopping the old process", "instance", in.idx, "pid", p.pid, "old_pid", old.pid)
			b.stopProc(old)
		}
	}
	in.state = StateReady
	in.lastErr = ""
	in.everReady = true
	in.startErr = nil
	b.log.Info("ready", "instance", in.idx, "pid", p.pid, "after", p.readyAt.Sub(p.started).Round(time.Millisecond))
	b.onReady(in, p)
	in.finishOps(nil)
}

// notified handles an sd_notify datagram from pid.
func (b *Backend) notified(pid int, vars map[string]string) {
	var p *proc
	for q := range b.procs {
		if q.pid == pid {
			p = q
			break
		}
	}
	if p == nil {
		// A child of the main process (a wrapper's server) counts for its group.
		if st, err := procfs.ReadStat(pid); err == nil {
			pg := st.PGID
			for q := range b.procs {
				if q.pid == pg {
					p = q
				}
			}
		}
	}
	if p == nil || p.exited {
		return
	}
	if s, ok := vars["STATUS"]; ok {
		p.statusText = s
	}
	if v, ok := vars["MAINPID"]; ok {
		b.setMainPID(p, v)
	}
	if vars["RELOADING"] == "1" {
		p.reloading = true
	}
	if vars["READY"] == "1" {
		p.reloading = false
		if !p.notified {
			p.notified = true
			b.sawReady = true
			b.maybeReady(p)
		}
	}
	// WATCHDOG=1 and STOPPING=1 need nothing: sockvisor sets no
	// WATCHDOG_USEC and watches the process itself.
}

// setMainPID re-targets p's signals to the process MAINPID= names. Only a
// live member of p's own group is accepted: a backend must not make
// sockvisor signal someone else's process.
func (b *Backend) setMainPID(p *proc, v string) {
	pid, err := strconv.Atoi(v)
	if err == nil && pid > 0 {
		if st, serr := procfs.ReadStat(pid); serr == nil && st.PGID == p.pid && !st.Zombie() {
			if pid != p.mainPID {
				b.log.Info("main process changed", "instance", p.inst.idx, "pid", p.pid, "main_pid", pid)
			}
			p.mainPID = pid
			return
		}
	}
	b.log.Warn("ignoring MAINPID=: not a live process of the backend's group", "instance", p.inst.idx, "pid", p.pid, "main_pid", v)
}

// notReady gives up on a process that missed its readiness deadline.
func (b *Backend) notReady(p *proc, err error) {
	in := p.inst
	in.lastErr = err.Error()
	b.log.Error("not ready; stopping it", "instance", in.idx, "pid", p.pid, "error", err)
	b.stopProc(p)
	serr := b.startError(in, p, nil, err)
	switch p {
	case in.next:
		in.next = nil
		b.startFailed(in, serr)
		if in.cur == nil {
			b.scheduleRestart(in, nil)
		}
	case in.cur:
		in.cur = nil
		b.startFailed(in, serr)
		if in.next == nil {
			b.scheduleRestart(in, nil)
		}
	}
}

// exited handles the end of a main process.
func (b *Backend) exited(p *proc, ws syscall.WaitStatus) {
	p.exited = true
	p.cancelProbe()
	in := p.inst
	ex := exitOf(p.pid, ws, b.clock.Now())
	in.lastExit = ex
	b.log.Info("exited", "instance", in.idx, "pid", p.pid, "code", ex.Code, "signal", ex.Signal)
	if in.sock != nil {
		// PHP-FPM and gunicorn fd:// unlink the path on exit.
		if restored, err := in.sock.EnsurePath(); err != nil {
			b.log.Error("cannot restore the socket path", "path", in.path, "error", err)
		} else if restored {
			b.log.Warn("the backend removed its socket path; restored it", "path", in.path)
		}
	}
	// Leftover group members (workers of a killed master) get the stop
	// signal now, SIGKILL after stop_timeout.
	if p.stopSent && b.srv.stopMain {
		if err := signalGroup(p.pid, b.cfg.StopSignal); err != nil {
			b.log.Error("stop signal failed", "pid", p.pid, "error", err)
		}
	}
	b.stopProc(p)
	if b.stopping || b.idleExited(in, p) {
		return
	}
	switch p {
	case in.cur:
		in.cur = nil
		in.lastErr = fmt.Sprintf("process %d %s", p.pid, ex.describe())
		if !p.ready {
			in.lastErr += " before it was ready"
			b.startFailed(in, b.startError(in, p, ex, nil))
		}
		if in.next == nil {
			b.scheduleRestart(in, p)
		} else {
			in.state = StateStarting // the replacement takes over when ready
		}
	case in.next:
		serr := b.startError(in, p, ex, nil)
		in.next = nil
		in.lastErr = fmt.Sprintf("new process %d %s before it was ready", p.pid, ex.describe())
		b.startFailed(in, serr)
		if in.cur == nil {
			b.scheduleRestart(in, p)
		}
	}
}

// scheduleRestart arms the backoff timer after a failed run of p (nil if
// it never started).
func (b *Backend) scheduleRestart(in *instance, p *proc) {
	if b.stopping {
		return
	}
	now := b.clock.Now()
	if p != nil && p.ready && now.Sub(p.readyAt) >= HealthyRun {
		in.failures = 0
	}
	in.failures++
	in.restarts++
	d := backoffDelay(b.cfg.Restart.MinDelay, b.cfg.Restart.MaxDelay, in.failures, jitter())
	in.state = StateBackoff
	if in.failures >= CrashLoopAfter {
		in.state = StateFailed
	}
	in.backoff++
	in.nextStart = now.Add(d)
	b.log.Warn("restarting after backoff", "instance", in.idx, "delay", d, "failures", in.failures, "state", in.state)
	b.after(d, event{kind: evBackoff, in: in, gen: in.backoff})
}

// hasLive reports whether a process of in is not gone yet.
func (b *Backend) hasLive(in *instance) bool {
	for p := range b.procs {
		if p.inst == in {
			return true
		}
	}
	return false
}

// stopProc starts the staged stop of p's group: stop_signal, then SIGKILL
// after stop_timeout, then give up after killWait.
func (b *Backend) stopProc(p *proc) {
	if p.gone || p.stopSent {
		return
	}
	p.stopSent = true
	p.cancelProbe()
	var err error
	if b.srv.stopMain && !p.exited {
		err = syscall.Kill(p.mainPID, b.cfg.StopSignal)
	} else {
		err = signalGroup(p.pid, b.cfg.StopSignal)
	}
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		b.log.Error("stop signal failed", "pid", p.pid, "error", err)
	}
	b.after(b.cfg.StopTimeout, event{kind: evKill, p: p})
}

// beginStop stops everything; Run returns once every group is gone.
func (b *Backend) beginStop() {
	if b.stopping {
		return
	}
	b.stopping = true
	b.log.Info("stopping")
	for _, in := range b.insts {
		b.unwatch(in)
		for _, o := range in.od.idleOps {
			o.finish(fmt.Errorf("backend %q: %w", b.cfg.Name, ErrStopped))
		}
		in.od.idleOps = nil
		in.backoff++
		in.state = StateStopping
		in.spawnWhenGone = false
		in.finishOps(fmt.Errorf("backend %q: %w", b.cfg.Name, ErrStopped))
		in.cur, in.next = nil, nil
	}
	for p := range b.procs {
		b.stopProc(p)
	}
}

// replace starts a new process for in next to the current one; it takes
// over once ready. A restart already under way absorbs this one.
func (b *Backend) replace(in *instance) {
	switch {
	case in.next != nil || in.spawnWhenGone:
		// The ongoing replacement answers this call too.
	case in.cur == nil:
		// Backing off or failed: start now, from a clean slate.
		in.backoff++
		in.failures = 0
		b.spawn(in)
	case !in.cur.ready:
		// Still starting: its readiness answers the call.
	case b.cfg.Handoff == config.HandoffSelf:
		// Two processes cannot bind one path: stop, then start.
		old := in.cur
		in.cur = nil
		in.spawnWhenGone = true
		in.state = StateStarting
		b.stopProc(old)
	default:
		p, err := b.startProcess(in)
		if err != nil {
			in.lastErr = err.Error()
			b.startFailed(in, b.startError(in, nil, nil, err))
			return
		}
		in.next = p
		b.track(p)
	}
}

// reloadSignal sends reload_signal to each instance's main process.
func (b *Backend) reloadSignal(reply chan error) {
	var errs []error
	for _, in := range b.insts {
		switch {
		case in.state == StateIdle:
			// Nothing runs; the next process reads the config afresh.
		case in.cur == nil || !in.cur.ready:
			errs = append(errs, fmt.Errorf("backend %q instance %d is not running and ready (state %s); reload it once it is, or restart it", b.cfg.Name, in.idx, in.state))
		default:
			if err := syscall.Kill(in.cur.mainPID, b.cfg.ReloadSignal); err != nil {
				errs = append(errs, fmt.Errorf("sending %s to process %d: %w", unix.SignalName(b.cfg.ReloadSignal), in.cur.mainPID, err))
			} else {
				b.log.Info("reload signal sent", "instance", in.idx, "pid", in.cur.mainPID, "signal", unix.SignalName(b.cfg.ReloadSignal))
			}
		}
	}
	b.answer(reply, errors.Join(errs...))
}
