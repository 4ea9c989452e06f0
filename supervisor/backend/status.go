package backend

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// State is a lifecycle state.
type State string

// States, as shown by `sockvisor status`.
const (
	StateStarting State = "starting"
	StateReady    State = "ready"
	StateBackoff  State = "backoff"
	StateFailed   State = "failed" // crash loop; still retried every restart.max_delay
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
)

// Exit describes how a process ended. Code is the exit status, or 128+N for
// death by signal N, as shells report it.
type Exit struct {
	PID    int       `json:"pid"`
	Code   int       `json:"code"`
	Signal string    `json:"signal,omitempty"`
	At     time.Time `json:"at"`
}

func exitOf(pid int, ws syscall.WaitStatus, at time.Time) *Exit {
	ex := &Exit{PID: pid, At: at, Code: ws.ExitStatus()}
	if ws.Signaled() {
		ex.Code = 128 + int(ws.Signal())
		ex.Signal = unix.SignalName(ws.Signal())
	}
	return ex
}

func (e *Exit) describe() string {
	if e.Signal != "" {
		return fmt.Sprintf("was killed by %s", e.Signal)
	}
	return fmt.Sprintf("exited with status %d", e.Code)
}

// InstanceStatus is one instance (one socket, one process).
type InstanceStatus struct {
	Instance  int        `json:"instance"`
	Socket    string     `json:"socket"`
	State     State      `json:"state"`
	PID       int        `json:"pid,omitempty"`
	Ready     bool       `json:"ready"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// Uptime is seconds since StartedAt, computed when Status is called.
	Uptime float64 `json:"uptime_seconds,omitempty"`
	// Restarts counts restarts after crashes and failed starts.
	Restarts  int    `json:"restarts"`
	LastExit  *Exit  `json:"last_exit,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// NextStart is when a backed-off instance starts again.
	NextStart *time.Time `json:"next_start,omitempty"`
	// StatusText is the last STATUS= the backend sent over sd_notify.
	StatusText string `json:"status_text,omitempty"`
	// MainPID is the main process the backend named with MAINPID=, when
	// it is not PID; signals go to it.
	MainPID int `json:"main_pid,omitempty"`
	// Notified: the process sent READY=1.
	Notified bool `json:"notified,omitempty"`
	// Reloading: the process sent RELOADING=1 and no READY=1 since.
	Reloading bool `json:"reloading,omitempty"`
	// LastRunAt is when an on-demand instance's last process ended.
	LastRunAt *time.Time `json:"last_ran_at,omitempty"`
}

// Status is a snapshot of the whole backend. Its top-level fields summarize
// the instances: the worst state, instance 0's pid and start, the sum of
// restarts, the latest exit and error.
type Status struct {
	Name      string     `json:"name"`
	State     State      `json:"state"`
	PID       int        `json:"pid,omitempty"`
	Sockets   []string   `json:"sockets"`
	Ready     bool       `json:"ready"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	Uptime    float64    `json:"uptime_seconds,omitempty"`
	Restarts  int        `json:"restarts"`
	LastExit  *Exit      `json:"last_exit,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	// Start is the backend's start mode, "eager" or "on-demand".
	Start string `json:"start,omitempty"`
	// LastRunAt is the latest LastRunAt of the instances.
	LastRunAt *time.Time       `json:"last_ran_at,omitempty"`
	Instances []InstanceStatus `json:"instances"`
}

// Status returns a snapshot; it never blocks on the owner goroutine.
func (b *Backend) Status() Status {
	b.mu.Lock()
	st := b.status
	b.mu.Unlock()
	st.Instances = append([]InstanceStatus(nil), st.Instances...)
	now := b.clock.Now()
	for i := range st.Instances {
		if t := st.Instances[i].StartedAt; t != nil {
			st.Instances[i].Uptime = now.Sub(*t).Seconds()
		}
	}
	if st.StartedAt != nil {
		st.Uptime = now.Sub(*st.StartedAt).Seconds()
	}
	return st
}

