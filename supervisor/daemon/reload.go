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

// Reload re-reads the config and applies only the difference as one
// transaction (see txn): new backends start, removed ones stop and their
// sockets go, changed ones are replaced (new process ready before the old
// one stops), untouched ones keep running. On any error the previous
// generation keeps serving and the error is returned (so `systemctl
// reload` fails with it).
func (d *Daemon) Reload(ctx context.Context) error {
	if d.closing.Load() {
		return stoppingErr("")
	}
	// A client that gives up must not abort a reload halfway (e.g. between
	// Apache's reload and its health check); a stop does.
	ctx, cancel := d.untilStop(context.WithoutCancel(ctx))
	defer cancel()
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.closing.Load() {
		return stoppingErr("")
	}
	d.notify.Reloading()
	err := d.reloadLocked(ctx)
	if d.closing.Load() {
		// STOPPING=1 follows, never READY=1.
		if err == nil {
			return nil
		}
		return stoppingErr("reload abandoned")
	}
	d.mu.Lock()
	if err != nil {
		d.counts.configReloadFailures.Add(1)
		d.lastReloadErr = err.Error()
	} else {
		d.counts.configReloadsOK.Add(1)
		d.lastReloadErr = ""
	}
	d.mu.Unlock()
	if err != nil {
		// Every reload, by SIGHUP or by `sockvisor reload`, logs its
		// failure here, once.
		d.log.Error("reload failed", "error", err)
	}
	d.notify.Ready(d.summary())
	return err
}

func (d *Daemon) reloadLocked(ctx context.Context) error {
	old := d.Config()
	next, err := config.Load(old.File)
	if err != nil {
		return fmt.Errorf("config not reloaded: %w", err)
	}
	return d.transact(ctx, old, next, nil)
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

// restartOnlyChanges refuses settings a running daemon cannot change
// safely; underSystemd picks the advice (see runsUnderSystemd).
func restartOnlyChanges(old, next *config.Config, underSystemd bool) error {
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
	if len(changed) == 0 {
		return nil
	}
	if underSystemd {
		return fmt.Errorf("config not reloaded: %s changed, which takes a restart; run `systemctl restart sockvisor` (sockets are kept in systemd's fd store, so no request is refused)", strings.Join(changed, ", "))
	}
	return fmt.Errorf("config not reloaded: %s changed, which takes a restart; stop this sockvisor (SIGTERM) and start `sockvisor run` again (without systemd nothing keeps its sockets, so requests are refused until it is back)", strings.Join(changed, ", "))
}

// runsUnderSystemd reports whether systemd started this process: it sets
// INVOCATION_ID for every service, and NOTIFY_SOCKET for Type=notify.
func runsUnderSystemd() bool {
	return os.Getenv("INVOCATION_ID") != "" || os.Getenv("NOTIFY_SOCKET") != ""
}

// handoffChanges refuses switching a backend between a socket sockvisor
// holds and one the backend binds itself. Both cannot exist on one path at
// once, so the switch would leave a moment in which nothing listens (or the
// old listener would linger); a new name gives the new handoff a socket of
// its own, and Apache moves over in the same reload without a gap.
func handoffChanges(old, next *config.Config) error {
	var errs []error
	for _, b := range next.Backends {
		ob := old.Backend(b.Name)
		if ob == nil || (ob.Handoff == config.HandoffSelf) == (b.Handoff == config.HandoffSelf) {
			continue
		}
		errs = append(errs, fmt.Errorf("config not reloaded: backend %q changes handoff from %q to %q, which a reload cannot do without a moment in which nothing listens on its socket; give the backend a new name and socket file (it then gets a socket of its own and Apache moves over without a gap), or restart sockvisor", b.Name, ob.Handoff, b.Handoff))
	}
	return errors.Join(errs...)
}
