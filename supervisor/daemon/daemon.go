package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/errmark"
	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/notify"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// ApacheFactory builds the Apache manager for a config; tests point it at a
// private Apache.
type ApacheFactory func(cfg *config.Config, log hclog.Logger) (*apache.Manager, error)

func defaultApache(cfg *config.Config, log hclog.Logger) (*apache.Manager, error) {
	return apache.New(cfg, log)
}

// Options configures a Daemon. Zero values are filled from the environment.
type Options struct {
	ConfigPath string
	Log        hclog.Logger
	// Executable is re-executed as the exec shim; default os.Executable().
	Executable string
	// StateDir holds generated backend files (PHP-FPM pool configs).
	StateDir string
	// Apache builds the Apache manager; nil detects the layout from the config.
	Apache ApacheFactory
}

// Daemon is one running sockvisor.
type Daemon struct {
	opts   Options
	log    hclog.Logger
	notify *notify.Notifier

	// reloadMu serializes start, reloads, restarts and shutdown against
	// each other.
	reloadMu sync.Mutex
	// closing is set once stopping began; later requests are refused.
	closing atomic.Bool
	// stopCtx ends when the daemon stops; restarts and reloads in flight
	// are cut short by it.
	stopCtx context.Context
	// bg tracks rollbacks that run alongside shutdown.
	bg sync.WaitGroup
	// state writes the state file; nil until housekeeping started. Only
	// Run's goroutine uses it (housekeep, then shutdown once it stopped).
	state *stateWriter

	mu       sync.Mutex // guards the fields below
	cfg      *config.Config
	socks    map[string]*sockets.Listener // by socket name
	backends map[string]*supervised       // by backend name
	// starting are the backends start-up started and waits for, until it
	// moves them to backends; status shows them meanwhile.
	starting []*supervised
	apache   *apache.Manager
	// lastReloadErr is shown in status until a reload succeeds.
	lastReloadErr string
	phase         string
	applied       applyRecord // the last Apache apply, for status

	counts counters
}

// supervised is one started backend: its supervisor (which owns the
// backend's OS processes) and the goroutine that runs it.
type supervised struct {
	cfg    *config.Backend
	gen    *config.Config // the config cfg is part of
	sup    *backend.Backend
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
}

// New loads the config; nothing is touched on disk yet.
func New(opts Options) (*Daemon, error) {
	cfg, err := config.Load(config.Path(opts.ConfigPath))
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Executable == "" {
		if opts.Executable, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding sockvisor's own executable for the exec shim: %w", err)
		}
	}
	if opts.StateDir == "" {
		opts.StateDir = "/run/sockvisor-state"
	}
	if opts.Apache == nil {
		opts.Apache = defaultApache
	}
	return &Daemon{
		opts:     opts,
		log:      opts.Log,
		notify:   notify.New(),
		cfg:      cfg,
		socks:    map[string]*sockets.Listener{},
		backends: map[string]*supervised{},
		phase:    "starting",
	}, nil
}