// WaitReady returns nil once every instance is ready, or idle (an
// on-demand instance waiting for its first connection). It does not wait
// for ctx when a start fails: while an instance has never been ready, the
// failure of a start attempt of it (the process exited, or was not ready
// within ready.timeout, or could not be started) makes WaitReady return at
// once with that attempt's *StartError, which wraps ErrNotReady and
// carries the exit status and the last output lines (use errors.As). The
// backend keeps retrying under its restart policy; stop it if the failure
// is final for you. Otherwise it returns an error wrapping ctx.Err() when
// ctx ends first (naming the last problem), or ErrStopped once the backend
// stopped. This is a contract the daemon relies on.
func (b *Backend) WaitReady(ctx context.Context) error {
	for {
		b.mu.Lock()
		st, ch, serr := b.status, b.changed, b.startErr
		b.mu.Unlock()
		if st.Ready || st.Serving() {
			return nil
		}
		if serr != nil {
			return serr
		}
		select {
		case <-ch:
		case <-b.done:
			return fmt.Errorf("backend %q: %w", b.cfg.Name, ErrStopped)
		case <-ctx.Done():
			if st.LastError != "" {
				return fmt.Errorf("backend %q is %s (%s): %w", b.cfg.Name, st.State, st.LastError, ctx.Err())
			}
			return fmt.Errorf("backend %q is %s: %w", b.cfg.Name, st.State, ctx.Err())
		}
	}
}

// Ready is closed the first time every instance is ready.
func (b *Backend) Ready() <-chan struct{} { return b.ready }

// Done is closed when Run has returned.
func (b *Backend) Done() <-chan struct{} { return b.done }

// stateRank orders states from best to worst for the summary.
var stateRank = map[State]int{StateReady: 0, StateIdle: 1, StateStarting: 2, StateBackoff: 3, StateFailed: 4, StateStopping: 5, StateStopped: 6}

// publish snapshots the owner's state for Status and WaitReady.
func (b *Backend) publish() {
	st := Status{Name: b.cfg.Name, State: StateReady, Ready: len(b.insts) > 0, Start: b.cfg.Start}
	running := b.started.Load() && !b.stopping
	select {
	case <-b.quit:
		running = false
	default:
	}
	for _, in := range b.insts {
		is := InstanceStatus{Instance: in.idx, Socket: in.path, State: in.state, Restarts: in.restarts, LastExit: in.lastExit, LastError: in.lastErr}
		if !running {
			is.State = StateStopped
			if b.stopping && len(b.procs) > 0 {
				is.State = StateStopping
			}
		}
		if p := in.cur; p != nil && running {
			is.PID = p.pid
			is.Ready = p.wasReady()
			is.StatusText = p.statusText
			is.Notified = p.notified
			is.Reloading = p.reloading
			if p.mainPID != p.pid {
				is.MainPID = p.mainPID
			}
			t := p.started
			is.StartedAt = &t
		}
		if !in.od.lastRun.IsZero() {
			t := in.od.lastRun
			is.LastRunAt = &t
			if st.LastRunAt == nil || t.After(*st.LastRunAt) {
				st.LastRunAt = &t
			}
		}
		if running && (in.state == StateBackoff || in.state == StateFailed) && in.cur == nil {
			t := in.nextStart
			is.NextStart = &t
		}
		st.Sockets = append(st.Sockets, in.path)
		st.Restarts += in.restarts
		st.Ready = st.Ready && is.Ready
		if stateRank[is.State] > stateRank[st.State] {
			st.State = is.State
		}
		if is.LastExit != nil && (st.LastExit == nil || is.LastExit.At.After(st.LastExit.At)) {
			st.LastExit = is.LastExit
		}
		if is.LastError != "" {
			st.LastError = is.LastError
		}
		st.Instances = append(st.Instances, is)
	}
	if len(st.Instances) > 0 {
		st.PID, st.StartedAt = st.Instances[0].PID, st.Instances[0].StartedAt
	}
	if len(st.Instances) == 0 {
		st.State = StateStopped
	}
	var serr *StartError
	for _, in := range b.insts {
		if in.startErr != nil && (serr == nil || serr.Instance > in.idx) {
			serr = in.startErr
		}
	}
	b.mu.Lock()
	b.status = st
	b.startErr = serr
	close(b.changed)
	b.changed = make(chan struct{})
	if st.Ready {
		select {
		case <-b.ready:
		default:
			close(b.ready)
		}
	}
	b.mu.Unlock()
}
