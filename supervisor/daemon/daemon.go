// Package daemon is `sockvisor run`: it owns the socket directory, the
// listening sockets, the backends, the Apache config and the control socket
// for the life of the process.
//
// Invariants: a socket's file and inode never disappear while its backend is
// configured (sockets are adopted from systemd's fd store when present, or
// taken back from a crashed sockvisor's backends, and closing never
// unlinks), unless a backend shut the socket down: then a new one replaces
// it at the same path (repair.go); config reloads are serialized and transactional:
// everything new is provisioned and ready before anything old is stopped, and
// a failed reload leaves the previous generation serving untouched.
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
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/notify"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

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
	// closing is set by shutdown under reloadMu; later requests are refused.
	closing bool

	mu     sync.Mutex // guards the fields below
	cfg    *config.Config
	socks  map[string]*sockets.Listener // by socket name
	procs  map[string]*proc             // by backend name
	apache *apache.Manager
	// lastReloadErr is shown in status until a reload succeeds.
	lastReloadErr string
	phase         string

	counts counters
}

// proc is one started backend and the goroutine that runs it.
type proc struct {
	cfg    *config.Backend
	p      *backend.Backend
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
		opts:   opts,
		log:    opts.Log,
		notify: notify.New(),
		cfg:    cfg,
		socks:  map[string]*sockets.Listener{},
		procs:  map[string]*proc{},
		phase:  "starting",
	}, nil
}

// Config returns the config currently in force.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run serves until ctx ends or SIGTERM/SIGINT arrives; SIGHUP reloads.
func (d *Daemon) Run(ctx context.Context) (err error) {
	// A broken pipe on stderr (journald restarting) must not kill us.
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	// flight), then stop backends and close sockets.
	defer d.shutdown()
	defer func() { cancel(); <-ctlDone }()

	d.reloadMu.Lock()
	err = d.start(ctx)
	d.reloadMu.Unlock()
	if err != nil {
		return err
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
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if err := d.Reload(ctx); err != nil {
					d.log.Error("reload failed; the previous config keeps serving", "error", err)
				}
				continue
			}
			d.log.Info("stopping", "signal", s.String())
			return nil
		}
	}
}

// start prepares the directory and sockets, starts every backend, waits for
// readiness and applies the Apache config.
func (d *Daemon) start(ctx context.Context) error {
	cfg := d.cfg
	stored := storedSockets(d.log)
	d.takeBackSockets(cfg, stored) // without systemd, after a crash
	if err := d.provisionSockets(ctx, cfg, inherited(cfg), stored, true); err != nil {
		return err
	}
	// Stored sockets the config no longer names: forget them.
	for name, f := range stored {
		d.log.Info("dropping stored socket no longer in the config", "socket", name)
		d.notify.Forget(name)
		f.Close()
	}
	d.mu.Lock()
	leftovers := findLeftovers(cfg, d.socks)
	d.mu.Unlock()
	var started []*proc
	for _, b := range cfg.Backends {
		started = append(started, d.startProc(b))
	}
	d.waitReady(ctx, started)
	// The new generation serves; let the old one finish its requests.
	d.retireLeftovers(ctx, leftovers)
	d.mu.Lock()
	for _, p := range started {
		d.procs[p.cfg.Name] = p
	}
	d.mu.Unlock()

	a, err := d.opts.Apache(cfg, d.log.Named("apache"))
	if err != nil {
		d.log.Error("Apache integration unavailable; backends serve on their sockets", "error", err)
		return nil
	}
	d.apache = a
	if err := d.applyApache(ctx, cfg); err != nil {
		// The sockets and backends are fine; Apache keeps its old config.
		d.log.Error("Apache config not applied", "error", err)
	}
	return nil
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
// the directory lock; with sweep it first removes stale files.
func (d *Daemon) provisionSockets(ctx context.Context, cfg *config.Config, specs []config.Socket, stored map[string]*os.File, sweep bool) error {
	log := d.log.Named("sockets")
	if err := sockets.PrepareDir(cfg, log); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	release, err := sockets.LockDir(lctx, cfg.SocketDir)
	if err != nil {
		return err
	}
	defer release()
	if sweep {
		skip := map[string]bool{}
		for name := range stored {
			skip[name] = true
		}
		if _, err := sockets.Sweep(ctx, cfg.SocketDir, sockets.SweepOptions{Skip: skip}, log.Named("sweep")); err != nil {
			return err
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
				return err
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
	return nil
}

// inherited lists the sockets sockvisor creates and holds: all but those of
// handoff = "self" backends, which bind their own.
func inherited(cfg *config.Config) []config.Socket {
	var out []config.Socket
	for _, b := range cfg.Backends {
		if b.Handoff != "self" {
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

// startProc starts b's owner goroutine.
func (d *Daemon) startProc(b *config.Backend) *proc {
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cfg: b, cancel: cancel, done: make(chan struct{})}
	p.p = d.newProcess(b, d.listenersFor(b))
	go func() {
		defer close(p.done)
		if err := p.p.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("backend supervisor ended", "backend", b.Name, "error", err)
		}
	}()
	return p
}

// waitReady waits for every proc, each bounded by its ready.timeout; a
// backend that is not ready is reported, not fatal: sockvisor keeps it
// retrying and connections queue on its socket meanwhile.
func (d *Daemon) waitReady(ctx context.Context, ps []*proc) []error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Time to start, plus the probe budget.
			rctx, cancel := context.WithTimeout(ctx, p.cfg.Ready.Timeout+5*time.Second)
			defer cancel()
			if err := p.p.WaitReady(rctx); err != nil {
				errs[i] = fmt.Errorf("backend %q is not ready: %w", p.cfg.Name, err)
				d.log.Warn("backend not ready", "backend", p.cfg.Name, "error", err)
			}
		}()
	}
	wg.Wait()
	return errs
}

// stopProcs stops each proc (in parallel) and waits for its goroutine.
func (d *Daemon) stopProcs(ps []*proc) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(context.Background(), p.cfg.StopTimeout+10*time.Second)
			defer cancel()
			if err := p.p.Stop(sctx); err != nil {
				d.log.Error("stopping backend", "backend", p.cfg.Name, "error", err)
			}
			p.cancel()
			<-p.done
		}()
	}
	wg.Wait()
}

func (d *Daemon) shutdown() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.closing = true
	d.notify.Stopping()
	d.mu.Lock()
	d.phase = "stopping"
	var ps []*proc
	for _, p := range d.procs {
		ps = append(ps, p)
	}
	d.procs = map[string]*proc{}
	d.mu.Unlock()
	d.stopProcs(ps)
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
	ready, total := 0, len(d.procs)
	var bad []string
	for name, p := range d.procs {
		if p.p.Status().Ready {
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
	return s
}

// Restart replaces one backend's process without dropping requests.
func (d *Daemon) Restart(ctx context.Context, name string) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.closing {
		return errStopping
	}
	d.mu.Lock()
	p, ok := d.procs[name]
	var names []string
	for n := range d.procs {
		names = append(names, n)
	}
	d.mu.Unlock()
	if !ok {
		sort.Strings(names)
		return fmt.Errorf("no backend named %q; configured: %s", name, strings.Join(names, ", "))
	}
	d.log.Info("restarting backend", "backend", name)
	return p.p.Restart(ctx)
}

var errStopping = errors.New("sockvisor is stopping; try again once it has restarted")