// Config returns the config currently in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run serves until ctx ends or SIGTERM/SIGINT arrives; SIGHUP reloads.
// A stop signal is honoured at every moment: during start-up or a reload
// it cancels the work in progress, so no Apache config is applied and no
// READY=1 is sent afterwards, and control requests are refused from then on.
func (d *Daemon) Run(ctx context.Context) (err error) {
	// A broken pipe on stderr (journald restarting) must not kill us.
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.stopCtx = ctx
	// Refuse control requests as soon as stopping begins, not only once
	// shutdown holds reloadMu (a start-up or reload may hold it for long).
	context.AfterFunc(ctx, func() { d.closing.Store(true) })

	// The signal watcher runs from the first moment: start-up may take as
	// long as the slowest ready.timeout, and SIGTERM must cut it short.
	hups := make(chan struct{}, 1)
	sigDone := make(chan struct{})
	go func() {
		defer close(sigDone)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if s == syscall.SIGHUP {
					select {
					case hups <- struct{}{}:
					default: // a reload is already queued
					}
					continue
				}
				d.log.Info("stopping", "signal", s.String())
				d.closing.Store(true)
				cancel()
				return
			}
		}
	}()

	cfg := d.Config()
	// Bind the control socket first: a second sockvisor on the same config
	// must fail here, before it touches sockets, backends or Apache.
	metrics := d.metricsHandler()
	ctl, err := control.Listen(cfg.ControlSocket, d, metrics, d.log.Named("control"))
	if err != nil {
		return err
	}
	ctlDone := make(chan struct{})
	go func() { ctl.Serve(ctx); close(ctlDone) }()
	// Shutdown order: stop serving control requests (waiting for those in
	// flight, which the cancelled ctx cuts short), then stop backends and
	// close sockets.
	defer d.shutdown()
	defer func() { cancel(); <-ctlDone; <-sigDone }()

	d.reloadMu.Lock()
	err = d.start(ctx)
	d.reloadMu.Unlock()
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Stopped during start-up: never claim readiness.
		return nil
	}
	defer d.housekeep(ctx)()
	if cfg.MetricsListen != "" {
		stop, err := d.serveMetrics(ctx, cfg.MetricsListen, metrics)
		if err != nil {
			return err
		}
		defer stop()
	}

	d.mu.Lock()
	d.phase = "running"
	d.mu.Unlock()
	d.notify.Ready(d.summary())
	d.log.Info("sockvisor ready", "backends", len(cfg.Backends), "sockets", len(cfg.AllSockets()))

	// The watchdog is petted from its own goroutine so a long reload (a
	// slow backend, a slow Apache) cannot starve it.
	if iv := notify.WatchdogInterval(); iv > 0 {
		go func() {
			t := time.NewTicker(iv)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					d.notify.Watchdog()
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hups:
			// Reload logs its own failure.
			_ = d.Reload(ctx)
		}
	}
}

// start is the config transaction applied to an empty generation: it
// adopts or creates the sockets, starts every backend, waits for them and
// applies the Apache config. Unlike a reload it does not fail when a
// backend is not ready (see commitUnready).
func (d *Daemon) start(ctx context.Context) error {
	cfg := d.cfg
	stored := storedSockets(d.log)
	d.takeBackSockets(cfg, stored) // without systemd, after a crash
	a, err := d.opts.Apache(cfg, d.log.Named("apache"))
	if err != nil {
		d.log.Error("Apache integration unavailable; backends serve on their sockets", "error", err)
		d.applied.record("", false, err)
	} else {
		d.apache = a
	}
	return d.transact(ctx, emptyGeneration(cfg), cfg, stored)
}

// storedSockets takes the sockets systemd kept in its fd store for us.
func storedSockets(log hclog.Logger) map[string]*os.File {
	out := map[string]*os.File{}
	for _, f := range activation.Files(true) {
		out[f.Name()] = f
	}
	if len(out) > 0 {
		log.Info("adopting sockets from systemd's fd store", "count", len(out))
	}
	return out
}

// provisionSockets creates (or adopts from stored) the given sockets under
// the directory lock; with sweep it first removes stale files. It returns
// the specs it added to d.socks, so a rollback can remove exactly those.
func (d *Daemon) provisionSockets(ctx context.Context, cfg *config.Config, specs []config.Socket, stored map[string]*os.File, sweep bool) ([]config.Socket, error) {
	log := d.log.Named("sockets")
	if err := sockets.PrepareDir(cfg, log); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	release, err := sockets.LockDir(lctx, cfg.SocketDir)
	if err != nil {
		return nil, err
	}
	defer release()
	if sweep {
		skip := map[string]bool{}
		for name := range stored {
			skip[name] = true
		}
		if _, err := sockets.Sweep(ctx, cfg.SocketDir, sockets.SweepOptions{Skip: skip}, log.Named("sweep")); err != nil {
			return nil, err
		}
	}
	var created []*sockets.Listener
	for _, s := range specs {
		var l *sockets.Listener
		var adopted *os.File
		if f, ok := stored[s.Name]; ok {
			adopted = f
			delete(stored, s.Name)
			l, err = sockets.Adopt(cfg, s, f, log)
			if err != nil {
				log.Warn("stored socket unusable; binding a new one", "socket", s.Name, "error", err)
				f.Close()
			}
		}
		if l == nil {
			if l, err = sockets.Create(cfg, s, log); err != nil {
				for _, c := range created {
					d.notify.Forget(c.Spec().Name)
					c.Remove()
				}
				return nil, err
			}
			// A stale entry under this name (an unusable stored copy)
			// must not come back at the next start.
			d.notify.Forget(s.Name)
			if err := d.notify.Store(s.Name, l.File()); err != nil {
				log.Warn("could not hand the socket to systemd's fd store", "socket", s.Name, "error", err)
			}
		}
		d.keepStored(l, adopted)
		created = append(created, l)
	}
	d.mu.Lock()
	for _, l := range created {
		d.socks[l.Spec().Name] = l
	}
	d.mu.Unlock()
	return specs, nil
}

