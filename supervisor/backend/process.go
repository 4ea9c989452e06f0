package backend

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/atomicfile"
	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/shim"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// outputSettle bounds how long, after the main process exited, its exit
// waits for the rest of its output (still in the pipe) so StartError.Tail
// holds its last words; EOF usually comes within a millisecond.
const outputSettle = 250 * time.Millisecond

// pollGroup is how often an exited process's group is checked for
// leftovers, in real time.
const pollGroup = 25 * time.Millisecond

// startProcess spawns one process for in through the exec shim. Owner only.
func (b *Backend) startProcess(in *instance) (*process, error) {
	cmd, err := buildCommand(b.cfg, in.idx, in.path, b.stateDir)
	if err != nil {
		return nil, err
	}
	if len(cmd.files) > 0 {
		if err := b.writeStateFiles(cmd.files); err != nil {
			return nil, err
		}
	}
	if b.cfg.Handoff == config.HandoffSelf {
		if err := sockets.ClearStale(in.path, b.log); err != nil {
			return nil, err
		}
	}

	extra := make(map[string]string, len(b.cfg.Environment)+len(cmd.env)+1)
	for k, v := range b.cfg.Environment {
		extra[k] = v
	}
	for k, v := range cmd.env {
		extra[k] = v
	}
	if b.notify != nil {
		extra["NOTIFY_SOCKET"] = b.notify.addr
	}
	env := shim.Environ(b.parentEnv, b.acct, extra)

	spec := shim.Spec{
		Path: cmd.argv[0], Args: cmd.argv, Dir: b.workDir(),
		SetUmask: true, Umask: uint32(b.cfg.Umask),
		SetCreds: true, UID: b.cfg.UID, GID: b.cfg.GID, Groups: b.cfg.Groups,
	}

	// fds: 0 stdin, 1 stdout, 2 stderr, then sockets from 3.
	devnull, err := os.OpenFile(os.DevNull, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	defer outW.Close()
	errR, errW, err := pipe()
	if err != nil {
		outR.Close()
		return nil, err
	}
	defer errW.Close()
	if os.Geteuid() == 0 {
		// The backend may reopen its stdout/stderr by name
		// (/proc/self/fd/2, /dev/stderr: PHP-FPM's error_log does) after
		// dropping privileges; a pipe is otherwise root's, mode 0600.
		for _, w := range []*os.File{outW, errW} {
			if err := w.Chown(b.cfg.UID, b.cfg.GID); err != nil {
				outR.Close()
				errR.Close()
				return nil, fmt.Errorf("handing the output pipe to uid %d: %w", b.cfg.UID, err)
			}
		}
	}
	files := []*os.File{devnull, outW, errW}
	if in.sock != nil && b.resetBlocking(in) {
		if err := in.sock.SetBlocking(); err != nil {
			outR.Close()
			errR.Close()
			return nil, fmt.Errorf("putting socket %s back in blocking mode: %w", in.path, err)
		}
	}
	switch b.cfg.Handoff {
	case config.HandoffStdin:
		files[0] = in.sock.File()
	case config.HandoffListenFDs, config.HandoffFPM:
		files = append(files, in.sock.File())
		if cmd.listenEnv {
			spec.ListenFDs = 1
			spec.FDNames = []string{filepath.Base(in.path)}
		}
	}

	// The shim closes every descriptor above 2 but these, so nothing
	// sockvisor inherited without close-on-exec reaches the backend.
	spec.KeepFDs = len(files) - 3
	attr := &syscall.ProcAttr{Env: env, Sys: &syscall.SysProcAttr{Setpgid: true}}
	var pid int
	err = withFDs(files, func(fds []uintptr) error {
		attr.Files = fds
		var serr error
		pid, _, serr = syscall.StartProcess(b.exe, spec.Argv(b.exe), attr)
		return serr
	})
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting %s through the exec shim %s: %w", cmd.argv[0], b.exe, err)
	}
	now := b.clock.Now()
	p := &process{inst: in, pid: pid, mainPID: pid, started: now, deadline: now.Add(b.cfg.Ready.Timeout), goneCh: make(chan struct{}), outDone: make(chan struct{})}
	b.log.Info("started", "instance", in.idx, "pid", pid, "command", strings.Join(cmd.argv, " "))
	b.forward(p, outR, "stdout")
	b.forward(p, errR, "stderr")
	go func() { p.outputs.Wait(); close(p.outDone) }()
	b.helpers.Add(1)
	go b.reap(p)
	return p, nil
}

// resetBlocking reports whether to clear O_NONBLOCK before a spawn. A
// socket starts a backend in blocking mode, as systemd hands it over:
// PHP-FPM workers and fd-0 FastCGI programs never set the mode and exit or
// spin on EAGAIN. But the flag lives on the file description every process
// of the instance shares, and a server that set it (gunicorn, uWSGI, Go)
// and is still running would then block inside accept(2), deaf to its
// graceful stop until a connection arrives (measured: a Go server's
// Listener.Close hung until SIGKILL). So while such a process is alive, the
// new one (which sets its own mode) gets the socket as it is.
func (b *Backend) resetBlocking(in *instance) bool {
	return b.cfg.Handoff == config.HandoffFPM || b.cfg.Handoff == config.HandoffStdin || !b.hasLive(in)
}

