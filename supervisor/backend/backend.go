// Package backend supervises one configured backend: it starts each
// instance's process on its already-listening socket, probes it until
// ready, restarts it with backoff when it crashes, replaces it without
// dropping a request, and stops its whole process group.
//
// Invariant: each Backend has exactly one owner goroutine (Run); every
// process, timer and probe result reaches it as an event, every caller
// request as a message carrying a reply channel, so starts, stops and
// restarts never race. Every process runs in its own process group, and Run
// returns only after each group it started has no live process left (or
// survived SIGKILL, which Run reports as an error).
package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/shim"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// Socket is a listening socket owned by the supervisor (sockets.Listener).
// A missing socket is a nil interface, never a nil pointer inside one.
type Socket interface {
	// File is the listening socket; the backend passes its fd to children.
	File() *os.File
	// Path is the socket's path in socket_dir.
	Path() string
	// SetBlocking clears O_NONBLOCK on the shared file description; it is
	// called before every spawn.
	SetBlocking() error
	// EnsurePath restores the path if a backend unlinked it; it is called
	// after every child exit.
	EnsurePath() (restored bool, err error)
}

// The daemon hands its listeners over as Sockets.
var _ Socket = (*sockets.Listener)(nil)

// Options configures a Backend; zero values get defaults.
type Options struct {
	// Logger is named after the backend by New; default a null logger.
	Logger hclog.Logger
	// Executable is re-executed as "exec-shim"; default os.Executable().
	Executable string
	// StateDir is the parent of the backend's private directory
	// (StateDir/<name>) for generated files such as PHP-FPM pool configs;
	// default DefaultStateDir. Never inside socket_dir.
	StateDir string
	// FixUp sets owner, group, mode and label of a socket a "self" backend
	// created. It runs on a helper goroutine once the socket exists, before
	// the readiness probe. nil skips it.
	FixUp func(config.Socket) error
	// Clock defaults to the real clock.
	Clock Clock
	// Environ is the environment the allow-list filters; default os.Environ().
	Environ []string
}

// DefaultStateDir is the default Options.StateDir.
const DefaultStateDir = "/run/sockvisor-state"

// Errors callers can test with errors.Is.
var (
	// ErrStopped means the backend was stopped (or Run has returned).
	ErrStopped = errors.New("backend stopped")
	// ErrNotReady means a process did not become ready in time.
	ErrNotReady = errors.New("backend not ready")
)

// State is a lifecycle state.
type State string

// States, as shown by `sockvisor status`.
const (
	StateStarting State = "starting"
	StateReady    State = "ready"
	StateBackoff  State = "backoff"
	StateFailed   State = "failed" // crash loop; still retried every restart.max_delay
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
)

// Exit describes how a process ended. Code is the exit status, or 128+N for
// death by signal N, as shells report it.
type Exit struct {
	PID    int       `json:"pid"`
	Code   int       `json:"code"`
	Signal string    `json:"signal,omitempty"`
	At     time.Time `json:"at"`
}

// InstanceStatus is one instance (one socket, one process).
type InstanceStatus struct {
	Instance  int        `json:"instance"`
	Socket    string     `json:"socket"`
	State     State      `json:"state"`
	PID       int        `json:"pid,omitempty"`
	Ready     bool       `json:"ready"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// Uptime is seconds since StartedAt, computed when Status is called.
	Uptime float64 `json:"uptime_seconds,omitempty"`
	// Restarts counts restarts after crashes and failed starts.
	Restarts  int    `json:"restarts"`
	LastExit  *Exit  `json:"last_exit,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// NextStart is when a backed-off instance starts again.
	NextStart *time.Time `json:"next_start,omitempty"`
	// StatusText is the last STATUS= the backend sent over sd_notify.
	StatusText string `json:"status_text,omitempty"`
	// MainPID is the main process the backend named with MAINPID=, when
	// it is not PID; signals go to it.
	MainPID int `json:"main_pid,omitempty"`
	// Notified: the process sent READY=1.
	Notified bool `json:"notified,omitempty"`
	// Reloading: the process sent RELOADING=1 and no READY=1 since.
	Reloading bool `json:"reloading,omitempty"`
	// LastRunAt is when an on-demand instance's last process ended.
	LastRunAt *time.Time `json:"last_ran_at,omitempty"`
}