// inherited lists the sockets sockvisor creates and holds: all but those of
// handoff = "self" backends, which bind their own.
func inherited(cfg *config.Config) []config.Socket {
	var out []config.Socket
	for _, b := range cfg.Backends {
		if b.Handoff != config.HandoffSelf {
			out = append(out, b.Sockets...)
		}
	}
	return out
}

// listenersFor returns b's listeners, instance 0 first (nil for "self").
func (d *Daemon) listenersFor(b *config.Backend) []*sockets.Listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*sockets.Listener, 0, len(b.Sockets))
	for _, s := range b.Sockets {
		out = append(out, d.socks[s.Name])
	}
	return out
}

// backendSockets is listenersFor as b's supervisor gets them: a socket a
// running process of the current generation also serves is wrapped in a
// sharedSocket.
func (d *Daemon) backendSockets(b *config.Backend) []backend.Socket {
	d.mu.Lock()
	defer d.mu.Unlock()
	holder := map[string]*supervised{}
	for _, sv := range d.backends {
		for _, s := range sv.cfg.Sockets {
			holder[s.Name] = sv
		}
	}
	out := make([]backend.Socket, 0, len(b.Sockets))
	for _, s := range b.Sockets {
		l := d.socks[s.Name]
		switch {
		case l == nil:
			out = append(out, nil)
		case holder[s.Name] != nil && b.Handoff == config.HandoffListenFDs:
			// fpm and stdin servers need blocking mode and never change it.
			out = append(out, sharedSocket{l, holder[s.Name].done})
		default:
			out = append(out, l)
		}
	}
	return out
}

// sharedSocket is a listener that a process of the previous generation
// still accepts on. A backend clears O_NONBLOCK on the shared file
// description before a spawn when none of its own processes is alive, but
// it cannot see the other generation's: uvicorn's asyncio loop then blocks
// inside accept(2) and hangs, requests and SIGTERM alike, if the new
// process dies before it sets the flag again (measured: a rejected reload
// of uvicorn left the old one deaf until SIGKILL). So the mode is left
// alone until the previous owner has stopped.
type sharedSocket struct {
	*sockets.Listener
	prevDone <-chan struct{}
}

func (s sharedSocket) SetBlocking() error {
	select {
	case <-s.prevDone:
		return s.Listener.SetBlocking()
	default:
		return nil
	}
}

// newBackend builds the supervisor of one backend of cfg (the generation
// it belongs to, which may not be in force yet) on its listeners.
func (d *Daemon) newBackend(cfg *config.Config, b *config.Backend, socks []backend.Socket) (*backend.Backend, error) {
	return backend.New(b, socks, backend.Options{
		Logger:     d.log.Named("backend"),
		Executable: d.opts.Executable,
		StateDir:   d.opts.StateDir,
		FixUp:      func(s config.Socket) error { return sockets.FixSocketFile(cfg, s) },
	})
}

// startSupervised starts the owner goroutine of b, a backend of cfg.
func (d *Daemon) startSupervised(cfg *config.Config, b *config.Backend) (*supervised, error) {
	sup, err := d.newBackend(cfg, b, d.backendSockets(b))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv := &supervised{cfg: b, gen: cfg, sup: sup, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sv.done)
		if err := sv.sup.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("backend supervisor ended", "backend", b.Name, "error", err)
		}
	}()
	return sv, nil
}

