package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/probe"
	"github.com/sockvisor/sockvisor/supervisor/sockdiag"
)

// Readiness is proven by the new process itself. The socket is shared: an
// old process (or a leftover of a crashed sockvisor) may still accept on
// it, and whoever accepts the probe answers it. So a probe connects and
// sends nothing until it knows who accepted the connection: sock_diag on
// our end names the peer socket's inode (0 while the connection still
// waits in the listen queue), and /proc/PID/fd of a process of the new
// generation (its group, pgid == its pid, or a descendant that left the
// group) must hold socket:[peer]. Only then is the protocol probe sent on
// that connection; a connection another process accepted is closed unused
// (that process sees an empty connection) and a new one is tried at the
// next interval. While the old process accepts too, the new one wins
// connections in proportion to its acceptors: replacements under load
// proved ready in 0.4-1.5 s (TestPresets), as before.
//
// Each instance has one probe slot holding at most one connection, handed
// from one readiness goroutine to the next: a connection no process has
// accepted yet stays in the listen queue even after close(2), so it is
// kept and reused. Measured behind a backend that never accepts: a new
// connection per attempt left 30 in the queue after 3 s; the slot, 1.

// probeSlot carries an instance's pending probe connection (nil if none)
// between readiness goroutines; taking it makes the taker the instance's
// only prober.
type probeSlot chan *net.UnixConn

func newProbeSlot() probeSlot {
	s := make(probeSlot, 1)
	s <- nil
	return s
}

// drain closes the parked probe connection, if no prober holds the slot,
// and leaves the slot usable: at Run's end, and when an on-demand backend
// goes idle (its socket must not stay readable because of sockvisor's own
// probe, or the watch would wake at once).
func (s probeSlot) drain() {
	select {
	case c := <-s:
		if c != nil {
			c.Close()
		}
		s <- nil
	default:
	}
}

// readiness probes p's socket until it answers or the deadline passes and
// reports the outcome to the owner. A cancelled ctx (the process exited or
// is being stopped) reports nothing.
func (b *Backend) readiness(ctx context.Context, p *process, path string, spec config.Socket, deadline time.Time) {
	defer b.helpers.Done()
	var conn *net.UnixConn
	select {
	case conn = <-p.inst.slot:
	case <-ctx.Done():
		return
	}
	pr := &prober{b: b, pgid: p.pid, path: path, conn: conn}
	defer func() {
		if p.noPark.Load() {
			// Stopped for idleness: this process would accept a kept
			// connection and wait for a request on it until SIGKILL.
			pr.drop()
		}
		p.inst.slot <- pr.conn
	}()
	err := b.awaitReady(ctx, pr, spec, deadline)
	if ctx.Err() != nil {
		return
	}
	b.send(event{kind: evProbed, p: p, err: err})
}