// Status is a snapshot of the whole backend. Its top-level fields summarize
// the instances: the worst state, instance 0's pid and start, the sum of
// restarts, the latest exit and error.
type Status struct {
	Name      string     `json:"name"`
	State     State      `json:"state"`
	PID       int        `json:"pid,omitempty"`
	Sockets   []string   `json:"sockets"`
	Ready     bool       `json:"ready"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	Uptime    float64    `json:"uptime_seconds,omitempty"`
	Restarts  int        `json:"restarts"`
	LastExit  *Exit      `json:"last_exit,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	// Start is the backend's start mode, "eager" or "on-demand".
	Start string `json:"start,omitempty"`
	// LastRunAt is the latest LastRunAt of the instances.
	LastRunAt *time.Time       `json:"last_ran_at,omitempty"`
	Instances []InstanceStatus `json:"instances"`
}

// Backend supervises the processes of one configured backend.
type Backend struct {
	cfg       *config.Backend
	log       hclog.Logger
	clock     Clock
	exe       string
	stateDir  string
	fixUp     func(config.Socket) error
	parentEnv []string
	srv       serverFlags

	reqs    chan request
	events  chan event
	quit    chan struct{} // closed when the owner loop ends; helpers stop
	done    chan struct{} // closed when Run has returned
	started atomic.Bool
	helpers sync.WaitGroup // timers, probes, reapers, notify reader
	output  sync.WaitGroup // output forwarders
	strays  strayTracker   // open output pipes, to find escaped processes (strays.go)

	mu      sync.Mutex // guards the fields below
	status  Status
	changed chan struct{} // closed and replaced on every status change
	ready   chan struct{} // closed the first time every instance is ready
	// startErr is the latest failed start of an instance never ready yet;
	// WaitReady returns it.
	startErr *StartError

	// Owner goroutine only.
	insts       []*instance
	procs       map[*proc]struct{} // not yet gone
	stopping    bool
	stopReplies []chan error
	notify      *notifySocket
	sawReady    bool // some process of this backend sent READY=1
	acct        shim.Account
	runErr      error
	outbox      []pendingReply
	od          odStats // on-demand counters (ondemand.go)
}

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

// op is one Restart or Reload call spanning every instance.
type op struct {
	b         *Backend
	reply     chan error
	remaining int
	errs      []error
}

func (o *op) finish(err error) {
	if err != nil {
		o.errs = append(o.errs, err)
	}
	o.remaining--
	if o.remaining == 0 {
		o.b.answer(o.reply, errors.Join(o.errs...))
	}
}

// answer queues a reply; the owner sends it once the status it changed is
// published, so a caller that sees Restart return sees the new pid.
func (b *Backend) answer(reply chan error, err error) {
	b.outbox = append(b.outbox, pendingReply{reply, err})
}

type pendingReply struct {
	ch  chan error
	err error
}

// flush sends the queued replies; each channel is buffered and used once.
func (b *Backend) flush() {
	for _, r := range b.outbox {
		r.ch <- r.err
	}
	b.outbox = nil
}

type reqKind int

const (
	reqRestart reqKind = iota
	reqReload
	reqStop
	reqStart
	reqIdle
)

type request struct {
	kind  reqKind
	reply chan error
}

type evKind int

const (
	evExited evKind = iota
	evGone
	evProbed
	evNotify
	evReadyDeadline
	evBackoff
	evKill
	evKillDeadline
	evWake      // a connection waits on an idle instance's socket
	evIdleCheck // sample a running on-demand instance's connections
)

type event struct {
	kind evKind
	p    *proc
	in   *instance
	gen  uint64
	ws   syscall.WaitStatus
	err  error
	pid  int
	vars map[string]string
}

// Timing constants not in the config.
const (
	// probeInterval separates readiness probes.
	probeInterval = 100 * time.Millisecond
	// probeAttempt bounds one probe, in real time.
	probeAttempt = 2 * time.Second
	// killWait bounds the wait for a group after SIGKILL.
	killWait = 5 * time.Second
	// outputWait bounds the wait for output forwarders once every group is
	// gone (a process outside the group may hold the pipe).
	outputWait = 2 * time.Second
)

