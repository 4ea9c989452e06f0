package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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

	cur  *process // serving, or starting
	next *process // replacement being started
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

// process is one started process and its process group (pgid == pid).
// Only the owner goroutine touches its fields, except noPark.
type process struct {
	inst     *instance
	pid      int
	started  time.Time
	deadline time.Time // readiness must come before this
	readyAt  time.Time // when it was proven ready; zero until then

	// phase is where sockvisor's handling of it stands; see phase. The
	// flags below are not phases: each is a fact that can hold in several
	// phases, or evidence that moves it from one to the next.
	phase phase
	// probeOK and notified are the readiness evidence maybeReady weighs:
	// the protocol probe answered, and READY=1 came from its group. They
	// arrive in either order, and a process that is already stopping can
	// still earn them.
	probeOK  bool
	notified bool
	// exited: the main process was reaped. It can happen in any phase (a
	// crash while starting or serving, an exit after stop_signal or
	// SIGKILL) and the rest of the group may live on, so the group still
	// goes through stopping and killing; it decides where signals go (the
	// main process or the group) and that readiness evidence no longer
	// counts.
	exited bool
	// idleStop is why it is stopping (on-demand idleness): its exit makes
	// the instance idle instead of restarting it.
	idleStop bool
	// reloading: the backend sent RELOADING=1 and no READY=1 since. It is
	// shown by status; sockvisor's handling does not depend on it.
	reloading bool
	// noPark: close the pending probe connection instead of keeping it
	// for the next prober (set by the owner before it cancels the probe;
	// read by the probe goroutine).
	noPark atomic.Bool

	statusText  string // last STATUS= it sent
	mainPID     int    // where signals go: pid, or what MAINPID= named
	cancelProbe context.CancelFunc
	goneCh      chan struct{} // closed when gone; ends its timers early

	tail    outputTail     // last output lines, for StartError
	outputs sync.WaitGroup // its two output forwarders
	outDone chan struct{}  // closed when both forwarders reached EOF
}

// phase is where the owner's handling of a process stands. It only moves
// forward, through setPhase:
//
//	starting ──► ready
//	    │          │
//	    └──────────┴──► stopping ──► killing ──► abandoned
//	                       │            │            │
//	                       └────────────┴──► gone ◄──┘
//
// A process that crashes while starting or ready is stopped at once (its
// group may hold workers), so it always passes through stopping.
type phase int

const (
	// phaseStarting (the zero value): spawned, not proven ready yet; the
	// probe runs.
	phaseStarting phase = iota
	// phaseReady: proven ready (see maybeReady); it serves its socket.
	phaseReady
	// phaseStopping: stop_signal sent; SIGKILL follows after stop_timeout.
	phaseStopping
	// phaseKilling: SIGKILL sent to the group; given up on after killWait.
	phaseKilling
	// phaseAbandoned: the group survived SIGKILL for killWait; Run no
	// longer waits for it and reports it as an error.
	phaseAbandoned
	// phaseGone: reaped, and no live process left in its group.
	phaseGone
)

// phaseMoves lists the legal moves from each phase.
var phaseMoves = map[phase][]phase{
	phaseStarting:  {phaseReady, phaseStopping},
	phaseReady:     {phaseStopping},
	phaseStopping:  {phaseKilling, phaseGone},
	phaseKilling:   {phaseAbandoned, phaseGone},
	phaseAbandoned: {phaseGone}, // the kernel let go of it after all
}

func (ph phase) String() string {
	switch ph {
	case phaseStarting:
		return "starting"
	case phaseReady:
		return "ready"
	case phaseStopping:
		return "stopping"
	case phaseKilling:
		return "killing"
	case phaseAbandoned:
		return "abandoned"
	case phaseGone:
		return "gone"
	}
	return "phase(" + strconv.Itoa(int(ph)) + ")"
}

// setPhase moves p to next. A move phaseMoves does not list is a bug in
// this file: it is logged, and made anyway.
func (b *Backend) setPhase(p *process, next phase) {
	if !slices.Contains(phaseMoves[p.phase], next) {
		b.log.Error("illegal process phase transition; this is a bug in sockvisor", "instance", p.inst.idx, "pid", p.pid, "from", p.phase, "to", next)
	}
	b.log.Debug("process phase", "instance", p.inst.idx, "pid", p.pid, "from", p.phase, "to", next)
	p.phase = next
}

// wasReady reports whether p was proven ready at some point; it stays
// true while p stops.
func (p *process) wasReady() bool { return !p.readyAt.IsZero() }

