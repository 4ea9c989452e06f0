package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

// Part 8: density. N Gunicorn sites (the Flask app bench/apps/density.py,
// one sync worker each), each on its own socket and mount, all through
// the one Apache, started eagerly or on demand (idle_timeout 30 s). A
// rotating set of 10 sites gets traffic; every site is cold when its turn
// comes (it was last active N/10 windows ago, longer than idle_timeout).
//
// Safety: a watcher samples MemAvailable every 200 ms; below
// densityMemFloor it stops sockvisor (and with it every backend), and the
// row reports how many backends were running then.

const (
	densityConfGlob = "apache-density-*.conf"
	densityMemFloor = 4 << 30 // bytes of MemAvailable below which a run is stopped
	densityActive   = 10      // sites receiving traffic at a time
	densityIdle     = "30s"
	densityClients  = 2 // clients per active site
)

// densityRow is one mode at one N.
type densityRow struct {
	Mode  string // "eager" or "on-demand"
	Sites int
	// Reached is how many backends were running when memory ran short
	// (0 when it never did).
	Reached   int
	Stopped   string // why the run stopped early, "" if it did not
	Ready     time.Duration
	ReadyProc int     // backend processes running at READY=1
	PSSMiB    float64 // sockvisor plus every backend, during traffic
	RSSMiB    float64
	Running   int     // backends running then
	SvRSSMiB  float64 // sockvisor's own
	SvCPU     float64 // % of one core during traffic
	IdleCPU   float64 // % of one core over plan.idle before traffic
	ColdP50   time.Duration
	ColdP99   time.Duration
	ColdN     int
	BootP50   time.Duration // the backends' own boot (process start to ready)
	BootP99   time.Duration
	Requests  int64
	Failed    int64
	Traffic   time.Duration
}

func (b *bench) density(ctx context.Context) error {
	if _, err := os.Stat("/usr/lib/python3/dist-packages/flask"); err != nil {
		return fmt.Errorf("the density sites need Flask for the system Python (python3-flask): run ./scripts/install-deps.sh")
	}
	for _, n := range b.p.densitySizes {
		for _, mode := range []string{"on-demand", "eager"} {
			b.progress(fmt.Sprintf("%d sites, %s: starting", n, mode))
			row, err := b.densityRun(ctx, n, mode)
			if err != nil {
				return err
			}
			b.progress(fmt.Sprintf("%d sites, %s: READY=1 after %s, %.0f MiB PSS with %d running, cold p50 %s p99 %s, %d/%d failed %s",
				n, mode, row.Ready.Round(time.Millisecond), row.PSSMiB, row.Running, ms(row.ColdP50), ms(row.ColdP99), row.Failed, row.Requests, row.Stopped))
			b.res.Density = append(b.res.Density, row)
		}
	}
	return nil
}

func (b *bench) densityHCL(n int, mode, conf string) string {
	e := b.e
	var sb strings.Builder
	fmt.Fprintf(&sb, "apache {\n  config_file = %q\n  reload = \"apachectl\"\n  apachectl = [%s]\n}\n", conf, quoteList(e.apache.Command()))
	for i := range n {
		fmt.Fprintf(&sb, "backend \"svden-%03d\" {\n  preset = \"gunicorn\"\n  command = [\"/usr/bin/gunicorn\", \"--workers\", \"1\", \"--chdir\", %q, \"density:app\"]\n  mount = \"/d%03d/\"\n  user = \"www-data\"\n  stop_timeout = \"10s\"\n  ready { timeout = \"60s\" }\n  proxy { timeout = \"90s\" }\n",
			i, e.apps, i)
		if mode == "on-demand" {
			fmt.Fprintf(&sb, "  start = \"on-demand\"\n  idle_timeout = %q\n", densityIdle)
		}
		sb.WriteString("}\n")
	}
	return sb.String()
}

