package apache

import (
	"context"
	"fmt"
	"sync"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// systemdConn is the part of go-systemd's *dbus.Conn the reloader uses;
// tests replace it to drive job results.
type systemdConn interface {
	ReloadUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	GetUnitPropertyContext(ctx context.Context, unit, name string) (*sdbus.Property, error)
	GetServicePropertyContext(ctx context.Context, service, name string) (*sdbus.Property, error)
	Close()
}

var _ systemdConn = (*sdbus.Conn)(nil)

// DBusReloader reloads Apache's unit through systemd's D-Bus API and checks
// that the unit stays active with the same main process.
type DBusReloader struct {
	Unit string
	// JobTimeout bounds the wait for the job; 0 means DefaultJobTimeout.
	JobTimeout time.Duration
	// Settle bounds the watch after the job; 0 means DefaultSettle.
	Settle time.Duration

	dial func(ctx context.Context) (systemdConn, error)

	// mu guards conn: one long-lived connection, redialled after an error.
	mu   sync.Mutex
	conn systemdConn
}

var _ Reloader = (*DBusReloader)(nil)

// NewDBusReloader returns a reloader for unit. It connects on first use.
func NewDBusReloader(unit string) *DBusReloader {
	return &DBusReloader{Unit: unit, dial: func(ctx context.Context) (systemdConn, error) {
		// The connection outlives this call (it is cached); godbus closes it
		// when its context ends, so it must not be the caller's.
		return sdbus.NewWithContext(context.WithoutCancel(ctx))
	}}
}

// Close drops the D-Bus connection.
func (r *DBusReloader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	return nil
}

// Reload runs a reload job for the unit and verifies the result.
func (r *DBusReloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn, err := r.connLocked(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReload, err)
	}
	state, pid, err := r.stateLocked(ctx, conn)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReload, err)
	}
	if state != "active" {
		return fmt.Errorf("%w: %s is %s, so it was not reloaded; the new config takes effect when it starts", ErrNotRunning, r.Unit, state)
	}
	// Watch the main process through /proc only if this PID namespace
	// shows it; otherwise the unit's state below is the whole check.
	watch := pid
	if !alive(pid) {
		watch = 0
	}
	before := children(watch)
	if err := r.jobLocked(ctx, conn, "reload", conn.ReloadUnitContext); err != nil {
		return err
	}
	if err := settle(ctx, watch, before, orDefault(r.Settle, DefaultSettle)); err != nil {
		return fmt.Errorf("%w: main process %d of %s exited after the reload; see journalctl -u %s", err, pid, r.Unit, r.Unit)
	}
	state2, pid2, err := r.stateLocked(ctx, conn)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReload, err)
	}
	if state2 != "active" || pid2 != pid {
		return fmt.Errorf("%w: %s is %s with main PID %d after the reload (was %d); see journalctl -u %s", ErrApacheDied, r.Unit, state2, pid2, pid, r.Unit)
	}
	return nil
}

// Start runs a start job for the unit and checks it is active.
func (r *DBusReloader) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn, err := r.connLocked(ctx)
	if err != nil {
		return err
	}
	if err := r.jobLocked(ctx, conn, "start", conn.StartUnitContext); err != nil {
		return err
	}
	state, _, err := r.stateLocked(ctx, conn)
	if err != nil {
		return fmt.Errorf("after its start job: %w", err)
	}
	if state != "active" {
		return fmt.Errorf("%s is %q after its start job; see journalctl -u %s", r.Unit, state, r.Unit)
	}
	return nil
}

func (r *DBusReloader) connLocked(ctx context.Context) (systemdConn, error) {
	if r.conn != nil {
		return r.conn, nil
	}
	c, err := r.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd over D-Bus (run as root, or set apache.reload = \"apachectl\"): %w", err)
	}
	r.conn = c
	return c, nil
}

// dropLocked forgets a connection that failed a call, so the next call
// redials instead of reusing a dead bus.
func (r *DBusReloader) dropLocked() {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}

// stateLocked reads the unit's ActiveState and the service's MainPID.
func (r *DBusReloader) stateLocked(ctx context.Context, conn systemdConn) (string, int, error) {
	p, err := conn.GetUnitPropertyContext(ctx, r.Unit, "ActiveState")
	if err != nil {
		r.dropLocked()
		return "", 0, fmt.Errorf("reading ActiveState of %s: %w", r.Unit, err)
	}
	state, _ := p.Value.Value().(string)
	p, err = conn.GetServicePropertyContext(ctx, r.Unit, "MainPID")
	if err != nil {
		r.dropLocked()
		return "", 0, fmt.Errorf("reading MainPID of %s: %w", r.Unit, err)
	}
	pid, _ := p.Value.Value().(uint32)
	return state, int(pid), nil
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// jobLocked starts a job and waits for its result. go-systemd registers
// the channel before the JobRemoved signal can arrive; the buffer keeps its
// dispatcher from blocking if we stop waiting.
func (r *DBusReloader) jobLocked(ctx context.Context, conn systemdConn, verb string, start jobFunc) error {
	ch := make(chan string, 1)
	if _, err := start(ctx, r.Unit, "replace", ch); err != nil {
		r.dropLocked()
		return fmt.Errorf("%w: asking systemd to %s %s: %w", ErrReload, verb, r.Unit, err)
	}
	timer := time.NewTimer(orDefault(r.JobTimeout, DefaultJobTimeout))
	defer timer.Stop()
	select {
	case res := <-ch:
		return jobResult(r.Unit, verb, res)
	case <-timer.C:
		return fmt.Errorf("%w: systemd's %s job for %s did not finish within %s; see systemctl status %s", ErrReload, verb, r.Unit, orDefault(r.JobTimeout, DefaultJobTimeout), r.Unit)
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for systemd's %s job for %s: %w", ErrReload, verb, r.Unit, ctx.Err())
	}
}

// jobResult turns a JobRemoved result into an error; only "done" is success.
// systemd 252 documents the first six results; the rest come from its
// job_result_table, and anything unknown is a failure too.
func jobResult(unit, verb, result string) error {
	why := map[string]string{
		"canceled":    "was canceled or replaced by another job",
		"timeout":     "hit its timeout",
		"failed":      "failed (for a reload: ExecReload= exited non-zero)",
		"dependency":  "failed because a unit it requires failed",
		"skipped":     "was skipped as not applicable",
		"invalid":     "was refused because the unit is not active",
		"assert":      "failed an Assert*= condition",
		"unsupported": "is not supported by the unit",
		"collected":   "was garbage-collected before it ran",
		"once":        "was refused because the unit may only run once",
	}
	switch result {
	case "done":
		return nil
	case "invalid":
		return fmt.Errorf("%w: systemd's %s job for %s %s; the new config takes effect when it starts", ErrNotRunning, verb, unit, why[result])
	}
	w, ok := why[result]
	if !ok {
		w = fmt.Sprintf("ended with the unknown result %q", result)
	}
	return fmt.Errorf("%w: systemd's %s job for %s %s; see journalctl -u %s", ErrReload, verb, unit, w, unit)
}
