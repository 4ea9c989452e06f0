package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// results is everything one run measured.
type results struct {
	plan        plan
	Machine     []kv
	Throughput  []tpRow
	Storms      []stormRow
	StormEvents []stormRow // the two gunicorn restart storms in the chart
	Scale       []scaleRow
	Sweep       sweepRow
	Crash       []crashRow
	SvCrash     []svCrashRow
	Deploy      []deployRow
	Density     []densityRow
	Elapsed     time.Duration
	loadEnd     string
	markdown    string
}

type kv struct{ K, V string }

// describeMachine names the hardware and every program version measured.
func describeMachine(ctx context.Context, e *env) []kv {
	first := func(argv ...string) string {
		out, _ := e.run(ctx, 10*time.Second, argv...)
		line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		return strings.TrimSpace(line)
	}
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindStringSubmatch(string(b)); m != nil {
			cpu = m[1]
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if m := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindStringSubmatch(string(b)); m != nil {
			fmt.Sscan(m[1], &kib)
			mem = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
		}
	}
	osName := "unknown"
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		if m := regexp.MustCompile(`(?m)^PRETTY_NAME="?([^"\n]+)"?`).FindStringSubmatch(string(b)); m != nil {
			osName = m[1]
		}
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	kernel := utsString(uts.Release[:])
	return []kv{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"load average at start", loadAvg()},
		{"CPU", cpu},
		{"cores", fmt.Sprint(runtime.NumCPU())},
		{"memory", mem},
		{"OS", osName},
		{"kernel", kernel},
		{"sockvisor", first(e.bin, "version")},
		{"Apache", strings.TrimPrefix(first("/usr/sbin/apache2", "-v"), "Server version: ") + ", mpm_event"},
		{"Gunicorn", first("/usr/bin/gunicorn", "--version")},
		{"uWSGI", first("/usr/bin/uwsgi", "--version")},
		{"PHP-FPM", first("/usr/sbin/php-fpm8.2", "-v")},
		{"wrk", wrkVersion(ctx, e)},
		{"Go", runtime.Version()},
	}
}

// loadAvg returns the 1, 5 and 15 minute load averages: the benchmarks
// share the machine with whatever else runs on it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

