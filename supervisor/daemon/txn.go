package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sockvisor/sockvisor/supervisor/apache"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// A config transaction moves the daemon from one generation (sockets,
// processes, Apache config) to the next, and it is the only way the daemon
// changes: start-up is a transaction from an empty generation, reload and
// SIGHUP are transactions from the running one. Its steps:
//
//  1. build: create the sockets next adds, start the processes next adds
//     or changes, next to the old ones;
//  2. prove: wait until every new process is ready (the backend reports a
//     failed start at once, not at ready.timeout);
//  3. apply the Apache config;
//  4. swap in the new generation, then retire the old processes and the
//     sockets next no longer names.
//
// A failure before the swap tears down only what the transaction built;
// the old generation keeps serving. A stop (SIGTERM, SIGINT) cancels ctx:
// the transaction stops where it is and applies nothing more.
//
// What a backend that is not ready means differs in one point only: in a
// reload the old generation still serves, so the reload is refused and
// rolled back; at start-up there is nothing to fall back to, so refusing
// would take every backend down for the sake of one. Start-up therefore
// commits an unready backend, which keeps retrying with back-off while
// connections wait on its socket, and says so in the log and in status.
type txn struct {
	d         *Daemon
	initial   bool
	old, next *config.Config
	plan      reloadPlan
	// socks are the sockets this transaction created.
	socks []config.Socket
	// fresh are the processes it started.
	fresh []*supervised
	// leftovers are a crashed predecessor's processes, found at start-up
	// before any backend of ours holds a socket.
	leftovers []leftover
	// displaced are old handoff = "self" processes stopped to free their
	// path (two processes cannot bind one); a rollback starts them again.
	displaced []*supervised
}

// emptyGeneration is cfg with no backends: what start-up starts from.
func emptyGeneration(cfg *config.Config) *config.Config {
	e := *cfg
	e.Backends = nil
	return &e
}

// transact applies next over old; stored (start-up only, else nil) holds
// the sockets systemd's fd store gave back. Callers hold reloadMu.
func (d *Daemon) transact(ctx context.Context, old, next *config.Config, stored map[string]*os.File) error {
	t := &txn{d: d, initial: stored != nil, old: old, next: next, plan: diff(old, next)}
	if !t.initial {
		if err := restartOnlyChanges(old, next, runsUnderSystemd()); err != nil {
			return err
		}
		if err := handoffChanges(old, next); err != nil {
			return err
		}
		if t.plan.empty() {
			d.log.Info("config reloaded: no backend changed")
		} else {
			d.log.Info("reloading config", "add", t.plan.added, "remove", t.plan.removed, "replace", t.plan.changed)
		}
	}
	if err := t.build(ctx, stored); err != nil {
		return t.fail(ctx, err)
	}
	if err := t.prove(ctx); err != nil {
		return t.fail(ctx, err)
	}
	if ctx.Err() == nil && d.apache != nil {
		if err := d.applyApache(ctx, next); err != nil {
			if !t.initial {
				if errors.Is(err, apache.ErrApacheDied) {
					// err says whether Apache runs the previous config again
					// or is down; "kept its previous config" would be false.
					return t.fail(ctx, fmt.Errorf("config not reloaded: %w", err))
				}
				return t.fail(ctx, fmt.Errorf("config not reloaded, Apache kept its previous config: %w", err))
			}
			// The sockets and backends are fine; Apache keeps its old config.
			d.log.Error("Apache config not applied", "error", err)
		}
	}
	if ctx.Err() != nil {
		return t.fail(ctx, ctx.Err())
	}
	t.commit(ctx)
	return nil
}

// build creates the new sockets and starts the new processes, except the
// self-binding replacements prove starts once the rest is ready.
func (t *txn) build(ctx context.Context, stored map[string]*os.File) error {
	d := t.d
	want := map[string]bool{}
	var specs []config.Socket
	d.mu.Lock()
	for _, s := range inherited(t.next) {
		want[s.Name] = true
		if _, ok := d.socks[s.Name]; !ok {
			specs = append(specs, s)
		}
	}
	d.mu.Unlock()
	// Stored sockets the config no longer names go before the sweep, so a
	// backend that now binds its own path finds it free.
	for name, f := range stored {
		if !want[name] {
			d.log.Info("dropping stored socket no longer in the config", "socket", name)
			d.notify.Forget(name)
			f.Close()
			delete(stored, name)
		}
	}
	if stored == nil {
		stored = map[string]*os.File{}
	}
	created, err := d.provisionSockets(ctx, t.next, specs, stored, t.initial)
	if err != nil {
		if t.initial {
			return err
		}
		return fmt.Errorf("config not reloaded: %w", err)
	}
	t.socks = created
	if t.initial {
		d.mu.Lock()
		t.leftovers = findLeftovers(t.next, d.socks)
		d.mu.Unlock()
	}
	for _, name := range append(append([]string(nil), t.plan.added...), t.plan.changed...) {
		if t.selfReplacement(name) {
			continue
		}
		sv, err := t.start(name)
		if err != nil {
			return err
		}
		t.fresh = append(t.fresh, sv)
	}
	if t.initial {
		// Shown by status while start-up waits for them.
		d.mu.Lock()
		d.starting = append([]*supervised(nil), t.fresh...)
		d.mu.Unlock()
	}
	return nil
}