// waitReady waits for every backend of svs, each bounded by its
// ready.timeout (the backend reports a failed start sooner), and returns one
// error per backend;
// the caller decides what an unready backend means.
func (d *Daemon) waitReady(ctx context.Context, svs []*supervised) []error {
	errs := make([]error, len(svs))
	var wg sync.WaitGroup
	for i, sv := range svs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Time to start, plus the probe budget.
			rctx, cancel := context.WithTimeout(ctx, sv.cfg.Ready.Timeout+5*time.Second)
			defer cancel()
			if err := sv.sup.WaitReady(rctx); err != nil {
				// The backend's error names it and says why.
				errs[i] = err
				if ctx.Err() == nil {
					d.log.Warn("backend not ready", "backend", sv.cfg.Name, "error", err)
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

// stopSupervised stops each backend of svs (in parallel) and waits for its
// goroutine.
func (d *Daemon) stopSupervised(svs []*supervised) {
	var wg sync.WaitGroup
	for _, sv := range svs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(context.Background(), sv.cfg.StopTimeout+10*time.Second)
			defer cancel()
			if err := sv.sup.Stop(sctx); err != nil {
				d.log.Error("stopping backend", "backend", sv.cfg.Name, "error", err)
			}
			sv.cancel()
			<-sv.done
		}()
	}
	wg.Wait()
}

func (d *Daemon) shutdown() {
	d.closing.Store(true)
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.notify.Stopping()
	d.mu.Lock()
	d.phase = "stopping"
	var svs []*supervised
	for _, sv := range d.backends {
		svs = append(svs, sv)
	}
	d.backends = map[string]*supervised{}
	d.mu.Unlock()
	d.stopSupervised(svs)
	// A reload cut short by the stop rolls back alongside.
	d.bg.Wait()
	d.removeState()
	d.mu.Lock()
	defer d.mu.Unlock()
	// Closing keeps the files: Apache's connects queue until the next start
	// adopts the same sockets from the fd store, or fail cleanly as stale.
	for _, l := range d.socks {
		l.Close()
	}
	d.socks = map[string]*sockets.Listener{}
	if d.apache != nil {
		d.apache.Close()
	}
	d.log.Info("stopped")
}

func (d *Daemon) applyApache(ctx context.Context, cfg *config.Config) error {
	if d.apache == nil {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	changed, err := d.apache.Apply(actx, cfg)
	d.applied.record(d.apache.Layout().ConfigFile, changed, err)
	if err != nil {
		d.counts.apacheReloadFailures.Add(1)
		return err
	}
	if changed {
		d.counts.apacheReloads.Add(1)
		d.log.Info("Apache config applied and reloaded")
	}
	return nil
}

// summary is the one-line STATUS= text.
func (d *Daemon) summary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ready, total := 0, len(d.backends)
	var bad []string
	for name, sv := range d.backends {
		if st := sv.sup.Status(); st.Ready || st.Serving() {
			ready++
		} else {
			bad = append(bad, name)
		}
	}
	sort.Strings(bad)
	s := fmt.Sprintf("%d/%d backends ready, %d sockets", ready, total, len(d.socks))
	if len(bad) > 0 {
		s += "; not ready: " + strings.Join(bad, ", ")
	}
	if d.lastReloadErr != "" {
		s += "; last reload failed"
	}
	s += d.applied.note()
	return s
}

// Restart replaces one backend's process without dropping requests. It
// fails as soon as the backend reports the new process failed, with the
// backend's own reason, and the old process keeps serving.
func (d *Daemon) Restart(ctx context.Context, name string) error {
	err := d.backendCall(ctx, name, func(sv *supervised, ctx context.Context) error {
		d.log.Info("restarting backend", "backend", name)
		// The new process is probed on the path: a deleted one is put back
		// first, as housekeeping would, which waits while we hold reloadMu.
		for _, l := range d.listenersFor(sv.cfg) {
			if l != nil {
				d.restorePath(name, l, map[string]string{})
			}
		}
		return sv.sup.Restart(ctx)
	})
	// The backend's error names it, the failure and the old process's fate.
	return idleNotice(name, err)
}

// untilStop returns ctx, also cancelled when the daemon stops.
func (d *Daemon) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if d.stopCtx != nil {
		stop := context.AfterFunc(d.stopCtx, cancel)
		return ctx, func() { stop(); cancel() }
	}
	return ctx, cancel
}

// errStopping marks a request refused or abandoned because sockvisor is
// stopping; callers get it from stoppingErr, in the sentence users read.
var errStopping = errors.New("daemon: stopping")

// stoppingErr is errStopping as the client prints it, after what ("reload
// abandoned") unless what is "".
func stoppingErr(what string) error {
	msg := "sockvisor is stopping; try again once it has restarted"
	if what != "" {
		msg = what + ": " + msg
	}
	return errmark.Mark(errors.New(msg), errStopping)
}
