package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stormRow is one scenario: N events of one kind against one backend under
// continuous load.
type stormRow struct {
	Backend string // gunicorn | uwsgi | php-fpm
	Mode    string // sockvisor | self-bound
	Event   string // restart | kill -9 | apache graceful
	Count   int
	OK      int64
	Failed  int64
	Reasons string
	Seconds float64
	CSV     string
	// EventAt is when each event started, from the start of the load.
	EventAt []time.Duration
	// Samples are the first failures (wall clock), to match with the logs.
	Samples []failure
	// FailedSeconds counts the one-second buckets with a failure.
	FailedSeconds, TotalSeconds int
}

const (
	evRestart  = "restart"
	evKill     = "kill -9"
	evGraceful = "Apache graceful"
)

// stormTarget is a backend the scenarios can restart, kill and load.
type stormTarget struct {
	backend, mode, path string
	restart             func(context.Context) error
	kill                func(context.Context) error // returns once serving again
}

func (b *bench) stormTargets() []stormTarget {
	svT := func(backend, name, path string) stormTarget {
		return stormTarget{backend: backend, mode: "sockvisor", path: path,
			restart: func(ctx context.Context) error { return b.sv.restart(ctx, name) },
			kill:    func(ctx context.Context) error { _, err := b.svCrash(ctx, name); return err },
		}
	}
	selfT := func(kind string) stormTarget {
		s := b.self[kind]
		return stormTarget{backend: kind, mode: "self-bound", path: s.path(),
			restart: s.restart,
			kill: func(ctx context.Context) error {
				if err := s.crash(ctx); err != nil {
					return err
				}
				return s.waitServing(ctx)
			},
		}
	}
	ts := []stormTarget{
		svT("gunicorn", svApp, pathSV),
		selfT("gunicorn"),
		svT("uwsgi", svU, pathSVU),
	}
	if b.self["uwsgi"] != nil {
		ts = append(ts, selfT("uwsgi"))
	}
	return append(ts, svT("php-fpm", svPHP, pathSVPHP))
}

// svCrash SIGKILLs the process group of sockvisor backend name and waits
// until sockvisor reports a new, ready process. It returns the moment of
// the kill.
func (b *bench) svCrash(ctx context.Context, name string) (time.Time, error) {
	pid, err := b.sv.backendPID(ctx, name, 0)
	if err != nil {
		return time.Time{}, err
	}
	pgid, err := syscall.Getpgid(pid)
	if err != nil {
		return time.Time{}, err
	}
	if pgid <= 1 || pgid == syscall.Getpgrp() || pgid == b.sv.p.pid() {
		return time.Time{}, fmt.Errorf("backend %s pid %d has process group %d: refusing to kill it", name, pid, pgid)
	}
	at := time.Now()
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		return at, err
	}
	_, err = b.sv.backendPID(ctx, name, pid)
	return at, err
}

// storms runs every scenario against every target.
func (b *bench) storms(ctx context.Context) error {
	b.storm = map[string]loadResult{}
	for _, t := range b.stormTargets() {
		for _, ev := range []struct {
			name string
			n    int
		}{{evRestart, b.p.restarts}, {evGraceful, b.p.gracefuls}, {evKill, b.p.kills}} {
			row, lr, err := b.stormOne(ctx, t, ev.name, ev.n)
			if err != nil {
				return err
			}
			b.res.Storms = append(b.res.Storms, row)
			if t.backend == "gunicorn" && ev.name == evRestart {
				b.storm[t.mode] = lr
				b.res.StormEvents = append(b.res.StormEvents, row)
			}
		}
	}
	return nil
}

func (b *bench) stormOne(ctx context.Context, t stormTarget, event string, n int) (stormRow, loadResult, error) {
	row := stormRow{Backend: t.backend, Mode: t.mode, Event: event, Count: n}
	lead := time.Second
	if b.p.quick {
		lead = 300 * time.Millisecond
	}
	load := startLoad(ctx, b.e.apache.URL(t.path), b.p.loadConns, 5*time.Minute, 50_000_000)
	sleepCtx(ctx, lead)
	var err error
	for i := range n {
		b.progress(fmt.Sprintf("%s %s, %s %d/%d (%d failed so far)", t.backend, t.mode, event, i+1, n, load.failed()))
		row.EventAt = append(row.EventAt, load.elapsed())
		switch event {
		case evRestart:
			err = t.restart(ctx)
		case evKill:
			err = t.kill(ctx)
		case evGraceful:
			err = b.e.apache.Reload()
		}
		if err != nil {
			break
		}
		sleepCtx(ctx, b.p.gap)
	}
	sleepCtx(ctx, lead)
	lr := load.stop()
	if err != nil {
		return row, lr, fmt.Errorf("%s %s, %s: %w", t.backend, t.mode, event, err)
	}
	if ctx.Err() != nil {
		return row, lr, ctx.Err()
	}
	row.OK, row.Failed, row.Seconds = lr.OK, lr.Failed, lr.Duration.Seconds()
	row.Reasons = reasonsText(lr.Reasons)
	row.Samples = lr.Samples
	row.TotalSeconds = len(lr.Buckets)
	for _, bk := range lr.Buckets {
		if bk.failed > 0 {
			row.FailedSeconds++
		}
	}
	if t.mode == "sockvisor" {
		for _, f := range lr.Samples {
			b.progress(fmt.Sprintf("%s %s, %s: request failed at %s: %s", t.backend, t.mode, event, f.At.UTC().Format("15:04:05.000000"), f.Reason))
		}
	}
	name := fmt.Sprintf("storm-%s-%s-%s.csv", t.mode, t.backend, map[string]string{evRestart: "restart", evKill: "kill9", evGraceful: "graceful"}[event])
	row.CSV = filepath.Join(b.outDir, name)
	if err := writeSeries(row.CSV, lr); err != nil {
		return row, lr, err
	}
	b.progress(fmt.Sprintf("%s %s, %d× %s: %d ok, %d failed %s", t.backend, t.mode, n, event, row.OK, row.Failed, row.Reasons))
	return row, lr, nil
}

// writeSeries saves per-second counts as CSV: second,ok,failed. The last,
// partial second is left out.
func writeSeries(path string, lr loadResult) error {
	var sb strings.Builder
	sb.WriteString("second,ok,failed\n")
	for i, bk := range lr.Buckets[:max(len(lr.Buckets)-1, 0)] {
		fmt.Fprintf(&sb, "%d,%d,%d\n", i, bk.ok, bk.failed)
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