// start starts the supervisor of backend name of the new generation.
func (t *txn) start(name string) (*supervised, error) {
	sv, err := t.d.startSupervised(t.next, t.next.Backend(name))
	if err != nil && !t.initial {
		return nil, fmt.Errorf("config not reloaded: %w", err)
	}
	return sv, err
}

// selfReplacement reports whether name replaces a running self-binding
// process, which must stop before its successor can bind the path.
func (t *txn) selfReplacement(name string) bool {
	ob := t.old.Backend(name)
	return ob != nil && ob.Handoff == config.HandoffSelf && t.next.Backend(name).Handoff == config.HandoffSelf
}

// prove waits for the new processes. Self-binding replacements go last,
// once everything else is ready, so their unavoidable gap is as short as
// possible and nothing is displaced when another backend already failed.
func (t *txn) prove(ctx context.Context) error {
	d := t.d
	if err := t.ready(ctx, t.fresh); err != nil {
		return err
	}
	var self []*supervised
	for _, name := range t.plan.changed {
		if !t.selfReplacement(name) || ctx.Err() != nil {
			continue
		}
		d.mu.Lock()
		sv := d.backends[name]
		d.mu.Unlock()
		if sv != nil {
			d.log.Info("stopping the old process first: the backend binds its own socket", "backend", name)
			d.stopSupervised([]*supervised{sv})
			t.displaced = append(t.displaced, sv)
		}
		repl, err := t.start(name)
		if err != nil {
			return err
		}
		t.fresh = append(t.fresh, repl)
		self = append(self, repl)
	}
	return t.ready(ctx, self)
}

// ready waits for svs; at start-up an unready backend is kept (see txn).
func (t *txn) ready(ctx context.Context, svs []*supervised) error {
	errs := t.d.waitReady(ctx, svs)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	if t.initial {
		t.d.log.Warn("starting with backends that are not ready; they keep retrying and connections wait on their sockets", "error", err)
		return nil
	}
	return fmt.Errorf("config not reloaded, the previous processes keep serving: %w", err)
}

// fail undoes what the transaction built and returns err. At start-up a
// stop keeps what was built for shutdown to stop like any generation;
// there is nothing older to fall back to.
func (t *txn) fail(ctx context.Context, err error) error {
	d := t.d
	stopping := ctx.Err() != nil
	if t.initial {
		d.mu.Lock()
		d.starting = nil
		d.mu.Unlock()
		if stopping {
			d.mu.Lock()
			for _, sv := range t.fresh {
				d.backends[sv.cfg.Name] = sv
			}
			d.mu.Unlock()
			return nil
		}
		d.stopSupervised(t.fresh)
		return err
	}
	undo := func() {
		d.stopSupervised(t.fresh)
		d.removeSockets(t.socks)
	}
	if stopping {
		// Shutdown stops the old generation meanwhile and waits for this,
		// so the whole stop takes one stop_timeout, not two.
		d.bg.Add(1)
		go func() { defer d.bg.Done(); undo() }()
		return stoppingErr("reload abandoned")
	}
	undo()
	for _, sv := range t.displaced {
		d.log.Warn("restarting the previous process of a self-binding backend", "backend", sv.cfg.Name)
		repl, err := d.startSupervised(sv.gen, sv.cfg)
		if err != nil {
			d.log.Error("cannot restart the previous process", "backend", sv.cfg.Name, "error", err)
			continue
		}
		d.mu.Lock()
		d.backends[sv.cfg.Name] = repl
		d.mu.Unlock()
	}
	return err
}

// commit swaps the new generation in and retires the old one.
func (t *txn) commit(ctx context.Context) {
	d := t.d
	d.mu.Lock()
	var retire []*supervised
	for _, name := range append(append([]string(nil), t.plan.removed...), t.plan.changed...) {
		if sv := d.backends[name]; sv != nil && !t.isDisplaced(sv) {
			retire = append(retire, sv)
		}
		delete(d.backends, name)
	}
	for _, sv := range t.fresh {
		d.backends[sv.cfg.Name] = sv
	}
	d.starting = nil
	d.mu.Unlock()
	if !t.initial {
		d.commitConfig(t.next)
		for _, name := range t.plan.changed {
			if err := d.refreshModes(t.next, t.next.Backend(name)); err != nil {
				d.log.Warn("socket mode not updated", "backend", name, "error", err)
			}
		}
	}
	d.stopSupervised(retire)
	// The new generation serves; let a crashed predecessor's processes
	// finish their requests.
	d.retireLeftovers(ctx, t.leftovers)

	keep := map[string]bool{}
	for _, s := range inherited(t.next) {
		keep[s.Name] = true
	}
	var gone []config.Socket
	for _, s := range inherited(t.old) {
		if !keep[s.Name] {
			gone = append(gone, s)
		}
	}
	d.removeSockets(gone)
	if !t.initial {
		d.log.Info("config reloaded", "backends", len(t.next.Backends))
	}
}

func (t *txn) isDisplaced(sv *supervised) bool {
	for _, q := range t.displaced {
		if q == sv {
			return true
		}
	}
	return false
}
