package sockets

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// LockName is the lock file LockDir creates in socket_dir. Sweep skips it.
const LockName = ".sockvisor.lock"

// Kind is what a directory entry is.
type Kind string

// Kinds of directory entries.
const (
	KindSocket  Kind = "socket"
	KindSymlink Kind = "symlink"
	KindFile    Kind = "file"
	KindDir     Kind = "directory"
	KindOther   Kind = "other"
)

func kindOf(mode uint32) Kind {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return KindSocket
	case unix.S_IFLNK:
		return KindSymlink
	case unix.S_IFREG:
		return KindFile
	case unix.S_IFDIR:
		return KindDir
	}
	return KindOther
}

// Action is what Sweep did with an entry.
type Action string

// Sweep actions.
const (
	ActionRemoved     Action = "removed"
	ActionWouldRemove Action = "would remove" // dry run
	ActionKept        Action = "kept"         // a socket left in place
	ActionIgnored     Action = "ignored"      // not a socket; never touched
)

// Entry is one line of a sweep report.
type Entry struct {
	Name   string
	Kind   Kind
	Action Action
	Reason string
	// PID is the process that called listen(2) on a live socket (from
	// SO_PEERCRED), or 0 if unknown.
	PID int
}

// SweepOptions tunes Sweep.
type SweepOptions struct {
	// DryRun reports what would be removed and changes nothing.
	DryRun bool
	// Skip names sockets (and, implicitly, their keep links) to leave
	// unprobed, e.g. those about to be adopted from the fd store.
	Skip map[string]bool
	// ProbeTimeout bounds each connect probe; 0 means DefaultProbeTimeout.
	ProbeTimeout time.Duration
}

// Sweep inspects every entry of dir without following links and removes
// stale sockets (see the package doc for the exact rule). It returns a
// report of every entry but the lock file, sorted by name. Call it with
// LockDir held. Entries it could not remove are reported as kept and their
// errors are joined into err.
func Sweep(ctx context.Context, dir string, opts SweepOptions, log hclog.Logger) ([]Entry, error) {
	d, err := openHeld(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Sweep(ctx, opts, log)
}

// Sweep is the package-level Sweep on the held directory.
func (d *Dir) Sweep(ctx context.Context, opts SweepOptions, log hclog.Logger) ([]Entry, error) {
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	dir, dfd := d.path, d.fd
	names, err := d.names()
	if err != nil {
		return nil, fmt.Errorf("sockets: read %s: %w", dir, err)
	}

	type candidate struct {
		i  int
		st unix.Stat_t
	}
	var (
		report     []Entry
		candidates []candidate
		errs       []error
	)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return report, fmt.Errorf("sockets: sweep of %s interrupted: %w", dir, err)
		}
		if name == LockName {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("sockets: lstat %s: %w", filepath.Join(dir, name), err))
			}
			continue
		}
		e := Entry{Name: name, Kind: kindOf(st.Mode)}
		switch {
		case e.Kind != KindSocket:
			e.Action, e.Reason = ActionIgnored, "not a socket; sockvisor never touches it"
			log.Warn("ignoring a non-socket in socket_dir", "path", filepath.Join(dir, name), "kind", e.Kind)
		case opts.Skip[name] || opts.Skip[keepTarget(name)]:
			e.Action, e.Reason = ActionKept, "to be adopted from the fd store"
		default:
			// Probe through the directory descriptor: short, and immune to
			// the directory being renamed under us.
			r := probe(d.addr(name), opts.ProbeTimeout)
			if r.state == probeRefused {
				candidates = append(candidates, candidate{len(report), st})
				e.Action, e.Reason = ActionKept, "refused a connection; the sweep stopped before deciding"
				break
			}
			if r.state == probeGone {
				continue
			}
			e.Action, e.Reason, e.PID = ActionKept, r.describe(), r.pid
			log.Info("kept live socket", "path", filepath.Join(dir, name), "reason", e.Reason, "pid", e.PID)
		}
		report = append(report, e)
	}

	// Decide the refused ones with one sock_diag dump taken after all probes.
	var bound boundSet
	if len(candidates) > 0 {
		var err error
		if bound, err = loadBound(); err != nil {
			log.Debug("sock_diag unavailable; trusting connect probes alone", "error", err)
		}
	}
	for _, c := range candidates {
		e := &report[c.i]
		path := filepath.Join(dir, e.Name)
		stale, why := bound.judge(&c.st)
		if !stale {
			e.Reason = why
			log.Info("kept socket", "path", path, "reason", why)
			continue
		}
		if opts.DryRun {
			e.Action, e.Reason = ActionWouldRemove, why
			log.Info("would remove stale socket", "path", path, "reason", why)
			continue
		}
		removed, err := unlinkSameAt(dfd, e.Name, &c.st)
		switch {
		case err != nil:
			e.Reason = fmt.Sprintf("%s, but removing it failed: %v", why, err)
			errs = append(errs, fail(nil, err, path, "cannot remove stale socket %s: %v", path, err))
			log.Error("cannot remove stale socket", "path", path, "error", err)
		case !removed:
			e.Reason = "changed while being checked, so it is left alone"
		default:
			e.Action, e.Reason = ActionRemoved, why
			log.Info("removed stale socket", "path", path, "reason", why)
		}
	}
	return report, errors.Join(errs...)
}

// keepTarget maps ".x.keep" to "x"; other names to "".
func keepTarget(name string) string {
	if strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".keep") && len(name) > len("..keep") {
		return name[1 : len(name)-len(".keep")]
	}
	return ""
}

// LockDir takes an exclusive flock on LockName in dir, waiting until ctx is
// done. flock(2) cannot be cancelled, so it polls. The lock serialises
// sockvisor processes (a daemon starting or reloading, a sweep); release it
// as soon as the sockets are prepared. release is safe to call twice.
func LockDir(ctx context.Context, dir string) (release func() error, err error) {
	d, err := openHeld(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Lock(ctx)
}

// Lock is LockDir on the held directory: the lock file is opened relative
// to it, never through the path.
func (d *Dir) Lock(ctx context.Context) (release func() error, err error) {
	dir, p := d.path, d.join(LockName)
	fd, err := unix.Openat(d.fd, LockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fail(ErrUnsafe, err, p, "cannot open lock file %s: %v; run as root and make sure socket_dir %s exists", p, err, dir)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fail(ErrUnsafe, err, p, "lock file %s is not a regular file; remove it", p)
	}
	wait := 5 * time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			unix.Close(fd)
			return nil, fmt.Errorf("sockets: lock %s: %w", p, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			unix.Close(fd)
			return nil, fail(ErrLocked, ctx.Err(), p, "another sockvisor process holds the lock %s (%v); wait for it to finish and try again", p, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { err = unix.Close(fd) }) // closing drops the flock
		return err
	}, nil
}
