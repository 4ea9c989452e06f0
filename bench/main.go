// Command bench measures sockvisor through a real, private Apache on this
// machine and writes bench/RESULTS.md and bench/restart-storm.svg:
//
//  1. requests/s and latency through Apache: a sockvisor socket vs the same
//     Gunicorn binding its own socket vs TCP loopback (wrk);
//  2. failed requests while backends restart, are killed with SIGKILL and
//     Apache reloads gracefully, under continuous load: sockvisor's
//     gunicorn, uwsgi and php-fpm presets vs self-bound servers;
//  3. sockvisor itself with 10, 100 and 500 backends: time to READY=1,
//     resident memory, idle CPU;
//  4. sweeping 10,000 stale sockets;
//  5. crash-to-serving time after kill -9 of a backend;
//  6. failed requests across kill -9 of sockvisor itself and a restart,
//     without systemd, against a plain stop and start;
//  7. failed requests during a broken deploy: sockvisor restart vs a
//     self-bound server stopped and started (run alone: -parts 7);
//  8. density: N Flask sites on Gunicorn started eagerly vs on demand,
//     memory, cold starts through Apache (run alone: -parts 8).
//
// Run it as root with `make bench` (full run, a few minutes) or
// `go run ./bench -quick` (small counts, about a minute, for CI). Traffic
// goes only to 127.0.0.1 and Unix sockets; every process it starts is
// stopped when it ends, also on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// plan holds the counts of one run; quick mode shrinks them.
type plan struct {
	quick bool
	// wrk
	wrkRuns   int
	wrkDur    time.Duration
	wrkWarmup time.Duration
	wrkConns  int
	// failure scenarios
	restarts   int
	kills      int
	gracefuls  int
	loadConns  int
	gap        time.Duration // pause after each event
	selfUWSGI  bool
	workers    int // gunicorn workers / uwsgi processes
	scaleSizes []int
	scaleRuns  int
	// bigRuns replaces scaleRuns from 500 backends up, which take long to start.
	bigRuns    int
	idle       time.Duration
	sweepFiles int
	sweepRuns  int
	crashKills int
	// density (part 8)
	densitySizes   []int
	densityWindows int
	densityWindow  time.Duration
}

func fullPlan() plan {
	return plan{
		wrkRuns: 3, wrkDur: 8 * time.Second, wrkWarmup: 2 * time.Second, wrkConns: 8,
		restarts: 20, kills: 5, gracefuls: 20, loadConns: 8, gap: 300 * time.Millisecond,
		workers:    4,
		scaleSizes: []int{10, 100, 500}, scaleRuns: 3, bigRuns: 2, idle: 5 * time.Second,
		sweepFiles: 10000, sweepRuns: 3, crashKills: 5,
		densitySizes: []int{100, 200, 500}, densityWindows: 5, densityWindow: 10 * time.Second,
	}
}

func quickPlan() plan {
	return plan{
		quick:   true,
		wrkRuns: 1, wrkDur: 2 * time.Second, wrkWarmup: time.Second, wrkConns: 8,
		restarts: 3, kills: 1, gracefuls: 2, loadConns: 8, gap: 200 * time.Millisecond,
		workers:    4,
		scaleSizes: []int{10, 50}, scaleRuns: 1, bigRuns: 1, idle: time.Second,
		sweepFiles: 1000, sweepRuns: 1, crashKills: 2,
		densitySizes: []int{4}, densityWindows: 2, densityWindow: 2 * time.Second,
	}
}

// options are the command-line settings.
type options struct {
	bin     string // sockvisor binary; "" builds one
	quick   bool
	outDir  string // raw CSVs and the gnuplot script
	results string // RESULTS.md
	svg     string // restart-storm.svg
	keep    bool   // keep the work directory (logs)
	parts   string // comma-separated part numbers to run; "" runs all
	// selfUWSGI adds a self-bound uWSGI baseline to part 2.
	selfUWSGI bool
	// sites overrides the density part's site counts ("100,500").
	sites string
}

func main() {
	os.Exit(cliMain())
}

