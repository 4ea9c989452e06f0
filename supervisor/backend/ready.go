package backend

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/probe"
)

// readiness probes p's socket until it answers or the deadline passes and
// reports the outcome to the owner. A cancelled ctx (the process exited or
// is being stopped) reports nothing.
func (b *Backend) readiness(ctx context.Context, p *proc, path string, spec config.Socket, deadline time.Time) {
	defer b.helpers.Done()
	err := b.awaitReady(ctx, path, spec, deadline)
	if ctx.Err() != nil {
		return
	}
	b.send(event{kind: evProbed, p: p, err: err})
}

func (b *Backend) awaitReady(ctx context.Context, path string, spec config.Socket, deadline time.Time) error {
	if b.cfg.Handoff == "self" {
		if err := b.awaitSocket(ctx, path, deadline); err != nil {
			return err
		}
		if b.fixUp != nil {
			if err := b.fixUp(spec); err != nil {
				return fmt.Errorf("fixing owner and mode of %s: %w", path, err)
			}
		}
	}
	for {
		actx, cancel := context.WithTimeout(ctx, probeAttempt)
		err := b.probeOnce(actx, path)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !b.clock.Now().Before(deadline) {
			return fmt.Errorf("%w within ready.timeout %s; last probe: %w", ErrNotReady, b.cfg.Ready.Timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.clock.After(probeInterval):
		}
	}
}

// awaitSocket waits for a self-binding backend to create its socket.
func (b *Backend) awaitSocket(ctx context.Context, path string, deadline time.Time) error {
	for {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		if !b.clock.Now().Before(deadline) {
			return fmt.Errorf("%w: the backend did not create its socket %s within ready.timeout %s; check that its command binds that path", ErrNotReady, path, b.cfg.Ready.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollGroup):
		}
	}
}

// probeOnce asks the socket once, in the backend's protocol.
func (b *Backend) probeOnce(ctx context.Context, path string) error {
	var err error
	switch b.cfg.Protocol {
	case "uwsgi":
		_, err = probe.UWSGI(ctx, path, b.cfg.Ready.Path)
	case "fcgi":
		if b.srv.fcgiRequestProbe {
			_, _, err = probe.FastCGIRequest(ctx, path, b.cfg.Ready.Path, nil)
		} else {
			_, err = probe.FastCGI(ctx, path)
		}
	default:
		_, err = probe.HTTP(ctx, path, b.cfg.Ready.Path)
	}
	return err
}
