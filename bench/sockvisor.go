package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/control"
)

// sv is one running `sockvisor run`.
type sv struct {
	e       *env
	name    string
	dir     string // holds the config, the socket dir and the control socket
	cfg     string
	ctl     string
	sockDir string
	p       *proc
	// ready is the time from starting the process to its READY=1.
	ready time.Duration
}

// svStatus is the part of `sockvisor status --json` the bench reads.
type svStatus struct {
	Backends []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		PID   int    `json:"pid"`
		Ready bool   `json:"ready"`
	} `json:"backends"`
}

// startSockvisor writes a config made of the global lines (socket_dir and
// control_socket are added) and body, starts `sockvisor run` with
// NOTIFY_SOCKET pointing at a datagram socket of ours, and waits for READY=1.
func (e *env) startSockvisor(ctx context.Context, name, body string, limit time.Duration) (*sv, error) {
	return e.startSockvisorWatch(ctx, name, body, limit, nil)
}

// startSockvisorWatch is startSockvisor that tells onStart (if not nil)
// sockvisor's pid as soon as it runs.
func (e *env) startSockvisorWatch(ctx context.Context, name, body string, limit time.Duration, onStart func(pid int)) (*sv, error) {
	s := &sv{e: e, name: name, dir: filepath.Join(e.work, name)}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	os.Chmod(s.dir, 0o755)
	s.cfg = filepath.Join(s.dir, "sv.hcl")
	s.sockDir = filepath.Join(s.dir, "s")
	s.ctl = filepath.Join(s.dir, "ctl")
	src := fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\n%s", s.sockDir, s.ctl, body)
	if err := os.WriteFile(s.cfg, []byte(src), 0o644); err != nil {
		return nil, err
	}
	notifyPath := filepath.Join(s.dir, "notify")
	os.Remove(notifyPath)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	defer os.Remove(notifyPath)
	started := time.Now()
	s.p, err = e.start("sockvisor-"+name, []string{e.bin, "run", "--config", s.cfg}, []string{"NOTIFY_SOCKET=" + notifyPath})
	if err != nil {
		return nil, err
	}
	if onStart != nil {
		onStart(s.p.pid())
	}
	readyc := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			nc.SetReadDeadline(time.Now().Add(limit))
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line == "READY=1" {
					readyc <- time.Now()
					return
				}
			}
		}
	}()
	select {
	case at := <-readyc:
		s.ready = at.Sub(started)
		return s, nil
	case <-s.p.done:
		return nil, fmt.Errorf("sockvisor %s exited before READY=1; see %s", name, filepath.Join(e.logs, "sockvisor-"+name+".log"))
	case <-time.After(limit):
		s.stop()
		return nil, fmt.Errorf("sockvisor %s: no READY=1 within %s", name, limit)
	case <-ctx.Done():
		s.stop()
		return nil, errInterrupted
	}
}

// stop sends SIGTERM (sockvisor stops its backends) and waits; it returns
// how long the stop took.
func (s *sv) stop() time.Duration {
	t := time.Now()
	s.e.stop(s.p, syscall.SIGTERM, 60*time.Second)
	return time.Since(t)
}

func (s *sv) cli(ctx context.Context, limit time.Duration, args ...string) (string, error) {
	argv := append([]string{s.e.bin, args[0], "--config", s.cfg}, args[1:]...)
	return s.e.run(ctx, limit, argv...)
}

// status asks the control socket directly: polling through the CLI would
// fork a process every few milliseconds during the measurements.
func (s *sv) status(ctx context.Context) (*svStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := control.NewClient(s.ctl).Status(ctx)
	if err != nil {
		return nil, err
	}
	var st svStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return &st, nil
}

// backendPID returns the pid of backend name once it is ready with a pid
// other than not (0: any).
func (s *sv) backendPID(ctx context.Context, name string, not int) (int, error) {
	var pid int
	err := waitFor(ctx, 30*time.Second, "backend "+name+" ready", func() error {
		st, err := s.status(ctx)
		if err != nil {
			return err
		}
		for _, b := range st.Backends {
			if b.Name == name && b.Ready && b.PID > 0 && b.PID != not {
				pid = b.PID
				return nil
			}
		}
		return fmt.Errorf("backend %s not ready", name)
	})
	return pid, err
}

// restart runs `sockvisor restart NAME`.
func (s *sv) restart(ctx context.Context, name string) error {
	_, err := s.cli(ctx, 90*time.Second, "restart", name)
	return err
}

// rssKiB and cpuTicks read sockvisor's own resource use.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var n int
			_, err := fmt.Sscanf(strings.TrimPrefix(line, "VmRSS:"), "%d", &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// cpuTicks returns utime+stime of pid in clock ticks (USER_HZ, 100 on Linux).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields restart after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return ut + st, nil
}

// stopPID stops the process pid that e started (SIGTERM, then the group's
// SIGKILL after a minute).
func (e *env) stopPID(pid int) {
	e.mu.Lock()
	p := e.procs[pid]
	e.mu.Unlock()
	e.stop(p, syscall.SIGTERM, 60*time.Second)
}