func cliMain() int {
	var o options
	flag.StringVar(&o.bin, "bin", "", "sockvisor binary (default: build one)")
	flag.BoolVar(&o.quick, "quick", false, "small counts for a CI smoke run (about a minute)")
	flag.StringVar(&o.outDir, "out", "", "directory for raw series (default bench/out, quick: bench/out/quick)")
	flag.StringVar(&o.results, "results", "", "results file (default bench/RESULTS.md, quick: <out>/RESULTS.md)")
	flag.StringVar(&o.svg, "svg", "", "chart file (default bench/restart-storm.svg, quick: <out>/restart-storm.svg)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory with every process's log")
	flag.StringVar(&o.sites, "sites", "", "site counts of part 8 (density), e.g. 100,500; default 100,200,500 (4 with -quick)")
	flag.BoolVar(&o.selfUWSGI, "uwsgi-baseline", false, "also measure uWSGI binding its own socket in part 2 (about a minute more)")
	flag.StringVar(&o.parts, "parts", "", "run only these parts, e.g. 2,5 (results then incomplete; for development)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "bench: takes no arguments")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o)
	if res != nil && res.markdown != "" {
		fmt.Println(res.markdown)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, errInterrupted) || ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}

// run does one whole benchmark run and writes its files.
func run(ctx context.Context, o options) (*results, error) {
	started := time.Now()
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: it starts Apache and backends as www-data and owns socket directories (sudo make bench)")
	}
	for _, need := range []string{"/usr/sbin/apache2", "/usr/bin/gunicorn", "/usr/bin/uwsgi", "/usr/sbin/php-fpm8.2", "/usr/bin/wrk", "/usr/bin/gnuplot", "/usr/bin/setpriv"} {
		if _, err := os.Stat(need); err != nil {
			return nil, fmt.Errorf("%s is missing: run ./scripts/install-deps.sh", need)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	p := fullPlan()
	if o.quick {
		p = quickPlan()
	}
	p.selfUWSGI = o.selfUWSGI
	if o.sites != "" {
		p.densitySizes = nil
		for _, f := range strings.Split(o.sites, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-sites %q: want positive numbers separated by commas, e.g. 100,500", o.sites)
			}
			p.densitySizes = append(p.densitySizes, n)
		}
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(root, "bench", "out")
		if o.quick {
			o.outDir = filepath.Join(o.outDir, "quick")
		}
	}
	if o.results == "" {
		o.results = filepath.Join(root, "bench", "RESULTS.md")
		if o.quick {
			o.results = filepath.Join(o.outDir, "RESULTS.md")
		}
	}
	if o.svg == "" {
		o.svg = filepath.Join(root, "bench", "restart-storm.svg")
		if o.quick {
			o.svg = filepath.Join(o.outDir, "restart-storm.svg")
		}
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return nil, err
	}

	e, err := newEnv("")
	defer func() {
		if e != nil {
			progress("cleanup", "stopping everything the bench started")
			e.close(o.keep)
			if o.keep {
				progress("cleanup", "logs kept in "+e.logs)
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	if o.bin == "" {
		progress("setup", "building sockvisor")
		o.bin = filepath.Join(e.work, "sockvisor")
		if _, err := e.run(ctx, 5*time.Minute, "go", "build", "-C", root, "-o", o.bin, "./cmd/sockvisor"); err != nil {
			return nil, err
		}
	}
	if e.bin, err = filepath.Abs(o.bin); err != nil {
		return nil, err
	}
	res := &results{plan: p}
	res.Machine = describeMachine(ctx, e)
	b := &bench{e: e, p: p, res: res, outDir: o.outDir}
	if err := b.setup(ctx); err != nil {
		return res, err
	}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"throughput through Apache", b.throughput},
		{"failures under restarts, kills and reloads", b.storms},
		{"sockvisor at scale", b.scale},
		{"stale sweep", b.sweep},
		{"crash to serving", b.crash},
		{"kill -9 of sockvisor itself, no systemd", b.sockvisorCrash},
		{"broken deploy", b.brokenDeploy},
		{"density: eager vs on-demand sites", b.density},
	}
	for i, s := range steps {
		if o.parts != "" && !slices.Contains(strings.Split(o.parts, ","), strconv.Itoa(i+1)) {
			continue
		}
		b.step = fmt.Sprintf("[%d/%d] %s", i+1, len(steps), s.name)
		if err := s.f(ctx); err != nil {
			if ctx.Err() != nil {
				return res, errInterrupted
			}
			return res, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	res.Elapsed = time.Since(started)
	res.loadEnd = loadAvg()
	if b.storm != nil {
		if err := b.writeChart(ctx, o.svg); err != nil {
			return res, err
		}
	}
	res.markdown = res.render(o)
	if err := os.WriteFile(o.results, []byte(res.markdown), 0o644); err != nil {
		return res, err
	}
	progress("done", fmt.Sprintf("%s in %s; wrote %s, %s, %s", map[bool]string{true: "quick run", false: "full run"}[p.quick],
		res.Elapsed.Round(time.Second), o.results, o.svg, o.outDir))
	return res, nil
}

// moduleRoot finds the directory holding go.mod, from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the sockvisor module (go.mod not found)")
		}
		dir = parent
	}
}

// progress reports on stderr.
func progress(step, msg string) {
	fmt.Fprintf(os.Stderr, "%s %s: %s\n", time.Now().Format("15:04:05"), step, msg)
}
