package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// reloadCounts gathers sockvisor_config_reloads_total from reg.
func reloadCounts(reg *prometheus.Registry) (ok, failed float64, err error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0, err
	}
	found := 0
	for _, mf := range mfs {
		if mf.GetName() != "sockvisor_config_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() == "result" && l.GetValue() == "ok":
					ok = m.GetCounter().GetValue()
					found++
				case l.GetName() == "result" && l.GetValue() == "failed":
					failed = m.GetCounter().GetValue()
					found++
				}
			}
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("%d of the 2 sockvisor_config_reloads_total series gathered", found)
	}
	return ok, failed, nil
}

// The "ok" reload count was the difference of two counters, requested
// minus failed, incremented one after the other: a scrape between them
// saw "ok" go up for a failed reload, and the next one saw it come down.
// Scrapes racing reloads that succeed and fail must never see either
// count decrease, and the counts must end exact.
func TestMetricsReloadCountersNeverDecrease(t *testing.T) {
	testutil.NeedRoot(t)
	dir := testutil.ShortDir(t)
	cfg := filepath.Join(dir, "sv.hcl")
	good := fmt.Sprintf("socket_dir = %q\ncontrol_socket = %q\n", filepath.Join(dir, "s"), filepath.Join(dir, "ctl"))
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(good)
	d, c, stopped := runWithoutApache(t, dir, cfg, hclog.Warn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st StatusReport
		raw, err := c.Status(context.Background())
		if err == nil {
			err = json.Unmarshal(raw, &st)
		}
		if err == nil && st.Phase == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockvisor not running within 30 s: phase %q, %v", st.Phase, err)
		}
		select {
		case <-stopped:
			t.Fatal("Run returned before sockvisor was running")
		case <-time.After(50 * time.Millisecond):
		}
	}

	// Scrape without pause, from two goroutines, while the reloads run:
	// the collector alone, so the scrapes contend for the daemon's lock
	// as often as they can.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var scrapes atomic.Int64
	scrapeErrs := make([]error, 2)
	for i := range scrapeErrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lastOK, lastFailed float64
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok, failed, err := reloadCounts(reg)
				if err == nil && (ok < lastOK || failed < lastFailed) {
					err = fmt.Errorf("reload counts went down: ok %v -> %v, failed %v -> %v", lastOK, ok, lastFailed, failed)
				}
				if err != nil {
					scrapeErrs[i] = err
					return
				}
				lastOK, lastFailed = ok, failed
				scrapes.Add(1)
			}
		}()
	}

	wantOK, wantFailed := 0.0, 0.0
	for i := 0; i < 60; i++ {
		if i%3 == 0 {
			write(good)
			if err := c.Reload(context.Background()); err != nil {
				t.Fatalf("reload %d of a valid config: %v", i, err)
			}
			wantOK++
		} else {
			write(good + "bogus = 1\n")
			if err := c.Reload(context.Background()); err == nil {
				t.Fatalf("reload %d of an invalid config succeeded", i)
			}
			wantFailed++
		}
	}
	close(stop)
	wg.Wait()
	if err := errors.Join(scrapeErrs...); err != nil {
		t.Fatalf("after %d scrapes: %v", scrapes.Load(), err)
	}
	ok, failed, err := reloadCounts(reg)
	if err != nil {
		t.Fatal(err)
	}
	if ok != wantOK || failed != wantFailed {
		t.Errorf("reload counts ok %v, failed %v; want %v and %v", ok, failed, wantOK, wantFailed)
	}
}

// A metrics_listen address in use fails start-up with the listener's error
// kept in the chain, in the sentence users read.
func TestMetricsListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	d := &Daemon{log: hclog.NewNullLogger()}
	stop, err := d.serveMetrics(context.Background(), addr, http.NotFoundHandler())
	if err == nil {
		stop()
		t.Fatalf("serveMetrics on %s, which is in use, succeeded", addr)
	}
	want := "metrics_listen " + addr + ": listen tcp " + addr + ": bind: address already in use; choose a free address or remove metrics_listen"
	if err.Error() != want || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("serveMetrics error %q (EADDRINUSE in chain: %v), want %q", err, errors.Is(err, syscall.EADDRINUSE), want)
	}
}
