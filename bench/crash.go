package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// crashRow is the time from kill -9 of a backend's process group to the
// first successful response, medians over the kills.
type crashRow struct {
	Name           string
	Apache, Direct time.Duration
	Kills          int
}

// crash kills backends with SIGKILL and times how long until they serve
// again, through Apache and straight to the socket.
func (b *bench) crash(ctx context.Context) error {
	type target struct {
		name       string
		url        string // through Apache
		sock       string // direct
		kill       func(ctx context.Context) (restarted <-chan error, err error)
		waitServed func(ctx context.Context) error
	}
	svTarget := func(label, name, path string) target {
		var old int
		return target{
			name: label, url: b.e.apache.URL(path), sock: filepath.Join(b.sv.sockDir, name+".sock"),
			kill: func(ctx context.Context) (<-chan error, error) {
				pid, err := b.sv.backendPID(ctx, name, 0)
				if err != nil {
					return nil, err
				}
				old = pid
				if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
					return nil, fmt.Errorf("backend %s pid %d is not its process group's leader (%d, %v)", name, pid, pgid, err)
				}
				ch := make(chan error, 1)
				ch <- nil // sockvisor restarts it by itself
				return ch, syscall.Kill(-pid, syscall.SIGKILL)
			},
			waitServed: func(ctx context.Context) error { _, err := b.sv.backendPID(ctx, name, old); return err },
		}
	}
	self := b.self["gunicorn"]
	targets := []target{
		svTarget("sockvisor, gunicorn preset", svApp, pathSV),
		svTarget("sockvisor, generic preset (Go backend)", svGo, pathSVGo),
		{
			name: "gunicorn's own socket, restarted 100 ms after the crash", url: b.e.apache.URL(pathSelf), sock: b.selfSock("gunicorn"),
			kill: func(ctx context.Context) (<-chan error, error) {
				ch := make(chan error, 1)
				go func() { ch <- self.crash(ctx) }()
				return ch, nil
			},
			waitServed: self.waitServing,
		},
	}
	for _, t := range targets {
		var viaApache, direct []time.Duration
		for i := range b.p.crashKills {
			b.progress(fmt.Sprintf("%s: kill -9 %d/%d", t.name, i+1, b.p.crashKills))
			killedAt := time.Now()
			restarted, err := t.kill(ctx)
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			var a, d time.Duration
			var aErr, dErr error
			wg.Add(2)
			go func() {
				defer wg.Done()
				a, aErr = firstOK(ctx, killedAt, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, t.url)
			}()
			go func() {
				defer wg.Done()
				d, dErr = firstOK(ctx, killedAt, unixClient(t.sock, false, 30*time.Second), "http://backend/")
			}()
			wg.Wait()
			if err := <-restarted; err != nil {
				return err
			}
			if aErr != nil {
				return aErr
			}
			if dErr != nil {
				return dErr
			}
			if err := t.waitServed(ctx); err != nil {
				return err
			}
			b.progress(fmt.Sprintf("%s: serving again after %s through Apache, %s direct", t.name, a.Round(time.Millisecond), d.Round(time.Millisecond)))
			viaApache, direct = append(viaApache, a), append(direct, d)
			sleepCtx(ctx, 500*time.Millisecond)
		}
		b.res.Crash = append(b.res.Crash, crashRow{Name: t.name, Apache: medianD(viaApache), Direct: medianD(direct), Kills: b.p.crashKills})
	}
	return nil
}

// firstOK retries GET url on fresh connections until one succeeds and
// returns the time since from; it gives up after 60 s.
func firstOK(ctx context.Context, from time.Time, c *http.Client, url string) (time.Duration, error) {
	deadline := from.Add(60 * time.Second)
	for {
		if err := getOK(c, url); err == nil {
			return time.Since(from), nil
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: no successful answer within 60 s of the kill: %w", url, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