// withFDs calls f with the raw fds of files, holding each file's fd open
// (SyscallConn Control) until f returns. Unlike (*os.File).Fd or
// exec.Cmd.ExtraFiles it never changes the blocking mode behind our back.
func withFDs(files []*os.File, f func(fds []uintptr) error) error {
	fds := make([]uintptr, 0, len(files))
	var rec func(i int) error
	rec = func(i int) error {
		if i == len(files) {
			return f(fds)
		}
		rc, err := files[i].SyscallConn()
		if err != nil {
			return err
		}
		var inner error
		if err := rc.Control(func(fd uintptr) {
			fds = append(fds, fd)
			inner = rec(i + 1)
		}); err != nil {
			return err
		}
		return inner
	}
	return rec(0)
}

// pipe returns a pollable read end and a write end for a child, both
// close-on-exec (StartProcess dups the child's copy onto 1 or 2).
func pipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("creating an output pipe: %w", err)
	}
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, fmt.Errorf("creating an output pipe: %w", err)
	}
	return os.NewFile(uintptr(p[0]), "backend-output"), os.NewFile(uintptr(p[1]), "backend-output-w"), nil
}

// maxLine bounds one forwarded line; the rest of a longer line is dropped.
const maxLine = 64 << 10

// forward logs each line the process writes to stream, whole: never split
// across records nor merged. It ends at EOF, i.e. when every process
// holding the pipe has exited.
func (b *Backend) forward(p *process, f *os.File, stream string) {
	b.output.Add(1)
	p.outputs.Add(1)
	go func() {
		defer b.output.Done()
		defer p.outputs.Done()
		defer f.Close()
		defer b.strays.track(f)()
		r := bufio.NewReaderSize(f, maxLine)
		for {
			line, err := r.ReadSlice('\n')
			truncated := false
			if errors.Is(err, bufio.ErrBufferFull) {
				truncated = true
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = r.ReadSlice('\n')
				}
			}
			if text := strings.TrimRight(string(line), "\r\n"); text != "" || truncated {
				p.tail.add(text)
				if truncated {
					b.log.Info("output", "instance", p.inst.idx, "pid", p.pid, "stream", stream, "line", text, "truncated", true)
				} else {
					b.log.Info("output", "instance", p.inst.idx, "pid", p.pid, "stream", stream, "line", text)
				}
			}
			if err != nil {
				return
			}
		}
	}()
}

// reap waits for the main process, reports its exit, then reports when its
// process group has no live member left.
func (b *Backend) reap(p *process) {
	defer b.helpers.Done()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(p.pid, &ws, 0, nil)
		if err == nil || !errors.Is(err, syscall.EINTR) {
			if err != nil {
				// ECHILD: someone else reaped it (SIGCHLD ignored?).
				ws = syscall.WaitStatus(0xff << 8)
			}
			break
		}
	}
	select {
	case <-p.outDone:
	case <-time.After(outputSettle):
	case <-b.quit:
	}
	b.send(event{kind: evExited, p: p, ws: ws})
	for len(procfs.GroupMembers(p.pid)) > 0 {
		select {
		case <-b.quit:
			return
		case <-time.After(pollGroup):
		}
	}
	b.send(event{kind: evGone, p: p})
}

// signalGroup sends sig to every process of the group; a group that is
// already empty is not an error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %s to process group %d: %w", unix.SignalName(sig), pgid, err)
	}
	return nil
}

// writeStateFiles writes generated files atomically into the state
// directory, readable by the backend's group only.
func (b *Backend) writeStateFiles(files map[string]string) error {
	if err := b.ensureStateDir(); err != nil {
		return err
	}
	// root:<its group> 0640 (the owner only when we are root).
	o := atomicfile.Options{Mode: 0o640, Chown: os.Geteuid() == 0, UID: 0, GID: b.cfg.GID}
	for name, content := range files {
		if err := atomicfile.Write(filepath.Join(b.stateDir, name), []byte(content), o); err != nil {
			return err
		}
	}
	return nil
}

// ensureStateDir creates the backend's private directory, root:<its
// group> 0750: only root and the backend reach what is inside (generated
// configs, the notify socket).
func (b *Backend) ensureStateDir() error {
	if err := os.MkdirAll(filepath.Dir(b.stateDir), 0o755); err != nil {
		return fmt.Errorf("creating state directory %s: %w", filepath.Dir(b.stateDir), err)
	}
	if err := os.Mkdir(b.stateDir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating state directory %s: %w", b.stateDir, err)
	}
	if fi, err := os.Lstat(b.stateDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory (%v); remove it", b.stateDir, err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(b.stateDir, 0, b.cfg.GID); err != nil {
			return fmt.Errorf("setting the group of %s: %w", b.stateDir, err)
		}
	}
	if err := os.Chmod(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", b.stateDir, err)
	}
	return nil
}