func quoteList(a []string) string {
	q := make([]string, len(a))
	for i, s := range a {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func (b *bench) densityRun(ctx context.Context, n int, mode string) (densityRow, error) {
	row := densityRow{Mode: mode, Sites: n}
	name := fmt.Sprintf("density-%s-%d", mode, n)
	conf := filepath.Join(b.e.work, "apache-density-"+name+".conf")
	defer func() {
		os.Remove(conf)
		b.e.apache.Reload()
	}()

	// The memory watch runs from before the start: eager boots every
	// backend before READY=1.
	var reached atomic.Int64
	var lowMem atomic.Bool
	var svPID atomic.Int64
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		for {
			select {
			case <-wctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if memAvailable() < densityMemFloor && !lowMem.Load() {
				lowMem.Store(true)
				if pid := int(svPID.Load()); pid > 0 {
					reached.Store(int64(countGunicornMasters(pid)))
				}
				// Stop everything now: sockvisor stops its backends.
				if pid := int(svPID.Load()); pid > 0 {
					b.e.stopPID(pid)
				}
			}
		}
	}()
	defer func() { wcancel(); wwg.Wait() }()

	s, err := b.e.startSockvisorWatch(ctx, name, b.densityHCL(n, mode, conf), 15*time.Minute, func(pid int) { svPID.Store(int64(pid)) })
	if lowMem.Load() {
		if s != nil {
			s.stop()
		}
		row.Reached = int(reached.Load())
		row.Stopped = fmt.Sprintf("stopped: MemAvailable fell below %d GiB with %d of %d backends started", densityMemFloor>>30, row.Reached, n)
		return row, nil
	}
	if err != nil {
		return row, err
	}
	defer s.stop()
	row.Ready = s.ready
	row.ReadyProc = len(descendants(s.p.pid()))

	// Idle CPU of sockvisor before any traffic.
	sleepCtx(ctx, time.Second)
	t0, _ := cpuTicks(s.p.pid())
	w0 := time.Now()
	sleepCtx(ctx, b.p.idle)
	t1, _ := cpuTicks(s.p.pid())
	row.IdleCPU = float64(t1-t0) * 10 * float64(time.Millisecond) / float64(time.Since(w0)) * 100

	// Traffic: windows of densityActive sites, densityClients clients each.
	var cold []time.Duration
	var coldMu sync.Mutex
	var total, failed atomic.Int64
	client := &http.Client{Timeout: 100 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: densityActive * densityClients}}
	c0, _ := cpuTicks(s.p.pid())
	tr0 := time.Now()
	windows := b.p.densityWindows
	for w := range windows {
		if ctx.Err() != nil || lowMem.Load() {
			break
		}
		wend := time.Now().Add(b.p.densityWindow)
		var wg sync.WaitGroup
		for k := range densityActive {
			site := (w*densityActive + k) % n
			url := b.e.apache.URL(fmt.Sprintf("/d%03d/", site))
			for c := range densityClients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; time.Now().Before(wend) && i < 100000 && ctx.Err() == nil; i++ {
						t := time.Now()
						err := getOK(client, url)
						total.Add(1)
						if err != nil {
							if failed.Add(1) <= 5 {
								progress(b.step, fmt.Sprintf("request to site %d failed: %v", site, err))
							}
						} else if i == 0 && c == 0 {
							coldMu.Lock()
							cold = append(cold, time.Since(t))
							coldMu.Unlock()
						}
						sleepCtx(ctx, 50*time.Millisecond) // about 20 req/s per client
					}
				}()
			}
		}
		// Memory in the middle of the window, with its sites active.
		sleepCtx(ctx, b.p.densityWindow/2)
		pss, rss, running := treeMemory(s.p.pid())
		if pss > row.PSSMiB {
			row.PSSMiB, row.RSSMiB, row.Running = pss, rss, running
		}
		wg.Wait()
	}
	row.Traffic = time.Since(tr0)
	c1, _ := cpuTicks(s.p.pid())
	row.SvCPU = float64(c1-c0) * 10 * float64(time.Millisecond) / float64(row.Traffic) * 100
	if kib, err := rssKiB(s.p.pid()); err == nil {
		row.SvRSSMiB = float64(kib) / 1024
	}
	row.Requests, row.Failed = total.Load(), failed.Load()
	row.ColdN = len(cold)
	row.ColdP50, row.ColdP99 = percentile(cold, 50), percentile(cold, 99)
	boots := bootTimes(filepath.Join(b.e.logs, "sockvisor-"+name+".log"))
	if mode == "eager" {
		row.ColdN = 0 // warm first requests; the column shows the first request's latency
	}
	row.BootP50, row.BootP99 = percentile(boots, 50), percentile(boots, 99)
	if lowMem.Load() {
		row.Reached = int(reached.Load())
		row.Stopped = fmt.Sprintf("stopped during traffic: MemAvailable fell below %d GiB", densityMemFloor>>30)
	}
	return row, nil
}

