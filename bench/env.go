package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/procfs"
)

//go:embed apps/hello.py apps/index.php apps/density.py
var appFiles embed.FS

// env is one benchmark run's world: a short work directory, the processes
// the run started, and the private Apache in front of everything.
//
// Invariant: every process the run starts goes through env.start, in a
// process group of its own, and env.close stops every one of them (and
// anything left in their groups) before it removes the work directory,
// also after a failure or an interrupt.
type env struct {
	bin    string // sockvisor binary
	work   string // short, world-searchable temp dir
	apps   string // hello.py and index.php, readable by www-data
	logs   string
	apache *apachetest.Instance
	// svbackend is the tiny Go backend, built once.
	svbackend string

	mu    sync.Mutex
	procs map[int]*proc
}

// proc is one process the run started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has been reaped.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit, at most limit.
func (p *proc) wait(limit time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("%s (pid %d) still running after %s", p.name, p.pid(), limit)
	}
}

func newEnv(bin string) (*env, error) {
	work, err := os.MkdirTemp("", "svb")
	if err != nil {
		return nil, err
	}
	e := &env{bin: bin, work: work, procs: map[int]*proc{}}
	e.apps = filepath.Join(work, "apps")
	e.logs = filepath.Join(work, "logs")
	// Apache and the backends run as www-data and must reach the app
	// files and the socket directories below.
	for _, d := range []string{work, e.apps, e.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return e, err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return e, err
		}
	}
	for _, name := range []string{"hello.py", "index.php", "density.py"} {
		b, err := appFiles.ReadFile("apps/" + name)
		if err != nil {
			return e, err
		}
		if err := os.WriteFile(filepath.Join(e.apps, name), b, 0o644); err != nil {
			return e, err
		}
	}
	return e, nil
}

// buildBackend compiles bench/svbackend into the work directory.
func (e *env) buildBackend(ctx context.Context) error {
	out := filepath.Join(e.work, "svbackend")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/sockvisor/sockvisor/bench/svbackend")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build svbackend: %w: %s", err, b)
	}
	e.svbackend = out
	return os.Chmod(out, 0o755)
}

// startApache launches the private Apache with site as its site config.
func (e *env) startApache(site string) error {
	log, err := os.Create(filepath.Join(e.logs, "apache.out"))
	if err != nil {
		return err
	}
	in, err := apachetest.Launch(apachetest.LaunchOptions{Site: site, Output: log})
	if err != nil {
		log.Close()
		return err
	}
	e.apache = in
	return nil
}

// start runs argv in a process group of its own with output to logs/NAME.log.
func (e *env) start(name string, argv []string, extraEnv []string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(e.logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = e.work
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	e.mu.Lock()
	e.procs[cmd.Process.Pid] = p
	e.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		e.mu.Lock()
		delete(e.procs, cmd.Process.Pid)
		e.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// stop sends sig to p, waits up to grace, then SIGKILLs p's process group.
func (e *env) stop(p *proc, sig syscall.Signal, grace time.Duration) {
	if p == nil || p.exited() {
		return
	}
	syscall.Kill(p.pid(), sig)
	if p.wait(grace) != nil {
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		p.wait(10 * time.Second)
	}
}

// run runs a short command to completion (bounded by limit) and returns
// its combined output.
func (e *env) run(ctx context.Context, limit time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if err != nil {
		return b.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(b.String()))
	}
	return b.String(), nil
}

// close stops everything the run started and removes the work directory.
// keep leaves the work directory (logs) in place.
func (e *env) close(keep bool) {
	e.mu.Lock()
	var ps []*proc
	for _, p := range e.procs {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// sockvisor stops its backends on TERM; the rest stop on TERM too.
			e.stop(p, syscall.SIGTERM, 20*time.Second)
		}()
	}
	wg.Wait()
	if e.apache != nil {
		// Keep Apache's error log with the others; Stop removes its directory.
		os.WriteFile(filepath.Join(e.logs, "apache-error.log"), []byte(e.apache.Log()), 0o644)
		e.apache.Stop()
	}
	e.killLeftovers()
	// sockvisor keeps generated files (PHP-FPM pools) per backend name in
	// its state directory; the bench's backends all start with "svbench-".
	if dirs, _ := filepath.Glob("/run/sockvisor-state/svbench-*"); len(dirs) > 0 {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}
	if !keep {
		os.RemoveAll(e.work)
	}
}

// killLeftovers SIGKILLs the process group of every process whose command
// line names the work directory: backends of a sockvisor that did not stop
// cleanly. The directory's random name makes them ours.
func (e *env) killLeftovers() {
	self := syscall.Getpgrp()
	for range 3 {
		groups := map[int]bool{}
		for _, pid := range procfs.List() {
			if pid == os.Getpid() || !strings.Contains(strings.Join(procfs.Proc.Cmdline(pid), "\x00"), e.work) {
				continue
			}
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != self {
				groups[pgid] = true
			}
		}
		if len(groups) == 0 {
			return
		}
		for g := range groups {
			fmt.Fprintf(os.Stderr, "bench: killing leftover process group %d\n", g)
			syscall.Kill(-g, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// unixClient is an HTTP client that dials path whatever the URL says.
func unixClient(path string, keepAlive bool, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableKeepAlives: !keepAlive,
		},
	}
}

// getOK fetches url with c and reports whether the answer was 2xx.
func getOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// waitFor polls f every 10 ms until it succeeds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(limit)
	var err error
	for {
		if err = f(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var errInterrupted = errors.New("interrupted")