// stopSent reports whether stop_signal went out: every phase from
// stopping on.
func (p *process) stopSent() bool { return p.phase >= phaseStopping }

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
func (b *Backend) track(p *process) {
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

// probed handles the outcome of p's readiness probe.
func (b *Backend) probed(p *process, err error) {
	if p.exited || p.wasReady() || (p != p.inst.cur && p != p.inst.next) {
		return
	}
	if err != nil {
		b.notReady(p, err)
		return
	}
	p.probeOK = true
	b.maybeReady(p)
	if !p.wasReady() {
		// The probe passed but READY=1 is still due.
		b.after(p.deadline.Sub(b.clock.Now()), event{kind: evReadyDeadline, p: p})
	}
}

// readyDeadline gives up on p if the READY=1 it owes after passing the
// probe has not come by its deadline.
func (b *Backend) readyDeadline(p *process) {
	if !p.wasReady() && !p.exited && (p == p.inst.cur || p == p.inst.next) {
		b.notReady(p, fmt.Errorf("%w: process %d answered the probe but sent no READY=1 within ready.timeout %s", ErrNotReady, p.pid, b.cfg.Ready.Timeout))
	}
}

// maybeReady promotes p once its own group answered the probe (see
// ready.go) and, if the backend notifies, READY=1 arrived from that group.
// Presets that notify must send it; a generic backend is expected to once
// any of its processes has. READY=1 alone is never enough: gunicorn's
// arbiter sends it before its workers import the app.
func (b *Backend) maybeReady(p *process) {
	if p.wasReady() || !p.probeOK || (b.notify != nil && (b.srv.notifies || b.sawReady) && !p.notified) {
		return
	}
	p.readyAt = b.clock.Now()
	p.tail.proven()
	if p.phase == phaseStarting {
		b.setPhase(p, phaseReady)
	}
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
	var p *process
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
func (b *Backend) setMainPID(p *process, v string) {
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
func (b *Backend) notReady(p *process, err error) {
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
func (b *Backend) exited(p *process, ws syscall.WaitStatus) {
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
	if p.stopSent() && b.srv.stopMain {
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
		if !p.wasReady() {
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
func (b *Backend) scheduleRestart(in *instance, p *process) {
	if b.stopping {
		return
	}
	now := b.clock.Now()
	if p != nil && p.wasReady() && now.Sub(p.readyAt) >= HealthyRun {
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

// restartDue starts in again when the backoff timer of generation gen
// fires, unless something else started or stopped it meanwhile. A
// self-binding instance waits until its last process is gone.
func (b *Backend) restartDue(in *instance, gen uint64) {
	if gen != in.backoff || in.cur != nil || in.next != nil || b.stopping {
		return
	}
	if b.cfg.Handoff == config.HandoffSelf && b.hasLive(in) {
		in.spawnWhenGone = true
	} else {
		b.spawn(in)
	}
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
func (b *Backend) stopProc(p *process) {
	if p.stopSent() {
		return
	}
	b.setPhase(p, phaseStopping)
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

// kill sends SIGKILL to p's group once stop_timeout has passed since its
// stop signal.
func (b *Backend) kill(p *process) {
	if p.phase != phaseStopping {
		return
	}
	b.setPhase(p, phaseKilling)
	b.log.Warn("stop timeout expired; killing the process group", "instance", p.inst.idx, "pid", p.pid, "members", procfs.GroupMembers(p.pid))
	if err := signalGroup(p.pid, syscall.SIGKILL); err != nil {
		b.log.Error("kill failed", "error", err)
	}
	b.after(killWait, event{kind: evKillDeadline, p: p})
}

// abandon gives up on p's group when it survived SIGKILL for killWait:
// Run stops waiting for it and reports it.
func (b *Backend) abandon(p *process) {
	if p.phase != phaseKilling {
		return
	}
	members := procfs.GroupMembers(p.pid)
	err := fmt.Errorf("process group %d of backend %q still has processes %v %s after SIGKILL; they are stuck in the kernel, check them with ps", p.pid, b.cfg.Name, members, killWait)
	b.log.Error("process group survived SIGKILL", "pid", p.pid, "members", members)
	b.runErr = errors.Join(b.runErr, err)
	b.setPhase(p, phaseAbandoned)
	delete(b.procs, p)
}

// gone handles the end of p's whole group; a self-binding instance waiting
// for its path to be free starts its next process now.
func (b *Backend) gone(p *process) {
	b.setPhase(p, phaseGone)
	close(p.goneCh)
	delete(b.procs, p)
	in := p.inst
	if in.spawnWhenGone && !b.stopping && !b.hasLive(in) {
		in.spawnWhenGone = false
		b.spawn(in)
	}
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
	case !in.cur.wasReady():
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
		case in.cur == nil || !in.cur.wasReady():
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
