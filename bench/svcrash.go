package main

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"time"
)

// A sockvisor of its own, with one Gunicorn, for part 6: it is stopped and
// killed, which the main one must never be.
const (
	svCrashName = "svcrash"
	svCrashApp  = "svbench-crash"
	pathSVCrash = "/svcrash/" // Apache forwards it to svCrashSock (setup)
)

// svCrashSock is the socket part 6's sockvisor creates for its Gunicorn.
func (e *env) svCrashSock() string {
	return filepath.Join(e.work, svCrashName, "s", svCrashApp+".sock")
}

// svCrashRow is one way of ending and restarting sockvisor, no systemd.
type svCrashRow struct {
	Name    string
	Events  int
	OK      int64
	Failed  int64
	Reasons string
}

// sockvisorCrash measures failed requests through Apache while sockvisor itself
// goes away and a new `sockvisor run` starts 1 s later (what RestartSec=1s
// would do), with no systemd and so no fd store: a plain stop (SIGTERM:
// sockvisor stops its backends, the socket closes) against kill -9 (the
// backends are orphaned and keep serving; the new sockvisor takes the socket
// back from them and retires them).
func (b *bench) sockvisorCrash(ctx context.Context) error {
	body := fmt.Sprintf("apache {\n  config_file = %q\n  reload = \"none\"\n}\n"+
		"backend %q {\n  preset = \"gunicorn\"\n  command = %s\n  mount = \"\"\n  user = \"www-data\"\n  stop_timeout = \"10s\"\n}\n",
		filepath.Join(b.e.work, "apache-svcrash.conf"), svCrashApp,
		fmt.Sprintf("[%q, \"--workers\", %q, \"--chdir\", %q, \"hello:app\"]", "/usr/bin/gunicorn", fmt.Sprint(b.p.workers), b.e.apps))
	modes := []struct {
		name string
		end  func(s *sv)
	}{
		{"plain restart: SIGTERM to sockvisor, a new `sockvisor run` 1 s later", func(s *sv) { s.stop() }},
		{"kill -9 of sockvisor, a new `sockvisor run` 1 s later", func(s *sv) {
			s.p.cmd.Process.Signal(syscall.SIGKILL)
			<-s.p.done
		}},
	}
	for _, m := range modes {
		s, err := b.e.startSockvisor(ctx, svCrashName, body, startMax)
		if err != nil {
			return err
		}
		pid, err := s.backendPID(ctx, svCrashApp, 0)
		if err != nil {
			s.stop()
			return err
		}
		g := startLoad(ctx, b.e.apache.URL(pathSVCrash), b.p.loadConns, 10*time.Minute, 5_000_000)
		sleepCtx(ctx, time.Second)
		for i := range b.p.kills {
			b.progress(fmt.Sprintf("%s: %d/%d", m.name, i+1, b.p.kills))
			m.end(s)
			sleepCtx(ctx, time.Second)
			old := pid
			if s, err = b.e.startSockvisor(ctx, svCrashName, body, startMax); err != nil {
				g.stop()
				killGroup(old)
				return err
			}
			if pid, err = s.backendPID(ctx, svCrashApp, old); err != nil {
				g.stop()
				s.stop()
				killGroup(old)
				return err
			}
			sleepCtx(ctx, b.p.gap+time.Second)
		}
		r := g.stop()
		s.stop()
		b.res.SvCrash = append(b.res.SvCrash, svCrashRow{Name: m.name, Events: b.p.kills, OK: r.OK, Failed: r.Failed, Reasons: reasonsText(r.Reasons)})
		b.progress(fmt.Sprintf("%s: %d of %d requests failed", m.name, r.Failed, r.OK+r.Failed))
	}
	return nil
}

// killGroup SIGKILLs a backend's process group a killed sockvisor left, if
// the next one could not retire it.
func killGroup(pgid int) {
	if pgid > 1 {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