// New prepares a supervisor for b; socks are its listening sockets,
// instance 0 first (nil for handoff self, which binds b.Sockets itself).
// Nothing starts until Run. It fails when sockvisor's own executable cannot
// be found for the exec shim, or when an instance that needs a listening
// socket has none.
func New(b *config.Backend, socks []Socket, opts Options) (*Backend, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding sockvisor's executable for the exec shim: %w", err)
		}
		opts.Executable = exe
	}
	be := &Backend{
		cfg:       b,
		log:       opts.Logger.Named(b.Name),
		clock:     opts.Clock,
		exe:       opts.Executable,
		stateDir:  filepath.Join(opts.StateDir, b.Name),
		fixUp:     opts.FixUp,
		parentEnv: opts.Environ,
		srv:       servers[b.Preset],
		reqs:      make(chan request),
		events:    make(chan event, 16),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
		ready:     make(chan struct{}),
		procs:     map[*proc]struct{}{},
	}
	for i, s := range b.Sockets {
		in := &instance{idx: i, spec: s, path: s.Path, state: StateStopped, slot: newProbeSlot()}
		if b.Handoff != config.HandoffSelf {
			if i >= len(socks) || socks[i] == nil {
				return nil, fmt.Errorf("backend %q has no listening socket for instance %d (%s); the daemon must create it before starting the backend", b.Name, i, s.Path)
			}
			in.sock = socks[i]
			in.path = socks[i].Path()
		}
		be.insts = append(be.insts, in)
	}
	be.acct = account(b.UID, b.User)
	be.publish()
	return be, nil
}

func (b *Backend) openNotify() (*notifySocket, error) {
	if err := b.ensureStateDir(); err != nil {
		return nil, err
	}
	return listenNotify(b.stateDir, b.cfg, b.log)
}

// account looks up the name and home of uid for HOME, USER and LOGNAME.
func account(uid int, name string) shim.Account {
	acct := shim.Account{Name: name, Home: "/"}
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		acct.Name, acct.Home = u.Username, u.HomeDir
	}
	return acct
}

// workDir is directory, else the user's home if it exists, else /.
func (b *Backend) workDir() string {
	if b.cfg.Directory != "" {
		return b.cfg.Directory
	}
	if fi, err := os.Stat(b.acct.Home); err == nil && fi.IsDir() {
		return b.acct.Home
	}
	return "/"
}

// Name is the backend's name.
func (b *Backend) Name() string { return b.cfg.Name }

// Run is the owner goroutine: it starts every instance and supervises
// until ctx ends or Stop is called, then stops every process group and
// returns. It returns nil after a clean stop. Run may be called once.
func (b *Backend) Run(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return fmt.Errorf("backend %q: Run called twice", b.cfg.Name)
	}
	defer close(b.done)
	if b.cfg.Notify {
		n, err := b.openNotify()
		if err != nil {
			b.log.Warn("no notify socket; readiness falls back to the probe alone", "error", err)
		} else {
			b.notify = n
			b.helpers.Add(1)
			go func() {
				defer b.helpers.Done()
				n.read(func(pid int, vars map[string]string) {
					b.send(event{kind: evNotify, pid: pid, vars: vars})
				})
			}()
		}
	}
	for _, in := range b.insts {
		if b.cfg.OnDemand() && in.sock != nil {
			b.goIdle(in)
		} else {
			b.spawn(in)
		}
	}
	b.publish()

	ctxDone := ctx.Done()
	for !b.stopping || len(b.procs) > 0 {
		select {
		case ev := <-b.events:
			b.handle(ev)
		case r := <-b.reqs:
			b.request(r)
		case <-ctxDone:
			ctxDone = nil
			b.beginStop()
		}
		b.publish()
		b.flush()
	}

	for _, in := range b.insts {
		b.unwatch(in)
	}
	close(b.quit)
	if b.notify != nil {
		b.notify.Close()
	}
	b.helpers.Wait()
	b.stopStrays() // setsid'd processes still holding the socket or pipes
	for _, in := range b.insts {
		in.slot.drain()
	}
	b.waitOutput()
	for _, r := range b.stopReplies {
		b.answer(r, b.runErr)
	}
	b.publish()
	b.flush()
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	return b.runErr
}

