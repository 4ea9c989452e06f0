package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestQuickRun runs the whole benchmark in quick mode, end to end, against
// a real private Apache, and checks what the benchmarks claim rather than
// how fast this machine is.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skipf("%s: takes about a minute and a half", t.Name())
	}
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "/usr/sbin/apache2", "/usr/bin/gunicorn", "/usr/bin/uwsgi", "/usr/sbin/php-fpm8.2", "/usr/bin/wrk", "/usr/bin/gnuplot", "/usr/bin/setpriv")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := run(ctx, options{
		quick:   true,
		outDir:  out,
		results: filepath.Join(out, "RESULTS.md"),
		svg:     filepath.Join(out, "restart-storm.svg"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := quickPlan()

	// sockvisor's promise: a restart refuses nothing, whatever the server.
	// The self-bound baseline must show why it matters.
	var svRestarts, baseline int
	for _, s := range res.Storms {
		switch {
		case s.Mode == "sockvisor" && s.Event == evRestart:
			svRestarts++
			// uWSGI 2.0 has a graceful-kill race (a worker signalled right
			// after accept() exits before it marks the request in progress,
			// closing it unanswered: Apache says 500), seen about once per
			// 80 restarts on a loaded 2-core machine. One such 500 is logged
			// and tolerated; a 503 (a refused connection) never is.
			if s.Backend == "uwsgi" && s.Failed == 1 && !strings.Contains(s.Reasons, "503") {
				t.Logf("uwsgi on a sockvisor socket: 1 of %d requests failed during %d restarts (%s): uWSGI's graceful-kill race, not a refused connection", s.OK+s.Failed, s.Count, s.Reasons)
			} else if s.Failed != 0 {
				hint := ""
				if s.Backend == "uwsgi" && !strings.Contains(s.Reasons, "503") {
					hint = "; a 500 here is most likely uWSGI 2.0's graceful-kill race"
				}
				t.Errorf("%s on a sockvisor socket: %d of %d requests failed during %d restarts (%s; at %v)%s",
					s.Backend, s.Failed, s.OK+s.Failed, s.Count, s.Reasons, s.Samples, hint)
			}
		case s.Mode == "self-bound" && s.Backend == "gunicorn" && s.Event == evRestart:
			baseline++
			if s.Failed == 0 {
				t.Errorf("self-bound gunicorn lost nothing during %d restarts: the baseline no longer shows the problem", s.Count)
			}
		}
		if s.OK == 0 {
			t.Errorf("%s %s, %s: no successful request at all", s.Backend, s.Mode, s.Event)
		}
	}
	if svRestarts != 3 || baseline != 1 {
		t.Errorf("restart scenarios: %d sockvisor (want gunicorn, uwsgi, php-fpm), %d self-bound (want 1)", svRestarts, baseline)
	}
	// 4 targets (3 presets + the gunicorn baseline) × restart, kill, graceful.
	if len(res.Storms) != 12 {
		t.Errorf("%d failure scenarios, want 12", len(res.Storms))
	}
	if res.Sweep.Files != p.sweepFiles || res.Sweep.Remaining != 0 {
		t.Errorf("sweep: %d of %d stale sockets left", res.Sweep.Remaining, res.Sweep.Files)
	}
	if len(res.Throughput) != 3 || len(res.Scale) != len(p.scaleSizes) || len(res.Crash) != 3 {
		t.Errorf("rows: %d throughput (want 3), %d scale (want %d), %d crash (want 3)",
			len(res.Throughput), len(res.Scale), len(p.scaleSizes), len(res.Crash))
	}
	for _, r := range res.Throughput {
		if r.RPS <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("throughput %s: %+v", r.Name, r)
		}
	}
	for _, r := range res.Scale {
		if r.Ready <= 0 || r.RSSKiB <= 0 {
			t.Errorf("scale %d: %+v", r.Backends, r)
		}
	}

	// Part 7: a broken deploy is refused with exit 1 and fails nothing
	// behind sockvisor; stop-then-start of a self-bound server fails.
	if len(res.Deploy) != 2 {
		t.Errorf("%d broken-deploy rows, want 2", len(res.Deploy))
	} else {
		if d := res.Deploy[0]; d.Failed != 0 || !strings.HasPrefix(d.Command, "exit 1 ") {
			t.Errorf("broken deploy through sockvisor: %+v", d)
		}
		if d := res.Deploy[1]; d.Failed == 0 {
			t.Errorf("broken deploy by stop, then start lost nothing: %+v", d)
		}
	}

	// The written table has every row.
	md, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"## Machine", "| CPU |", "| sockvisor |",
		"sockvisor socket (UDS, inherited)", "gunicorn's own socket", "TCP loopback",
		"| gunicorn | sockvisor (inherited) |", "| gunicorn | its own (self-bound) |",
		"| uwsgi | sockvisor (inherited) |", "| php-fpm | sockvisor (inherited) |",
		"| 10 |", "| 50 |", "| 1000 |",
		"sockvisor, gunicorn preset", "sockvisor, generic preset", "gunicorn's own socket, restarted"}
	for _, w := range want {
		if !strings.Contains(string(md), w) {
			t.Errorf("RESULTS.md has no %q", w)
		}
	}
	svg, err := os.ReadFile(filepath.Join(out, "restart-storm.svg"))
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Errorf("restart-storm.svg not drawn: %v", err)
	}
	for _, f := range []string{"storm-sockvisor-gunicorn-restart.csv", "storm-self-bound-gunicorn-restart.csv"} {
		if b, err := os.ReadFile(filepath.Join(out, f)); err != nil || !strings.HasPrefix(string(b), "second,ok,failed\n") {
			t.Errorf("%s: %v", f, err)
		}
	}
}
