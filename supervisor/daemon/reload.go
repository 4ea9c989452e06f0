package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// Reload re-reads the config and applies only the difference: new backends
// start, removed ones stop and their sockets go, changed ones are replaced
// (new process ready before the old one stops), untouched ones keep running.
// On any error the previous generation keeps serving and the error is returned
// (so `systemctl reload` fails with it).
func (d *Daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.closing {
		return errStopping
	}
	// A client that gives up must not abort a reload halfway (e.g. between
	// Apache's reload and its health check); the reload has its own bounds.
	ctx = context.WithoutCancel(ctx)
	d.notify.Reloading()
	err := d.reloadLocked(ctx)
	d.counts.configReloads.Add(1)
	d.mu.Lock()
	if err != nil {
		d.counts.configReloadFailures.Add(1)
		d.lastReloadErr = err.Error()
	} else {
		d.lastReloadErr = ""
	}
	d.mu.Unlock()
	d.notify.Ready(d.summary())
	return err
}

func (d *Daemon) reloadLocked(ctx context.Context) error {
	old := d.Config()
	next, err := config.Load(old.File)
	if err != nil {
		return fmt.Errorf("config not reloaded: %w", err)
	}
	if err := restartOnlyChanges(old, next); err != nil {
		return err
	}
	plan := diff(old, next)
	if plan.empty() {
		d.log.Info("config reloaded: no backend changed")
		// Apache settings may still differ; Apply is a no-op if not.
		if err := d.applyApache(ctx, next); err != nil {
			return err
		}
		d.commitConfig(next)
		return nil
	}
	d.log.Info("reloading config", "add", plan.added, "remove", plan.removed, "replace", plan.changed)

	// Provision: sockets the new config adds, then new processes.
	var newSpecs []config.Socket
	d.mu.Lock()
	for _, s := range inherited(next) {
		if _, ok := d.socks[s.Name]; !ok {
			newSpecs = append(newSpecs, s)
		}
	}
	d.mu.Unlock()
	if err := d.provisionSockets(ctx, next, newSpecs, map[string]*os.File{}, false); err != nil {
		return err
	}
	var fresh []*proc
	rollback := func() {
		d.stopProcs(fresh)
		d.removeSockets(newSpecs)
	}
	for _, name := range append(plan.added, plan.changed...) {
		b := next.Backend(name)
		if ob := old.Backend(name); ob != nil && (ob.Handoff == "self" || b.Handoff == "self") {
			// A self-binding backend cannot overlap with its successor on
			// one path: stop the old one first (requests fail meanwhile,
			// as documented for handoff = "self").
			d.mu.Lock()
			p := d.procs[name]
			delete(d.procs, name)
			d.mu.Unlock()
			if p != nil {
				d.stopProcs([]*proc{p})
			}
		}
		fresh = append(fresh, d.startProc(b))
	}
	if errs := d.waitReady(ctx, fresh); errors.Join(errs...) != nil {
		rollback()
		return fmt.Errorf("config not reloaded: %w", errors.Join(errs...))
	}
	if d.apache != nil {
		if err := d.applyApache(ctx, next); err != nil {
			rollback()
			return fmt.Errorf("config not reloaded, Apache kept its previous config: %w", err)
		}
	}

	// Commit: swap in the new generation, then retire the old one.
	d.mu.Lock()
	var retire []*proc
	for _, name := range append(plan.removed, plan.changed...) {
		if p := d.procs[name]; p != nil {
			retire = append(retire, p)
		}
		delete(d.procs, name)
	}
	for _, p := range fresh {
		d.procs[p.cfg.Name] = p
	}
	d.mu.Unlock()
	d.commitConfig(next)
	for _, name := range plan.changed {
		if err := d.refreshModes(next, next.Backend(name)); err != nil {
			d.log.Warn("socket mode not updated", "backend", name, "error", err)
		}
	}
	d.stopProcs(retire)

	var gone []config.Socket
	keep := map[string]bool{}
	for _, s := range next.AllSockets() {
		keep[s.Name] = true
	}
	for _, s := range old.AllSockets() {
		if !keep[s.Name] {
			gone = append(gone, s)
		}
	}
	d.removeSockets(gone)
	d.log.Info("config reloaded", "backends", len(next.Backends))
	return nil
}

