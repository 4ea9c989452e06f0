package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// scaleRow is sockvisor with N generic backends, medians over the runs.
type scaleRow struct {
	Backends int
	Ready    time.Duration // process start to READY=1
	RSSKiB   int           // sockvisor's own VmRSS once ready
	IdleCPU  float64       // % of one core over the idle window
	// IdleTicks is the CPU sockvisor used in all idle windows, in 10 ms ticks.
	IdleTicks int64
	// StartCPU is the CPU sockvisor itself used from its start to READY=1.
	StartCPU time.Duration
	Stop     time.Duration // SIGTERM to exit, all backends stopped
	Runs     int
}

// scale starts sockvisor with N tiny Go backends (no Apache config) and
// measures sockvisor itself.
func (b *bench) scale(ctx context.Context) error {
	for _, n := range b.p.scaleSizes {
		var ready, stop, startCPU []time.Duration
		var rss, cpu []float64
		runs := b.p.scaleRuns
		if n >= 500 {
			runs = b.p.bigRuns
		}
		var ticks int64
		for r := range runs {
			b.progress(fmt.Sprintf("%d backends, run %d/%d: starting", n, r+1, runs))
			s, err := b.e.startSockvisor(ctx, fmt.Sprintf("scale%d-%d", n, r), b.scaleHCL(n), 5*time.Minute)
			if err != nil {
				return err
			}
			st, err := s.status(ctx)
			if err != nil {
				s.stop()
				return err
			}
			readyN := 0
			for _, bk := range st.Backends {
				if bk.Ready {
					readyN++
				}
			}
			if readyN != n {
				s.stop()
				return fmt.Errorf("READY=1 with %d of %d backends ready", readyN, n)
			}
			startTicks, err := cpuTicks(s.p.pid())
			if err != nil {
				s.stop()
				return err
			}
			startCPU = append(startCPU, time.Duration(startTicks)*10*time.Millisecond)
			// Let the start-up garbage settle before measuring idle.
			sleepCtx(ctx, 500*time.Millisecond)
			kib, err := rssKiB(s.p.pid())
			if err != nil {
				s.stop()
				return err
			}
			b.progress(fmt.Sprintf("%d backends, run %d/%d: READY=1 after %s, %.1f MiB; idle for %s", n, r+1, runs, s.ready.Round(time.Millisecond), float64(kib)/1024, b.p.idle))
			t0, err := cpuTicks(s.p.pid())
			if err != nil {
				s.stop()
				return err
			}
			w0 := time.Now()
			sleepCtx(ctx, b.p.idle)
			t1, err := cpuTicks(s.p.pid())
			window := time.Since(w0)
			if err != nil {
				s.stop()
				return err
			}
			ticks += t1 - t0
			stopped := s.stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ready = append(ready, s.ready)
			stop = append(stop, stopped)
			rss = append(rss, float64(kib))
			// USER_HZ is 100: a tick is 10 ms of CPU.
			cpu = append(cpu, float64(t1-t0)*10*float64(time.Millisecond)/float64(window)*100)
		}
		b.res.Scale = append(b.res.Scale, scaleRow{Backends: n, Ready: medianD(ready), RSSKiB: int(medianF(rss)),
			IdleCPU: medianF(cpu), IdleTicks: ticks, StartCPU: medianD(startCPU), Stop: medianD(stop), Runs: runs})
	}
	return nil
}

func (b *bench) scaleHCL(n int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "apache {\n  config_file = %q\n  reload = \"none\"\n}\n", filepath.Join(b.e.work, "apache-scale.conf"))
	for i := range n {
		fmt.Fprintf(&sb, "backend \"svbench-%03d\" {\n  preset = \"generic\"\n  command = [%q]\n  mount = \"\"\n  user = \"www-data\"\n}\n", i, b.e.svbackend)
	}
	return sb.String()
}