func (b *Backend) awaitReady(ctx context.Context, pr *prober, spec config.Socket, deadline time.Time) error {
	if b.cfg.Handoff == config.HandoffSelf {
		if err := b.awaitSocket(ctx, pr.path, deadline); err != nil {
			return err
		}
		if b.fixUp != nil {
			if err := b.fixUp(spec); err != nil {
				return fmt.Errorf("fixing owner and mode of %s: %w", pr.path, err)
			}
		}
	}
	for {
		actx, cancel := context.WithTimeout(ctx, probeAttempt)
		err := pr.once(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !b.clock.Now().Before(deadline) {
			if pr.foreign > 0 {
				return fmt.Errorf("%w within ready.timeout %s: %d probe connections were accepted by processes outside the new process group (an old process, or a leftover holding the socket), none by it; last probe: %w", ErrNotReady, b.cfg.Ready.Timeout, pr.foreign, err)
			}
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

// Why one probe step did not pass; wrapped into the readiness error.
var (
	errQueued   = errors.New("no process has accepted the probe connection yet")
	errForeign  = errors.New("a process outside the new process group accepted the probe connection")
	errHungUp   = errors.New("the probe connection was closed before a probe was sent")
	errUnproven = errors.New("cannot tell who accepted the probe connection")
)

// prober is one readiness goroutine's view of the instance's socket.
type prober struct {
	b    *Backend
	pgid int // the new process's group
	path string
	conn *net.UnixConn // pending: connected, not yet known to be the group's
	// foreign counts connections another process accepted.
	foreign int
	gen     []int     // the new generation's pids, as of genAt
	genAt   time.Time // real time
	// unverified: sock_diag is unavailable, so the probe cannot tell who
	// accepted; it then runs unchecked (logged once).
	unverified bool
}

// once advances the probe by one step: connect if needed, find out who
// accepted, and, if it was the new group, run the protocol probe.
func (pr *prober) once(ctx context.Context) error {
	if pr.conn == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", pr.path)
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", pr.path, err)
		}
		pr.conn = c.(*net.UnixConn)
	}
	who, err := pr.acceptedBy()
	switch {
	case errors.Is(err, errUnproven):
		if !pr.unverified {
			pr.unverified = true
			pr.b.log.Warn("cannot tell which process accepts the readiness probe; an old process may answer it", "error", err)
		}
	case err != nil:
		pr.drop()
		return err
	case who == acceptQueued:
		return errQueued // keep it queued; check again next time
	case who != acceptGroup:
		if who == acceptForeign {
			pr.foreign++
		}
		pr.drop()
		return who.err()
	}
	defer pr.drop()
	return pr.b.exchange(ctx, pr.conn)
}

func (pr *prober) drop() {
	if pr.conn != nil {
		pr.conn.Close()
		pr.conn = nil
	}
}

// acceptance is what became of a probe connection.
type acceptance int

const (
	acceptQueued  acceptance = iota // waiting in the listen queue
	acceptGroup                     // accepted by the new process group
	acceptForeign                   // accepted by another process
	acceptHungUp                    // closed by whoever accepted it (or the listener went away)
)

func (a acceptance) err() error {
	if a == acceptHungUp {
		return errHungUp
	}
	return errForeign
}

// holderRetries covers the moment between accept(2) grafting the socket,
// when sock_diag already names it, and the fd appearing in the acceptor's
// table.
const holderRetries = 3

// genFresh is how long a listing of the new generation is reused: while
// an old process wins most probe connections, each loss would otherwise
// cost a pass over /proc. A worker forked since then that accepts a probe
// only costs one more attempt.
const genFresh = 250 * time.Millisecond

// acceptedBy finds out which process accepted the pending connection.
func (pr *prober) acceptedBy() (acceptance, error) {
	ino, err := connInode(pr.conn)
	if err != nil {
		return 0, fmt.Errorf("reading the probe connection's inode: %w", err)
	}
	st, err := sockdiag.Connection(ino)
	if errors.Is(err, sockdiag.ErrUnsupported) {
		return 0, fmt.Errorf("%w: %w", errUnproven, err)
	}
	if err != nil {
		return 0, fmt.Errorf("asking the kernel who accepted the probe connection: %w", err)
	}
	switch {
	case st.Shutdown != 0:
		return acceptHungUp, nil
	case st.Peer == 0:
		return acceptQueued, nil
	}
	link := map[string]bool{procfs.SocketLink(st.Peer): true}
	if pr.gen == nil || time.Since(pr.genAt) >= genFresh {
		pr.gen, pr.genAt = procfs.Generation(pr.pgid), time.Now()
	}
	for i := range holderRetries {
		if len(procfs.HoldersIn(pr.gen, link)) > 0 {
			return acceptGroup, nil
		}
		if i+1 < holderRetries {
			time.Sleep(time.Millisecond)
		}
	}
	return acceptForeign, nil
}

func connInode(conn *net.UnixConn) (uint64, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	return st.Ino, serr
}

// exchange runs the protocol probe on a connection the new group accepted.
func (b *Backend) exchange(ctx context.Context, conn net.Conn) error {
	var err error
	switch b.cfg.Protocol {
	case config.ProtocolUWSGI:
		_, err = probe.UWSGIOn(ctx, conn, b.cfg.Ready.Path)
	case config.ProtocolFCGI:
		if b.srv.fcgiRequestProbe {
			_, _, err = probe.FastCGIRequestOn(ctx, conn, b.cfg.Ready.Path, nil)
		} else {
			_, err = probe.FastCGIOn(ctx, conn)
		}
	default:
		_, err = probe.HTTPOn(ctx, conn, b.cfg.Ready.Path)
	}
	return err
}