func percentile(v []time.Duration, p int) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

var readyAfterRe = regexp.MustCompile(`sockvisor\.backend\.svden-\d+: ready: .* after=([0-9.]+(?:ms|s|µs))`)

// bootTimes reads the backends' boot times (process start to proven ready)
// from sockvisor's log.
func bootTimes(log string) []time.Duration {
	b, err := os.ReadFile(log)
	if err != nil {
		return nil
	}
	var out []time.Duration
	for _, m := range readyAfterRe.FindAllStringSubmatch(string(b), -1) {
		if d, err := time.ParseDuration(m[1]); err == nil {
			out = append(out, d)
		}
	}
	return out
}

func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemAvailable:") {
			var kib int64
			fmt.Sscanf(strings.TrimPrefix(line, "MemAvailable:"), "%d", &kib)
			return kib << 10
		}
	}
	return 0
}

// descendants lists every process below pid (not pid itself).
func descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range procfs.List() {
		if st, err := procfs.ReadStat(p); err == nil {
			children[st.PPID] = append(children[st.PPID], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// countGunicornMasters counts sockvisor's direct children: one per
// running backend.
func countGunicornMasters(pid int) int { return len(procfs.Children(pid)) }

// treeMemory sums PSS and RSS (MiB) of sockvisor and every process below
// it, and counts running backends (sockvisor's children).
func treeMemory(pid int) (pss, rss float64, running int) {
	for _, p := range append([]int{pid}, descendants(pid)...) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			var kib float64
			switch {
			case strings.HasPrefix(line, "Pss:"):
				fmt.Sscanf(strings.TrimPrefix(line, "Pss:"), "%f", &kib)
				pss += kib / 1024
			case strings.HasPrefix(line, "Rss:"):
				fmt.Sscanf(strings.TrimPrefix(line, "Rss:"), "%f", &kib)
				rss += kib / 1024
			}
		}
	}
	return pss, rss, countGunicornMasters(pid)
}

func (r *results) densityTable() string {
	var sb strings.Builder
	sb.WriteString("| sites | start | READY=1 | processes at READY | memory (PSS / RSS, sockvisor + backends) with 10 sites active | backends running | sockvisor RSS | sockvisor CPU idle / traffic | first request p50 / p99 (cold starts) | backend boot p50 / p99 | failed / requests |\n")
	sb.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, d := range r.Density {
		if d.Stopped != "" && d.Requests == 0 {
			fmt.Fprintf(&sb, "| %d | %s | — | — | %s | %d | — | — | — | — | — |\n", d.Sites, d.Mode, d.Stopped, d.Reached)
			continue
		}
		cold := fmt.Sprintf("%s / %s", ms(d.ColdP50), ms(d.ColdP99))
		if d.ColdN > 0 {
			cold += fmt.Sprintf(" (%d)", d.ColdN)
		} else {
			cold += " (warm)"
		}
		boot := "—"
		if d.BootP50 > 0 {
			boot = ms(d.BootP50) + " / " + ms(d.BootP99)
		}
		fmt.Fprintf(&sb, "| %d | %s | %s | %d | %.0f / %.0f MiB | %d | %.1f MiB | %.2f %% / %.1f %% | %s | %s | %d / %d |\n",
			d.Sites, d.Mode, ms(d.Ready), d.ReadyProc, d.PSSMiB, d.RSSMiB, d.Running, d.SvRSSMiB, d.IdleCPU, d.SvCPU, cold, boot, d.Failed, d.Requests)
	}
	return sb.String()
}
