package apache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/apacheconf"
)

// Reloader makes a running Apache re-read its config.
type Reloader interface {
	// Reload returns nil only when Apache took the reload and its main
	// process survived it; ErrNotRunning when Apache was not running, so
	// nothing was reloaded; ErrApacheDied when the reload killed it.
	Reload(ctx context.Context) error
	// Start starts Apache after a reload killed it.
	Start(ctx context.Context) error
}

// Default bounds for a reload.
const (
	// DefaultSettle bounds the watch of Apache's main process after a reload.
	DefaultSettle = 5 * time.Second
	// DefaultJobTimeout bounds the wait for systemd's reload or start job.
	DefaultJobTimeout = 90 * time.Second
)

// NewReloader returns the reloader for apache.reload: "dbus", "apachectl"
// or "none".
func NewReloader(mode string, l Layout) (Reloader, error) {
	switch mode {
	case "dbus":
		return NewDBusReloader(l.Unit), nil
	case "apachectl":
		return &ApachectlReloader{Apachectl: l.Apachectl}, nil
	case "none":
		return NoReload{}, nil
	}
	return nil, fmt.Errorf("apache.reload %q is unknown; use dbus, apachectl or none", mode)
}

// NoReload writes and tests the files but reloads nothing: a Manager's
// default Reloader, for tests. apache.reload = "none" does not use it: New
// gives a Manager with Options.Off, which writes and runs nothing at all.
type NoReload struct{}

// Reload does nothing.
func (NoReload) Reload(context.Context) error { return nil }

// Start does nothing.
func (NoReload) Start(context.Context) error { return nil }

// ApachectlReloader reloads with `<apachectl> -k graceful` and checks the
// main process from Apache's PidFile.
type ApachectlReloader struct {
	Apachectl []string
	// Settle bounds the watch after the signal; 0 means DefaultSettle.
	Settle time.Duration
	// Gone bounds Start's wait for a dead main process to go; 0 means
	// DefaultGone.
	Gone time.Duration
}

var _ Reloader = (*ApachectlReloader)(nil)

// Reload sends a graceful restart and watches the main process survive it.
func (a *ApachectlReloader) Reload(ctx context.Context) error {
	pidFile, err := a.pidFile(ctx)
	if err != nil {
		return err
	}
	pid, err := readPid(pidFile)
	if err != nil || !alive(pid) {
		return fmt.Errorf("%w: no live process in its PidFile %s, so it was not reloaded; the new config takes effect when Apache starts", ErrNotRunning, pidFile)
	}
	before := children(pid)
	if out, err := runApache(ctx, a.Apachectl, "-k", "graceful"); err != nil {
		return fmt.Errorf("%w: %s -k graceful: %w: %s", ErrReload, strings.Join(a.Apachectl, " "), err, apacheconf.Message([]byte(out), 6))
	}
	if err := settle(ctx, pid, before, orDefault(a.Settle, DefaultSettle)); err != nil {
		return fmt.Errorf("%w: main process %d exited after the graceful restart; its error log says why", err, pid)
	}
	if now, err := readPid(pidFile); err != nil || now != pid {
		return fmt.Errorf("%w: PidFile %s no longer names main process %d after the graceful restart", ErrApacheDied, pidFile, pid)
	}
	return nil
}

// DefaultGone bounds Start's wait for a dead main process to disappear.
const DefaultGone = 10 * time.Second

// Start runs `<apachectl> -k start` and waits for a live main process.
//
// After a reload killed Apache, its main process may still exist for a
// while: exiting (mod_ssl's AH02562 took tens of ms) or a zombie until its
// parent reaps it. `-k start` takes any process that kill(pid, 0) finds
// for a running server, says "already running" and exits 0, and Apache
// stays down (measured 55 ms after the graceful). So Start first waits,
// up to Gone, until the PidFile's process is really gone, and removes the
// PidFile of a zombie that outlasts the wait; then it starts Apache and
// waits for a new live main process.
func (a *ApachectlReloader) Start(ctx context.Context) error {
	pidFile, err := a.pidFile(ctx)
	if err != nil {
		return err
	}
	old, err := readPid(pidFile)
	if err == nil && old > 0 {
		if err := waitGone(ctx, old, orDefault(a.Gone, DefaultGone)); err != nil {
			return err
		}
		if procExists(old) {
			if alive(old) {
				return fmt.Errorf("Apache's main process %d (PidFile %s) is still running, so it was not started again; stop it, then start Apache", old, pidFile)
			}
			// A zombie nobody reaps holds no socket; its PidFile is stale.
			if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing the stale PidFile %s of dead main process %d: %w", pidFile, old, err)
			}
		}
	}
	if out, err := runApache(ctx, a.Apachectl, "-k", "start"); err != nil {
		return fmt.Errorf("%s -k start: %w: %s", strings.Join(a.Apachectl, " "), err, apacheconf.Message([]byte(out), 6))
	}
	deadline := time.Now().Add(orDefault(a.Settle, DefaultSettle))
	for {
		if pid, err := readPid(pidFile); err == nil && pid != old && alive(pid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s -k start ran but no new live main process appeared in %s", strings.Join(a.Apachectl, " "), pidFile)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitGone waits until no process pid exists (a zombie still does), or
// limit passes; only ctx ending is an error.
func waitGone(ctx context.Context, pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for procExists(pid) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// pidFile asks Apache where its PidFile is; a relative one is under ServerRoot.
func (a *ApachectlReloader) pidFile(ctx context.Context) (string, error) {
	rc, err := apacheconf.RunConfig(ctx, a.Apachectl)
	if err != nil {
		return "", fmt.Errorf("%w: reading Apache's run config: %w", ErrReload, err)
	}
	if rc.PidFile == "" {
		return "", fmt.Errorf("%w: %s -t -D DUMP_RUN_CFG names no PidFile", ErrReload, strings.Join(a.Apachectl, " "))
	}
	if !filepath.IsAbs(rc.PidFile) {
		return filepath.Join(rc.ServerRoot, rc.PidFile), nil
	}
	return rc.PidFile, nil
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