func (b *Backend) waitOutput() {
	done := make(chan struct{})
	go func() { b.output.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputWait):
		b.log.Warn("a process outside the backend's group still holds its output pipe", "pids", b.strayPIDs())
	}
}

// send delivers an event to the owner unless it has finished.
func (b *Backend) send(ev event) {
	select {
	case b.events <- ev:
	case <-b.quit:
	}
}

// after delivers ev after d on the injected clock; a timer tied to a
// process ends early once that process is gone.
func (b *Backend) after(d time.Duration, ev event) {
	var gone chan struct{}
	if ev.p != nil {
		gone = ev.p.goneCh
	}
	b.helpers.Add(1)
	go func() {
		defer b.helpers.Done()
		select {
		case <-b.clock.After(d):
			b.send(ev)
		case <-gone:
		case <-b.quit:
		}
	}()
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

// startFailed reports a failed start attempt to the calls waiting on in
// and, while in has never been ready, to WaitReady.
func (b *Backend) startFailed(in *instance, err *StartError) {
	if !in.everReady {
		in.startErr = err
	}
	in.finishOps(err)
}

// track registers p and starts its readiness probe.
func (b *Backend) track(p *proc) {
	b.procs[p] = struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancelProbe = cancel
	b.helpers.Add(1)
	go b.readiness(ctx, p, p.inst.path, p.inst.spec, p.deadline)
}

// finishOps completes every call waiting on in.
func (in *instance) finishOps(err error) {
	for _, o := range in.ops {
		o.finish(err)
	}
	in.ops = nil
}

// handle applies one event. Owner only.
func (b *Backend) handle(ev event) {
	p := ev.p
	switch ev.kind {
	case evExited:
		b.exited(p, ev.ws)
	case evGone:
		p.gone = true
		close(p.goneCh)
		delete(b.procs, p)
		in := p.inst
		if in.spawnWhenGone && !b.stopping && !b.hasLive(in) {
			in.spawnWhenGone = false
			b.spawn(in)
		}
	case evProbed:
		if p.exited || p.ready || (p != p.inst.cur && p != p.inst.next) {
			return
		}
		if ev.err != nil {
			b.notReady(p, ev.err)
			return
		}
		p.probeOK = true
		b.maybeReady(p)
		if !p.ready {
			// The probe passed but READY=1 is still due.
			b.after(p.deadline.Sub(b.clock.Now()), event{kind: evReadyDeadline, p: p})
		}
	case evReadyDeadline:
		if !p.ready && !p.exited && (p == p.inst.cur || p == p.inst.next) {
			b.notReady(p, fmt.Errorf("%w: process %d answered the probe but sent no READY=1 within ready.timeout %s", ErrNotReady, p.pid, b.cfg.Ready.Timeout))
		}
	case evNotify:
		b.notified(ev.pid, ev.vars)
	case evBackoff:
		in := ev.in
		if ev.gen == in.backoff && in.cur == nil && in.next == nil && !b.stopping {
			if b.cfg.Handoff == config.HandoffSelf && b.hasLive(in) {
				in.spawnWhenGone = true
			} else {
				b.spawn(in)
			}
		}
	case evKill:
		if !p.gone && !p.killSent {
			p.killSent = true
			b.log.Warn("stop timeout expired; killing the process group", "instance", p.inst.idx, "pid", p.pid, "members", groupMembers(p.pid))
			if err := signalGroup(p.pid, syscall.SIGKILL); err != nil {
				b.log.Error("kill failed", "error", err)
			}
			b.after(killWait, event{kind: evKillDeadline, p: p})
		}
	case evWake:
		in := ev.in
		if ev.gen == in.od.gen && in.state == StateIdle && !b.stopping {
			in.od.unwatch = nil
			b.wake(in, "a connection is waiting")
		}
	case evIdleCheck:
		b.idleCheck(ev.in, ev.gen)
	case evKillDeadline:
		if !p.gone {
			members := groupMembers(p.pid)
			err := fmt.Errorf("process group %d of backend %q still has processes %v %s after SIGKILL; they are stuck in the kernel, check them with ps", p.pid, b.cfg.Name, members, killWait)
			b.log.Error("process group survived SIGKILL", "pid", p.pid, "members", members)
			b.runErr = errors.Join(b.runErr, err)
			p.abandoned = true
			delete(b.procs, p)
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

func exitOf(pid int, ws syscall.WaitStatus, at time.Time) *Exit {
	ex := &Exit{PID: pid, At: at, Code: ws.ExitStatus()}
	if ws.Signaled() {
		ex.Code = 128 + int(ws.Signal())
		ex.Signal = unix.SignalName(ws.Signal())
	}
	return ex
}

func (e *Exit) describe() string {
	if e.Signal != "" {
		return fmt.Sprintf("was killed by %s", e.Signal)
	}
	return fmt.Sprintf("exited with status %d", e.Code)
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

// request handles a caller's request. Owner only.
func (b *Backend) request(r request) {
	if r.kind == reqStop {
		b.stopReplies = append(b.stopReplies, r.reply)
		b.beginStop()
		return
	}
	if b.stopping {
		b.answer(r.reply, fmt.Errorf("backend %q is stopping: %w", b.cfg.Name, ErrStopped))
		return
	}
	switch {
	case r.kind == reqStart:
		b.startNow(r.reply)
		return
	case r.kind == reqIdle:
		b.idleNow(r.reply)
		return
	case b.allIdle():
		b.answer(r.reply, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrIdle))
		return
	}
	if r.kind == reqReload && !b.cfg.ReloadReplace {
		b.reloadSignal(r.reply)
		return
	}
	o := &op{b: b, reply: r.reply, remaining: len(b.insts)}
	if o.remaining == 0 {
		b.answer(r.reply, nil)
		return
	}
	for _, in := range b.insts {
		if in.state == StateIdle || (in.cur != nil && in.cur.idleStop) {
			o.finish(nil) // the next connection starts the new process
			continue
		}
		in.ops = append(in.ops, o)
		b.replace(in)
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

// call sends a request and waits for its reply.
func (b *Backend) call(ctx context.Context, kind reqKind) error {
	r := request{kind: kind, reply: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-b.done:
		if kind == reqStop {
			return nil
		}
		return fmt.Errorf("backend %q: %w", b.cfg.Name, ErrStopped)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart replaces every instance's process without dropping a request:
// a new process starts on the same socket, and the old one is stopped
// once the new one is ready (both accept meanwhile). For handoff self the
// old process stops first; connections fail in between. A backend that is
// backing off or failed is started at once. It returns nil when every
// instance is replaced. Otherwise it returns as soon as each instance's
// attempt is decided: the moment a new process exits, not after
// ready.timeout. Each failed instance contributes a *StartError (joined
// with errors.Join when several fail; use errors.As) naming the backend,
// the exit status and the new process's last output lines; the old
// process of that instance keeps serving. ctx ending returns ctx.Err().
func (b *Backend) Restart(ctx context.Context) error { return b.call(ctx, reqRestart) }

// Reload sends reload_signal to each instance's main process, or replaces
// it as Restart does (same errors) when reload_signal is "replace".
func (b *Backend) Reload(ctx context.Context) error { return b.call(ctx, reqReload) }

// Stop stops every process group (stop_signal, stop_timeout, SIGKILL) and
// returns when they are gone; Run then returns. Stopping a backend whose
// Run has returned is a no-op.
func (b *Backend) Stop(ctx context.Context) error { return b.call(ctx, reqStop) }

// Done is closed when Run has returned.
func (b *Backend) Done() <-chan struct{} { return b.done }

// Ready is closed the first time every instance is ready.
func (b *Backend) Ready() <-chan struct{} { return b.ready }

// WaitReady returns nil once every instance is ready, or idle (an
// on-demand instance waiting for its first connection). It does not wait
// for ctx when a start fails: while an instance has never been ready, the
// failure of a start attempt of it (the process exited, or was not ready
// within ready.timeout, or could not be started) makes WaitReady return at
// once with that attempt's *StartError, which wraps ErrNotReady and
// carries the exit status and the last output lines (use errors.As). The
// backend keeps retrying under its restart policy; stop it if the failure
// is final for you. Otherwise it returns an error wrapping ctx.Err() when
// ctx ends first (naming the last problem), or ErrStopped once the backend
// stopped. This is a contract the daemon relies on.
func (b *Backend) WaitReady(ctx context.Context) error {
	for {
		b.mu.Lock()
		st, ch, serr := b.status, b.changed, b.startErr
		b.mu.Unlock()
		if st.Ready || st.Serving() {
			return nil
		}
		if serr != nil {
			return serr
		}
		select {
		case <-ch:
		case <-b.done:
			return fmt.Errorf("backend %q: %w", b.cfg.Name, ErrStopped)
		case <-ctx.Done():
			if st.LastError != "" {
				return fmt.Errorf("backend %q is %s (%s): %w", b.cfg.Name, st.State, st.LastError, ctx.Err())
			}
			return fmt.Errorf("backend %q is %s: %w", b.cfg.Name, st.State, ctx.Err())
		}
	}
}

// Status returns a snapshot; it never blocks on the owner goroutine.
func (b *Backend) Status() Status {
	b.mu.Lock()
	st := b.status
	b.mu.Unlock()
	st.Instances = append([]InstanceStatus(nil), st.Instances...)
	now := b.clock.Now()
	for i := range st.Instances {
		if t := st.Instances[i].StartedAt; t != nil {
			st.Instances[i].Uptime = now.Sub(*t).Seconds()
		}
	}
	if st.StartedAt != nil {
		st.Uptime = now.Sub(*st.StartedAt).Seconds()
	}
	return st
}

// stateRank orders states from best to worst for the summary.
var stateRank = map[State]int{StateReady: 0, StateIdle: 1, StateStarting: 2, StateBackoff: 3, StateFailed: 4, StateStopping: 5, StateStopped: 6}

// publish snapshots the owner's state for Status and WaitReady.
func (b *Backend) publish() {
	st := Status{Name: b.cfg.Name, State: StateReady, Ready: len(b.insts) > 0, Start: b.cfg.Start}
	running := b.started.Load() && !b.stopping
	select {
	case <-b.quit:
		running = false
	default:
	}
	for _, in := range b.insts {
		is := InstanceStatus{Instance: in.idx, Socket: in.path, State: in.state, Restarts: in.restarts, LastExit: in.lastExit, LastError: in.lastErr}
		if !running {
			is.State = StateStopped
			if b.stopping && len(b.procs) > 0 {
				is.State = StateStopping
			}
		}
		if p := in.cur; p != nil && running {
			is.PID = p.pid
			is.Ready = p.ready
			is.StatusText = p.statusText
			is.Notified = p.notified
			is.Reloading = p.reloading
			if p.mainPID != p.pid {
				is.MainPID = p.mainPID
			}
			t := p.started
			is.StartedAt = &t
		}
		if !in.od.lastRun.IsZero() {
			t := in.od.lastRun
			is.LastRunAt = &t
			if st.LastRunAt == nil || t.After(*st.LastRunAt) {
				st.LastRunAt = &t
			}
		}
		if running && (in.state == StateBackoff || in.state == StateFailed) && in.cur == nil {
			t := in.nextStart
			is.NextStart = &t
		}
		st.Sockets = append(st.Sockets, in.path)
		st.Restarts += in.restarts
		st.Ready = st.Ready && is.Ready
		if stateRank[is.State] > stateRank[st.State] {
			st.State = is.State
		}
		if is.LastExit != nil && (st.LastExit == nil || is.LastExit.At.After(st.LastExit.At)) {
			st.LastExit = is.LastExit
		}
		if is.LastError != "" {
			st.LastError = is.LastError
		}
		st.Instances = append(st.Instances, is)
	}
	if len(st.Instances) > 0 {
		st.PID, st.StartedAt = st.Instances[0].PID, st.Instances[0].StartedAt
	}
	if len(st.Instances) == 0 {
		st.State = StateStopped
	}
	var serr *StartError
	for _, in := range b.insts {
		if in.startErr != nil && (serr == nil || serr.Instance > in.idx) {
			serr = in.startErr
		}
	}
	b.mu.Lock()
	b.status = st
	b.startErr = serr
	close(b.changed)
	b.changed = make(chan struct{})
	if st.Ready {
		select {
		case <-b.ready:
		default:
			close(b.ready)
		}
	}
	b.mu.Unlock()
}