func utsString(a []int8) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func ms(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// throughputTable is part 1 as Markdown.
func (r *results) throughputTable() string {
	var sb strings.Builder
	sb.WriteString("| Apache → Gunicorn over | req/s | p50 | p99 | req/s vs TCP | req/s vs own socket | errors |\n|---|---:|---:|---:|---:|---:|---:|\n")
	if len(r.Throughput) < 3 {
		return sb.String()
	}
	own, tcp := r.Throughput[1].RPS, r.Throughput[2].RPS
	for _, t := range r.Throughput {
		fmt.Fprintf(&sb, "| %s | %.0f | %s | %s | %s | %s | %d |\n", t.Name, t.RPS, ms(t.P50), ms(t.P99), ratio(t.RPS, tcp), ratio(t.RPS, own), t.Errors)
	}
	return sb.String()
}

// stormTable is part 2 as Markdown: one row per backend and mode, one
// column group per event kind.
func (r *results) stormTable() string {
	var sb strings.Builder
	p := r.plan
	fmt.Fprintf(&sb, "| backend | socket | failed / requests during %d restarts | during %d kill -9 | during %d Apache graceful reloads |\n|---|---|---:|---:|---:|\n",
		p.restarts, p.kills, p.gracefuls)
	type key struct{ backend, mode string }
	var order []key
	cells := map[key]map[string]stormRow{}
	for _, s := range r.Storms {
		k := key{s.Backend, s.Mode}
		if cells[k] == nil {
			cells[k] = map[string]stormRow{}
			order = append(order, k)
		}
		cells[k][s.Event] = s
	}
	for _, k := range order {
		sock := "sockvisor (inherited)"
		if k.mode != "sockvisor" {
			sock = "its own (self-bound)"
		}
		fmt.Fprintf(&sb, "| %s | %s |", k.backend, sock)
		for _, ev := range []string{evRestart, evKill, evGraceful} {
			s, ok := cells[k][ev]
			if !ok {
				sb.WriteString(" – |")
				continue
			}
			fmt.Fprintf(&sb, " **%d** / %d |", s.Failed, s.OK+s.Failed)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func (r *results) render(o options) string {
	var sb strings.Builder
	mode := "`make bench` (full run)"
	if r.plan.quick {
		mode = "`go run ./bench -quick` (quick run: small counts, a smoke test, not a measurement)"
	}
	fmt.Fprintf(&sb, "# sockvisor benchmarks\n\nGenerated by %s in %s. Every request goes through a private\n"+
		"Apache 2.4 (mpm_event, default settings) on 127.0.0.1 unless stated; medians of several runs.\n"+
		"Other jobs may share the machine (see the load averages): compare rows measured side by side\n"+
		"rather than absolute numbers across runs.\n\n", mode, r.Elapsed.Round(time.Second))
	sb.WriteString("## Machine\n\n| | |\n|---|---|\n")
	for _, m := range r.Machine {
		fmt.Fprintf(&sb, "| %s | %s |\n", m.K, m.V)
	}
	fmt.Fprintf(&sb, "| load average at the end | %s |\n", r.loadEnd)
	p := r.plan
	fmt.Fprintf(&sb, "\n## 1. Throughput and latency through Apache\n\nThe same Gunicorn (%d sync workers, the same WSGI app answering a short text) behind\nApache three ways; `wrk -t2 -c%d -d%s --latency`, %d interleaved run(s) each after a warm-up, medians.\n\n",
		p.workers, p.wrkConns, p.wrkDur, p.wrkRuns)
	sb.WriteString(r.throughputTable())
	fmt.Fprintf(&sb, "\n## 2. Failed requests while backends restart, crash and Apache reloads\n\n"+
		"A Go load generator keeps %d keep-alive connections busy through Apache during each scenario\n"+
		"(a request fails on a transport error or a status >= 500). Restart: `sockvisor restart NAME` for\n"+
		"sockvisor; TERM, wait for the exit, start again (what `systemctl restart` does) for a self-bound server.\n"+
		"kill -9: SIGKILL to the backend's whole process group; sockvisor restarts it (restart.min_delay =\n"+
		"max_delay = 100ms here), the self-bound server is started again 100 ms after it died. Apache graceful:\n"+
		"`apache2 -k graceful`. Each event waits for the backend to serve again, then %s.\n\n",
		p.loadConns, p.gap)
	sb.WriteString(r.stormTable())
	sb.WriteString("\nWhat failed, and when:\n\n")
	for _, s := range r.Storms {
		if s.Failed == 0 {
			continue
		}
		fmt.Fprintf(&sb, "- %s, %s, %s: %s; failures in %d of %d seconds", s.Backend, s.Mode, s.Event, s.Reasons, s.FailedSeconds, s.TotalSeconds)
		if s.Mode == "sockvisor" {
			var at []string
			for _, f := range s.Samples {
				at = append(at, f.At.UTC().Format("15:04:05.000"))
			}
			fmt.Fprintf(&sb, " (at %s UTC)", strings.Join(at, ", "))
			if s.Event == evKill {
				sb.WriteString(": requests the killed processes had already accepted die with them; everything still in the socket's backlog waited for the new process")
			}
		}
		sb.WriteString("\n")
	}
	sb.WriteString("\n![Successful and failed requests per second during the restart storm](restart-storm.svg)\n\n")
	sb.WriteString("Raw per-second series: `bench/out/storm-*.csv` (not committed).\n")
	fmt.Fprintf(&sb, "\n## 3. sockvisor with many backends\n\nN copies of a tiny Go HTTP server (`bench/svbackend`, preset generic, socket on fd 3, no Apache\n"+
		"config); medians of %d run(s) (%d for 500 backends). Ready: from starting `sockvisor run` to its READY=1 on\n"+
		"NOTIFY_SOCKET (every socket bound, every backend answering its readiness probe). Memory and CPU are\n"+
		"sockvisor's own process (VmRSS once ready; utime+stime over %s idle, counted in 10 ms ticks, so the\n"+
		"resolution is %.1f %% of a core), not the backends'.\n\n", p.scaleRuns, p.bigRuns, p.idle, 1/p.idle.Seconds())
	sb.WriteString("| backends | time to READY=1 | sockvisor's CPU until READY=1 | sockvisor RSS | idle CPU (% of one core) | stop (SIGTERM to exit) |\n|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Scale {
		idle := fmt.Sprintf("%.2f %%", s.IdleCPU)
		if s.IdleTicks == 0 {
			idle = fmt.Sprintf("0 (< %.1f %%)", 1/p.idle.Seconds())
		}
		fmt.Fprintf(&sb, "| %d | %s | %s | %.1f MiB | %s | %s |\n", s.Backends, ms(s.Ready), ms(s.StartCPU), float64(s.RSSKiB)/1024, idle, ms(s.Stop))
	}
	fmt.Fprintf(&sb, "\n## 4. Stale sweep\n\n%d stale sockets (bound, closed, never unlinked) in one socket_dir, then `sockvisor sweep`;\nmedian of %d run(s).\n\n", r.Sweep.Files, r.Sweep.Runs)
	sb.WriteString("| stale sockets | `sockvisor sweep` | left afterwards |\n|---:|---:|---:|\n")
	fmt.Fprintf(&sb, "| %d | %s | %d |\n", r.Sweep.Files, ms(r.Sweep.Sweep), r.Sweep.Remaining)
	fmt.Fprintf(&sb, "\n## 5. Crash to serving\n\nFrom SIGKILL of the backend's process group to the first successful response on a new connection,\nthrough Apache and straight to the socket (probes retry every 2 ms); median of %d kill(s).\n\n", p.crashKills)
	sb.WriteString("| backend | through Apache | direct to the socket |\n|---|---:|---:|\n")
	for _, c := range r.Crash {
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", c.Name, ms(c.Apache), ms(c.Direct))
	}
	fmt.Fprintf(&sb, "\n## 6. kill -9 of sockvisor itself, without systemd\n\n"+
		"A sockvisor of its own runs one Gunicorn (%d sync workers) with no systemd, so no fd store; %d keep-alive\n"+
		"clients load it through Apache. %d times, sockvisor goes away and a new `sockvisor run` starts 1 s later;\n"+
		"each time the load waits for the new backend, then %s + 1 s. A plain stop stops the backends and the\n"+
		"socket with them; after kill -9 the orphaned backends keep serving, and the new sockvisor takes the\n"+
		"socket back from them (pidfd_getfd), starts a fresh Gunicorn and stops the old one gracefully.\n\n", p.workers, p.loadConns, p.kills, p.gap)
	sb.WriteString(r.svCrashTable())
	if len(r.Deploy) > 0 {
		fmt.Fprintf(&sb, "\n## 7. A broken deploy\n\nGunicorn (2 sync workers, no --preload) gets a hello.py with a syntax error while %d keep-alive\n"+
			"clients load it through Apache; counted from a second before the deploy until %s after the deploy\ncommand returned.\n\n", p.loadConns, r.Deploy[0].Window)
		sb.WriteString(r.deployTable())
	}
	if len(r.Density) > 0 {
		fmt.Fprintf(&sb, "\n## 8. Density: eager vs on-demand sites\n\n"+
			"N Flask sites (`bench/apps/density.py`: Flask, Jinja2, json, email, http.client), each a Gunicorn with one sync\n"+
			"worker on its own socket and mount behind the one Apache, `start = \"eager\"` vs `start = \"on-demand\"` with\n"+
			"`idle_timeout = \"%s\"`. Traffic goes to %d sites at a time (%d clients each, about 20 req/s per client), the\n"+
			"set moving on every %s for %d windows, so an on-demand site is cold when its turn comes. Memory is\n"+
			"the highest sum over sockvisor and every process below it (smaps_rollup) sampled mid-window. First request:\n"+
			"the latency of each site's first request of its window through Apache (a cold start on demand). Boot: the\n"+
			"backend's own time from process start to proven ready, from sockvisor's log. Below %d GiB MemAvailable the\n"+
			"run stops sockvisor and reports how many backends were running.\n\n",
			densityIdle, densityActive, densityClients, p.densityWindow, p.densityWindows, densityMemFloor>>30)
		sb.WriteString(r.densityTable())
	}
	fmt.Fprintf(&sb, "\n## Reproduce\n\n```sh\nsudo make bench            # this file, restart-storm.svg, bench/out/*.csv\nsudo go run ./bench -quick # about a minute, small counts\n```\n")
	return sb.String()
}

// writeChart draws the gunicorn restart storms with gnuplot.
func (b *bench) writeChart(ctx context.Context, svg string) error {
	var svRow, selfRow *stormRow
	for i := range b.res.StormEvents {
		if b.res.StormEvents[i].Mode == "sockvisor" {
			svRow = &b.res.StormEvents[i]
		} else {
			selfRow = &b.res.StormEvents[i]
		}
	}
	if svRow == nil || selfRow == nil {
		return fmt.Errorf("chart: restart storms missing")
	}
	ymax := int64(1)
	xmax := 1
	for _, lr := range []loadResult{b.storm["sockvisor"], b.storm["self-bound"]} {
		// The last bucket is partial.
		for _, bk := range lr.Buckets {
			ymax = max(ymax, bk.ok+bk.failed)
		}
		xmax = max(xmax, len(lr.Buckets))
	}
	marks := func(r *stormRow) string {
		var sb strings.Builder
		for i, at := range r.EventAt {
			fmt.Fprintf(&sb, "set arrow %d from %.2f, graph 0 to %.2f, graph 1 nohead lc rgb '#888888' lw 1 dt 3 back\n", i+1, at.Seconds(), at.Seconds())
		}
		return sb.String()
	}
	// Stacked per-second bars: successful (green) below, failed (red) on top.
	panel := func(r *stormRow, title string) string {
		return fmt.Sprintf(`unset arrow
%s
set title "%s\n%d restarts under load: %d of %d requests failed" font ",12"
plot '%s' using ($1+0.5):($2+$3) with boxes fs solid 0.85 noborder lc rgb '#d73027' title 'failed', \
     '' using ($1+0.5):2 with boxes fs solid 0.85 noborder lc rgb '#1a9850' title 'successful'
`, marks(r), title, r.Count, r.Failed, r.OK+r.Failed, r.CSV)
	}
	script := fmt.Sprintf(`set terminal svg size 900,680 dynamic font "sans,11" background rgb 'white'
set output '%s'
set datafile separator ','
set key top right horizontal opaque
set grid ytics lc rgb '#dddddd'
set boxwidth 1.0 absolute
set xrange [0:%d]
set yrange [0:%d]
set ylabel "requests per second"
set xlabel "seconds since the load started (dotted lines: a restart begins)"
set multiplot layout 2,1
%s%sunset multiplot
`, svg, xmax, ymax*13/10, panel(svRow, "Gunicorn on a sockvisor socket, restarted with sockvisor restart"),
		panel(selfRow, "Gunicorn binding its own socket, restarted as systemctl restart does (TERM, wait, start)"))
	gp := filepath.Join(b.outDir, "restart-storm.gp")
	if err := os.WriteFile(gp, []byte(script), 0o644); err != nil {
		return err
	}
	if _, err := b.e.run(ctx, time.Minute, "gnuplot", gp); err != nil {
		return err
	}
	return nil
}

// svCrashTable is part 6 as Markdown.
func (r *results) svCrashTable() string {
	var sb strings.Builder
	sb.WriteString("| sockvisor goes away by | failed / requests | failures |\n|---|---:|---|\n")
	for _, c := range r.SvCrash {
		fmt.Fprintf(&sb, "| %s (×%d) | **%d** / %d | %s |\n", c.Name, c.Events, c.Failed, c.OK+c.Failed, c.Reasons)
	}
	return sb.String()
}
