package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/shim"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// Socket is a listening socket owned by the supervisor (sockets.Listener).
// A missing socket is a nil interface, never a nil pointer inside one.
type Socket interface {
	// File is the listening socket; the backend passes its fd to children.
	File() *os.File
	// Path is the socket's path in socket_dir.
	Path() string
	// SetBlocking clears O_NONBLOCK on the shared file description; it is
	// called before every spawn.
	SetBlocking() error
	// EnsurePath restores the path if a backend unlinked it; it is called
	// after every child exit.
	EnsurePath() (restored bool, err error)
}

// The daemon hands its listeners over as Sockets.
var _ Socket = (*sockets.Listener)(nil)

// Options configures a Backend; zero values get defaults.
type Options struct {
	// Logger is named after the backend by New; default a null logger.
	Logger hclog.Logger
	// Executable is re-executed as "exec-shim"; default os.Executable().
	Executable string
	// StateDir is the parent of the backend's private directory
	// (StateDir/<name>) for generated files such as PHP-FPM pool configs;
	// default DefaultStateDir. Never inside socket_dir.
	StateDir string
	// FixUp sets owner, group, mode and label of a socket a "self" backend
	// created. It runs on a helper goroutine once the socket exists, before
	// the readiness probe. nil skips it.
	FixUp func(config.Socket) error
	// Clock defaults to the real clock.
	Clock Clock
	// Environ is the environment the allow-list filters; default os.Environ().
	Environ []string
}

// DefaultStateDir is the default Options.StateDir.
const DefaultStateDir = "/run/sockvisor-state"

// Errors callers can test with errors.Is.
var (
	// ErrStopped means the backend was stopped (or Run has returned).
	ErrStopped = errors.New("backend stopped")
	// ErrNotReady means a process did not become ready in time.
	ErrNotReady = errors.New("backend not ready")
)

// Backend supervises the processes of one configured backend.
type Backend struct {
	cfg       *config.Backend
	log       hclog.Logger
	clock     Clock
	exe       string
	stateDir  string
	fixUp     func(config.Socket) error
	parentEnv []string
	srv       serverFlags

	reqs    chan request
	events  chan event
	quit    chan struct{} // closed when the owner loop ends; helpers stop
	done    chan struct{} // closed when Run has returned
	started atomic.Bool
	helpers sync.WaitGroup // timers, probes, reapers, notify reader
	output  sync.WaitGroup // output forwarders
	strays  strayTracker   // open output pipes, to find escaped processes (strays.go)

	mu      sync.Mutex // guards the fields below
	status  Status
	changed chan struct{} // closed and replaced on every status change
	ready   chan struct{} // closed the first time every instance is ready
	// startErr is the latest failed start of an instance never ready yet;
	// WaitReady returns it.
	startErr *StartError

	// Owner goroutine only.
	insts       []*instance
	procs       map[*process]struct{} // neither gone nor abandoned
	stopping    bool
	stopReplies []chan error
	notify      *notifySocket
	sawReady    bool // some process of this backend sent READY=1
	acct        shim.Account
	runErr      error
	outbox      []pendingReply
	od          odStats // on-demand counters (ondemand.go)
}

// Timing constants not in the config.
const (
	// probeInterval separates readiness probes.
	probeInterval = 100 * time.Millisecond
	// probeAttempt bounds one probe, in real time.
	probeAttempt = 2 * time.Second
	// killWait bounds the wait for a group after SIGKILL.
	killWait = 5 * time.Second
	// outputWait bounds the wait for output forwarders once every group is
	// gone (a process outside the group may hold the pipe).
	outputWait = 2 * time.Second
)

// New prepares a supervisor for b; socks are its listening sockets,
// instance 0 first (nil for handoff self, which binds b.Sockets itself).
// Nothing starts until Run. It fails when sockvisor's own executable cannot
// be found for the exec shim, or when an instance that needs a listening
// socket has none.
func New(b *config.Backend, socks []Socket, opts Options) (*Backend, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	if opts.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding sockvisor's executable for the exec shim: %w", err)
		}
		opts.Executable = exe
	}
	be := &Backend{
		cfg:       b,
		log:       opts.Logger.Named(b.Name),
		clock:     opts.Clock,
		exe:       opts.Executable,
		stateDir:  filepath.Join(opts.StateDir, b.Name),
		fixUp:     opts.FixUp,
		parentEnv: opts.Environ,
		srv:       servers[b.Preset],
		reqs:      make(chan request),
		events:    make(chan event, 16),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		changed:   make(chan struct{}),
		ready:     make(chan struct{}),
		procs:     map[*process]struct{}{},
	}
	for i, s := range b.Sockets {
		in := &instance{idx: i, spec: s, path: s.Path, state: StateStopped, slot: newProbeSlot()}
		if b.Handoff != config.HandoffSelf {
			if i >= len(socks) || socks[i] == nil {
				return nil, fmt.Errorf("backend %q has no listening socket for instance %d (%s); the daemon must create it before starting the backend", b.Name, i, s.Path)
			}
			in.sock = socks[i]
			in.path = socks[i].Path()
		}
		be.insts = append(be.insts, in)
	}
	be.acct = account(b.UID, b.User)
	be.publish()
	return be, nil
}

func (b *Backend) openNotify() (*notifySocket, error) {
	if err := b.ensureStateDir(); err != nil {
		return nil, err
	}
	return listenNotify(b.stateDir, b.cfg, b.log)
}

// account looks up the name and home of uid for HOME, USER and LOGNAME.
func account(uid int, name string) shim.Account {
	acct := shim.Account{Name: name, Home: "/"}
	if u, err := user.LookupId(fmt.Sprint(uid)); err == nil {
		acct.Name, acct.Home = u.Username, u.HomeDir
	}
	return acct
}

// workDir is directory, else the user's home if it exists, else /.
func (b *Backend) workDir() string {
	if b.cfg.Directory != "" {
		return b.cfg.Directory
	}
	if fi, err := os.Stat(b.acct.Home); err == nil && fi.IsDir() {
		return b.acct.Home
	}
	return "/"
}

// Name is the backend's name.
func (b *Backend) Name() string { return b.cfg.Name }

// call sends a request and waits for its reply.
func (b *Backend) call(ctx context.Context, kind reqKind) error {
	r := request{kind: kind, reply: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-b.done:
		if kind == reqStop {
			return nil
		}
		return fmt.Errorf("backend %q: %w", b.cfg.Name, ErrStopped)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart replaces every instance's process without dropping a request:
// a new process starts on the same socket, and the old one is stopped
// once the new one is ready (both accept meanwhile). For handoff self the
// old process stops first; connections fail in between. A backend that is
// backing off or failed is started at once. It returns nil when every
// instance is replaced. Otherwise it returns as soon as each instance's
// attempt is decided: the moment a new process exits, not after
// ready.timeout. Each failed instance contributes a *StartError (joined
// with errors.Join when several fail; use errors.As) naming the backend,
// the exit status and the new process's last output lines; the old
// process of that instance keeps serving. ctx ending returns ctx.Err().
func (b *Backend) Restart(ctx context.Context) error { return b.call(ctx, reqRestart) }

// Reload sends reload_signal to each instance's main process, or replaces
// it as Restart does (same errors) when reload_signal is "replace".
func (b *Backend) Reload(ctx context.Context) error { return b.call(ctx, reqReload) }

// Stop stops every process group (stop_signal, stop_timeout, SIGKILL) and
// returns when they are gone; Run then returns. Stopping a backend whose
// Run has returned is a no-op.
func (b *Backend) Stop(ctx context.Context) error { return b.call(ctx, reqStop) }
