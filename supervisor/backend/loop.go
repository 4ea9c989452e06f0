package backend

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Run is the owner goroutine: it starts every instance and supervises
// until ctx ends or Stop is called, then stops every process group and
// returns. It returns nil after a clean stop. Run may be called once.
func (b *Backend) Run(ctx context.Context) error {
	if !b.started.CompareAndSwap(false, true) {
		return fmt.Errorf("backend %q: Run called twice", b.cfg.Name)
	}
	defer close(b.done)
	if b.cfg.Notify {
		n, err := b.openNotify()
		if err != nil {
			b.log.Warn("no notify socket; readiness falls back to the probe alone", "error", err)
		} else {
			b.notify = n
			b.helpers.Add(1)
			go func() {
				defer b.helpers.Done()
				n.read(func(pid int, vars map[string]string) {
					b.send(event{kind: evNotify, pid: pid, vars: vars})
				})
			}()
		}
	}
	for _, in := range b.insts {
		if b.cfg.OnDemand() && in.sock != nil {
			b.goIdle(in)
		} else {
			b.spawn(in)
		}
	}
	b.publish()

	ctxDone := ctx.Done()
	for !b.stopping || len(b.procs) > 0 {
		select {
		case ev := <-b.events:
			b.handle(ev)
		case r := <-b.reqs:
			b.request(r)
		case <-ctxDone:
			ctxDone = nil
			b.beginStop()
		}
		b.publish()
		b.flush()
	}

	for _, in := range b.insts {
		b.unwatch(in)
	}
	close(b.quit)
	if b.notify != nil {
		b.notify.Close()
	}
	b.helpers.Wait()
	b.stopStrays() // setsid'd processes still holding the socket or pipes
	for _, in := range b.insts {
		in.slot.drain()
	}
	b.waitOutput()
	for _, r := range b.stopReplies {
		b.answer(r, b.runErr)
	}
	b.publish()
	b.flush()
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	return b.runErr
}

func (b *Backend) waitOutput() {
	done := make(chan struct{})
	go func() { b.output.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(outputWait):
		b.log.Warn("a process outside the backend's group still holds its output pipe", "pids", b.strayPIDs())
	}
}

// request is a caller's call (Restart, Reload, Stop, Start, Idle); the
// owner answers on reply, once.
type reqKind int

const (
	reqRestart reqKind = iota
	reqReload
	reqStop
	reqStart
	reqIdle
)

type request struct {
	kind  reqKind
	reply chan error
}

// event is what a helper goroutine tells the owner; handle applies it.
type evKind int

const (
	evExited        evKind = iota // reaper: the main process p ended (ws)
	evGone                        // reaper: p's group has no live process left
	evProbed                      // probe: p's readiness probe ended (err)
	evNotify                      // notify reader: a datagram from pid (vars)
	evReadyDeadline               // timer: p's READY=1 is due
	evBackoff                     // timer: the backoff of in, generation gen, ended
	evKill                        // timer: p's stop_timeout passed
	evKillDeadline                // timer: killWait passed since p's SIGKILL
	evWake                        // watch: a connection waits on an idle instance's socket
	evIdleCheck                   // timer: sample a running on-demand instance's connections
)

type event struct {
	kind evKind
	p    *process
	in   *instance
	gen  uint64
	ws   syscall.WaitStatus
	err  error
	pid  int
	vars map[string]string
}

// send delivers an event to the owner unless it has finished.
func (b *Backend) send(ev event) {
	select {
	case b.events <- ev:
	case <-b.quit:
	}
}

// after delivers ev after d on the injected clock; a timer tied to a
// process ends early once that process is gone.
func (b *Backend) after(d time.Duration, ev event) {
	var gone chan struct{}
	if ev.p != nil {
		gone = ev.p.goneCh
	}
	b.helpers.Add(1)
	go func() {
		defer b.helpers.Done()
		select {
		case <-b.clock.After(d):
			b.send(ev)
		case <-gone:
		case <-b.quit:
		}
	}()
}

// handle applies one event. Owner only. The transitions it leads to are
// in lifecycle.go (processes, backoff) and ondemand.go (wake, idleness).
func (b *Backend) handle(ev event) {
	p := ev.p
	switch ev.kind {
	case evExited:
		b.exited(p, ev.ws)
	case evGone:
		b.gone(p)
	case evProbed:
		b.probed(p, ev.err)
	case evReadyDeadline:
		b.readyDeadline(p)
	case evNotify:
		b.notified(ev.pid, ev.vars)
	case evBackoff:
		b.restartDue(ev.in, ev.gen)
	case evKill:
		b.kill(p)
	case evKillDeadline:
		b.abandon(p)
	case evWake:
		b.woken(ev.in, ev.gen)
	case evIdleCheck:
		b.idleCheck(ev.in, ev.gen)
	}
}

// request handles a caller's request. Owner only.
func (b *Backend) request(r request) {
	if r.kind == reqStop {
		b.stopReplies = append(b.stopReplies, r.reply)
		b.beginStop()
		return
	}
	if b.stopping {
		b.answer(r.reply, fmt.Errorf("backend %q is stopping: %w", b.cfg.Name, ErrStopped))
		return
	}
	switch {
	case r.kind == reqStart:
		b.startNow(r.reply)
		return
	case r.kind == reqIdle:
		b.idleNow(r.reply)
		return
	case b.allIdle():
		b.answer(r.reply, fmt.Errorf("backend %q: %w", b.cfg.Name, ErrIdle))
		return
	}
	if r.kind == reqReload && !b.cfg.ReloadReplace {
		b.reloadSignal(r.reply)
		return
	}
	o := &op{b: b, reply: r.reply, remaining: len(b.insts)}
	if o.remaining == 0 {
		b.answer(r.reply, nil)
		return
	}
	for _, in := range b.insts {
		if in.state == StateIdle || (in.cur != nil && in.cur.idleStop) {
			o.finish(nil) // the next connection starts the new process
			continue
		}
		in.ops = append(in.ops, o)
		b.replace(in)
	}
}

// op is one Restart or Reload call spanning every instance.
type op struct {
	b         *Backend
	reply     chan error
	remaining int
	errs      []error
}

func (o *op) finish(err error) {
	if err != nil {
		o.errs = append(o.errs, err)
	}
	o.remaining--
	if o.remaining == 0 {
		o.b.answer(o.reply, errors.Join(o.errs...))
	}
}

// finishOps completes every call waiting on in.
func (in *instance) finishOps(err error) {
	for _, o := range in.ops {
		o.finish(err)
	}
	in.ops = nil
}

// answer queues a reply; the owner sends it once the status it changed is
// published, so a caller that sees Restart return sees the new pid.
func (b *Backend) answer(reply chan error, err error) {
	b.outbox = append(b.outbox, pendingReply{reply, err})
}

type pendingReply struct {
	ch  chan error
	err error
}

// flush sends the queued replies; each channel is buffered and used once.
func (b *Backend) flush() {
	for _, r := range b.outbox {
		r.ch <- r.err
	}
	b.outbox = nil
}
