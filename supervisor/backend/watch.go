package backend

import (
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// readWatcher tells an idle on-demand backend that a connection is waiting
// on its listening socket, without accepting it and without touching the
// socket's file status flags: it polls a dup of sockvisor's descriptor with
// epoll, whose readiness does not depend on O_NONBLOCK (Go's netpoller
// would need the flag set on the description every backend shares; see
// resetBlocking). One epoll instance and one goroutine (one thread blocked
// in epoll_wait) serve every idle socket of the process, so 500 idle sites
// cost one thread, not 500. Registrations are one-shot: the loop fires fn
// once, closes the dup and forgets it. The goroutine ends when nothing is
// registered.
type readWatcher struct {
	mu      sync.Mutex // guards the fields below
	epfd    int
	wakefd  int // eventfd: wakes the loop to notice it has nothing to watch
	regs    map[int]func()
	running bool
}

var watcher readWatcher

// watchReadable calls fn once, on the poll goroutine, when f's socket is
// readable (a listener: a connection waits in its accept queue). cancel
// stops the watch if fn has not run yet; fn never runs after cancel
// returns.
func watchReadable(f *os.File) (fired <-chan struct{}, cancel func(), err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("watching %s for connections: %w", f.Name(), err)
	}
	dup := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, nil, fmt.Errorf("watching %s for connections: %w", f.Name(), err)
	}
	if derr != nil {
		return nil, nil, fmt.Errorf("duplicating the descriptor of %s to watch it: %w", f.Name(), derr)
	}
	ch := make(chan struct{})
	w := &watcher
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.initLocked(); err != nil {
		unix.Close(dup)
		return nil, nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(dup)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, dup, &ev); err != nil {
		unix.Close(dup)
		return nil, nil, fmt.Errorf("epoll_ctl on the socket %s: %w", f.Name(), err)
	}
	w.regs[dup] = func() { close(ch) }
	if !w.running {
		w.running = true
		go w.loop()
	}
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, ok := w.regs[dup]; ok {
			w.dropLocked(dup)
		}
	}, nil
}

func (w *readWatcher) initLocked() error {
	if w.regs != nil {
		return nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1 for on-demand sockets: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return fmt.Errorf("eventfd for on-demand sockets: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return fmt.Errorf("epoll_ctl on the eventfd: %w", err)
	}
	w.epfd, w.wakefd, w.regs = epfd, wfd, map[int]func(){}
	return nil
}

// dropLocked forgets fd and closes it; the last one wakes the loop to end.
func (w *readWatcher) dropLocked(fd int) {
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
	delete(w.regs, fd)
	if len(w.regs) == 0 {
		var one [8]byte
		one[0] = 1
		unix.Write(w.wakefd, one[:])
	}
}

func (w *readWatcher) loop() {
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, evs, -1)
		if err == unix.EINTR {
			continue
		}
		w.mu.Lock()
		if err != nil {
			// Cannot happen with a valid epfd; fire everything so no
			// backend stays idle with a connection waiting.
			for fd, fn := range w.regs {
				fn()
				w.dropLocked(fd)
			}
		}
		for _, ev := range evs[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == w.wakefd {
				var buf [8]byte
				unix.Read(w.wakefd, buf[:])
				continue
			}
			if fn, ok := w.regs[fd]; ok {
				fn()
				w.dropLocked(fd)
			}
		}
		if len(w.regs) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}