// commitConfig makes next the config in force, with its log level.
func (d *Daemon) commitConfig(next *config.Config) {
	d.mu.Lock()
	old := d.cfg
	d.cfg = next
	d.mu.Unlock()
	if next.LogLevel != old.LogLevel {
		d.log.SetLevel(hclog.LevelFromString(next.LogLevel))
	}
}

// refreshModes applies a changed socket_mode to sockets that already exist.
func (d *Daemon) refreshModes(cfg *config.Config, b *config.Backend) error {
	for _, s := range b.Sockets {
		d.mu.Lock()
		l := d.socks[s.Name]
		d.mu.Unlock()
		if l == nil {
			continue
		}
		if err := sockets.FixSocketFile(cfg, s); err != nil {
			return err
		}
	}
	return nil
}

// removeSockets closes and unlinks sockets that no backend uses any more.
func (d *Daemon) removeSockets(specs []config.Socket) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range specs {
		l, ok := d.socks[s.Name]
		if !ok {
			continue
		}
		if err := l.Remove(); err != nil {
			d.log.Warn("removing socket", "socket", s.Path, "error", err)
		}
		d.notify.Forget(s.Name)
		delete(d.socks, s.Name)
	}
}

type reloadPlan struct {
	added, removed, changed []string
}

func (p reloadPlan) empty() bool {
	return len(p.added)+len(p.removed)+len(p.changed) == 0
}

// diff compares backends by name, in config order.
func diff(old, next *config.Config) reloadPlan {
	var p reloadPlan
	for _, b := range next.Backends {
		switch ob := old.Backend(b.Name); {
		case ob == nil:
			p.added = append(p.added, b.Name)
		case !ob.Equal(b):
			p.changed = append(p.changed, b.Name)
		}
	}
	for _, b := range old.Backends {
		if next.Backend(b.Name) == nil {
			p.removed = append(p.removed, b.Name)
		}
	}
	return p
}

// restartOnlyChanges refuses settings a running daemon cannot change safely.
func restartOnlyChanges(old, next *config.Config) error {
	var changed []string
	check := func(name string, a, b any) {
		if a != b {
			changed = append(changed, name)
		}
	}
	check("socket_dir", old.SocketDir, next.SocketDir)
	check("socket_dir_mode", old.SocketDirMode, next.SocketDirMode)
	check("socket_owner", old.SocketOwner, next.SocketOwner)
	check("socket_group", old.SocketGroup, next.SocketGroup)
	check("selinux_type", old.SELinuxType, next.SELinuxType)
	check("control_socket", old.ControlSocket, next.ControlSocket)
	check("backlog", old.Backlog, next.Backlog)
	check("metrics_listen", old.MetricsListen, next.MetricsListen)
	check("log_format", old.LogFormat, next.LogFormat)
	check("apache.flavor", old.Apache.Flavor, next.Apache.Flavor)
	check("apache.config_file", old.Apache.ConfigFile, next.Apache.ConfigFile)
	check("apache.unit", old.Apache.Unit, next.Apache.Unit)
	check("apache.reload", old.Apache.Reload, next.Apache.Reload)
	check("apache.apachectl", strings.Join(old.Apache.Apachectl, "\x00"), strings.Join(next.Apache.Apachectl, "\x00"))
	if len(changed) > 0 {
		return fmt.Errorf("config not reloaded: %s changed, which takes a restart; run `systemctl restart sockvisor` (sockets are kept in systemd's fd store, so no request is refused)", strings.Join(changed, ", "))
	}
	return nil
}
