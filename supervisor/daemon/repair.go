package daemon

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// housekeepInterval is how often housekeep checks the sockets and the state
// file: a socket a backend shut down serves again within about this, plus
// the replacement backend's start.
const housekeepInterval = 500 * time.Millisecond

// keepStored keeps systemd's fd store in step with l when a dead socket is
// replaced (sockets.Listener.Repair): a socket a backend shut down must not
// come back from the fd store after a restart. adopted is the descriptor l
// was adopted from, or nil; Adopt itself may already have replaced it.
func (d *Daemon) keepStored(l *sockets.Listener, adopted *os.File) {
	name := l.Spec().Name
	store := func(f *os.File) {
		d.notify.Forget(name)
		if err := d.notify.Store(name, f); err != nil {
			d.log.Warn("could not hand the replacement socket to systemd's fd store", "socket", name, "error", err)
		}
	}
	// Called with l locked: it must not call l's methods.
	l.OnReplace(store)
	if adopted != nil && l.File() != adopted {
		store(l.File())
	}
}

// housekeep starts the loop that, every housekeepInterval, replaces dead
// listening sockets (restarting their backends onto the new socket),
// restores deleted socket paths and rewrites the state file when something
// changed (or someone deleted it). It writes the state file
// once before returning. Call the returned function to stop the loop and
// wait for it.
func (d *Daemon) housekeep(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w := &stateWriter{}
	d.state = w
	d.saveState(w)
	failing := map[string]string{} // socket path -> last repair error logged
	go func() {
		defer close(done)
		t := time.NewTicker(housekeepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			d.repairDead(ctx, failing)
			d.saveState(w)
		}
	}()
	return func() { cancel(); <-done }
}

// saveState writes the state file if it changed; failures are logged once
// per distinct error.
func (d *Daemon) saveState(w *stateWriter) {
	path := statePath(d.opts.StateDir, d.Config().SocketDir)
	if w.path != path {
		if w.path != "" && w.last != nil {
			removeOwnState(w.path)
		}
		w.path, w.last = path, nil
	}
	st, err := d.currentState(w)
	if err == nil {
		err = w.write(st)
	}
	if err != nil {
		if err.Error() != w.lastErr {
			d.log.Warn("cannot write the state file; after a crash of sockvisor the next one cannot take over its backends", "path", path, "error", err)
		}
		w.lastErr = err.Error()
		return
	}
	w.lastErr = ""
}

// removeState removes the state file: after a clean stop there are no
// backends left to take over. Only a daemon that wrote the file removes it:
// a second sockvisor refused at start-up (its sockets are in use) shares
// the first one's socket_dir, hence its state file, and deleting it would
// leave the first one's backends unrecoverable after a crash.
func (d *Daemon) removeState() {
	if w := d.state; w != nil && w.last != nil {
		removeOwnState(w.path)
	}
}

// removeOwnState removes the state file at path if it names this process.
func removeOwnState(path string) {
	if st, err := readState(path); err == nil && st != nil && st.PID == os.Getpid() {
		os.Remove(path)
	}
}

// restorePath puts back l's path if someone deleted it (rm of the socket
// file): Apache connects by path, so until then it answers 503 while the
// backend runs on, and the backend only restores it when a process exits.
// It reports whether l was replaced meanwhile (EnsurePath repairs a socket
// that died since Dead was asked), which needs a restart of the backend.
func (d *Daemon) restorePath(backend string, l *sockets.Listener, failing map[string]string) (replaced bool) {
	ino := l.Inode()
	restored, err := l.EnsurePath()
	if err != nil {
		if !errors.Is(err, sockets.ErrClosed) && failing[l.Path()] != err.Error() {
			d.log.Error("cannot restore the socket path", "backend", backend, "path", l.Path(), "error", err)
		}
		failing[l.Path()] = err.Error()
		return false
	}
	delete(failing, l.Path())
	if restored {
		d.log.Warn("the socket path was deleted; restored it from its keep link", "backend", backend, "path", l.Path())
	}
	return l.Inode() != ino
}

// repairDead replaces every listening socket a backend shut down (see
// sockets.Listener.Dead) and restarts that backend: its running processes
// hold the dead socket and cannot be moved, while a new process gets the
// new one. A Gunicorn master, for one, never exits when its workers fail
// in accept, so waiting for an exit (EnsurePath) is not enough. It skips
// the round while a reload, restart or shutdown holds reloadMu.
// A socket that cannot be replaced is logged again only when the error
// changes (failing remembers the last one per path). A live socket whose
// path was deleted gets it back (restorePath).
func (d *Daemon) repairDead(ctx context.Context, failing map[string]string) {
	if !d.reloadMu.TryLock() {
		return
	}
	defer d.reloadMu.Unlock()
	if d.closing.Load() {
		return
	}
	d.mu.Lock()
	var svs []*supervised
	for _, sv := range d.backends {
		svs = append(svs, sv)
	}
	d.mu.Unlock()
	for _, sv := range svs {
		replaced := false
		for _, l := range d.listenersFor(sv.cfg) {
			if l == nil {
				continue
			}
			if l.Dead() == "" {
				replaced = d.restorePath(sv.cfg.Name, l, failing) || replaced
				continue
			}
			ok, err := l.Repair()
			if err != nil {
				if failing[l.Path()] != err.Error() {
					d.log.Error("listening socket is dead and could not be replaced", "backend", sv.cfg.Name, "error", err)
				}
				failing[l.Path()] = err.Error()
				continue
			}
			delete(failing, l.Path())
			replaced = replaced || ok
		}
		if !replaced {
			continue
		}
		d.log.Warn("restarting the backend onto its replaced socket", "backend", sv.cfg.Name)
		rctx, cancel := context.WithTimeout(ctx, sv.cfg.Ready.Timeout+5*time.Second)
		// An idle on-demand backend has nothing to restart: a dead
		// listener is readable, so its watch has already started it.
		if err := sv.sup.Restart(rctx); err != nil && !errors.Is(err, backend.ErrIdle) {
			d.log.Error("restarting the backend onto its replaced socket", "backend", sv.cfg.Name, "error", err)
		}
		cancel()
	}
}
