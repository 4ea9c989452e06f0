package daemon

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockvisor/sockvisor/supervisor/backend"
	"github.com/sockvisor/sockvisor/supervisor/control"
)

// On-demand backends: the transaction does not wait for them (their
// WaitReady returns at once while idle), so sockvisor's READY=1 needs
// only their sockets; StartBackend and StopBackend serve `sockvisor
// start` and `sockvisor stop`.

var _ control.OnDemand = (*Daemon)(nil)

// lookup finds the running backend name, or says which ones exist.
func (d *Daemon) lookup(name string) (*supervised, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sv, ok := d.backends[name]; ok {
		return sv, nil
	}
	names := make([]string, 0, len(d.backends))
	for n := range d.backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("no backend named %q; configured: %s", name, strings.Join(names, ", "))
}

// backendCall runs f on backend name under the reload lock, refused while
// sockvisor stops and abandoned if it starts stopping meanwhile. Restart,
// StartBackend and StopBackend go through it.
func (d *Daemon) backendCall(ctx context.Context, name string, f func(*supervised, context.Context) error) error {
	if d.closing.Load() {
		return stoppingErr("")
	}
	ctx, cancel := d.untilStop(ctx)
	defer cancel()
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.closing.Load() {
		return stoppingErr("")
	}
	sv, err := d.lookup(name)
	if err != nil {
		return err
	}
	err = f(sv, ctx)
	if err != nil && d.closing.Load() {
		return stoppingErr(fmt.Sprintf("request for %q abandoned", name))
	}
	return err
}

// onDemandCall is backendCall for a method of the backend's supervisor.
func (d *Daemon) onDemandCall(ctx context.Context, name string, f func(*backend.Backend, context.Context) error) error {
	return d.backendCall(ctx, name, func(sv *supervised, ctx context.Context) error { return f(sv.sup, ctx) })
}

// StartBackend starts an idle on-demand backend now and waits until it is
// ready. Starting one that already runs succeeds and says so.
func (d *Daemon) StartBackend(ctx context.Context, name string) (string, error) {
	d.log.Info("starting on-demand backend", "backend", name)
	err := d.onDemandCall(ctx, name, (*backend.Backend).Start)
	switch {
	case errors.Is(err, backend.ErrNotIdle):
		return fmt.Sprintf("%s is already running; nothing to do", name), nil
	case errors.Is(err, backend.ErrEager):
		return "", fmt.Errorf("%s has start = \"eager\": it always runs; `sockvisor start` only starts on-demand backends (use `sockvisor restart %s` to replace its process)", name, name)
	case err != nil:
		return "", err
	}
	return fmt.Sprintf("started %s", name), nil
}

// StopBackend puts an on-demand backend back to idle: its processes stop
// gracefully and the next connection starts it again.
func (d *Daemon) StopBackend(ctx context.Context, name string) (string, error) {
	d.log.Info("putting on-demand backend back to idle", "backend", name)
	err := d.onDemandCall(ctx, name, (*backend.Backend).Idle)
	switch {
	case errors.Is(err, backend.ErrEager):
		return "", fmt.Errorf("%s has start = \"eager\" and cannot be idle; set start = \"on-demand\" in its backend block and reload, or remove it from the config", name)
	case err != nil:
		return "", err
	}
	return fmt.Sprintf("%s is idle; the next connection starts it", name), nil
}

// idleNotice turns a restart of an idle backend into a success that says so.
func idleNotice(name string, err error) error {
	if errors.Is(err, backend.ErrIdle) {
		return control.Notice{Msg: fmt.Sprintf("%s is idle (start = \"on-demand\", no process): nothing to restart; the next connection starts it with the current code", name)}
	}
	return err
}

var (
	descColdStarts  = prometheus.NewDesc("sockvisor_backend_cold_starts_total", "Starts of an idle on-demand backend (a connection waited on its socket, or sockvisor start).", []string{"backend"}, nil)
	descIdleStops   = prometheus.NewDesc("sockvisor_backend_idle_stops_total", "Stops of an on-demand backend back to idle (idle_timeout without connections, or sockvisor stop).", []string{"backend"}, nil)
	descColdLatency = prometheus.NewDesc("sockvisor_backend_cold_start_seconds", "Cold-start latency of on-demand backends: from the first connection seen waiting on the idle socket to the new process proven ready by its own readiness probe. sockvisor never accepts, so the first accept is not observable; readiness is when the process accepts.", []string{"backend"}, nil)
)

// onDemand emits the on-demand counters and histogram of each on-demand
// backend.
func (c collector) onDemand(ch chan<- prometheus.Metric) {
	c.d.mu.Lock()
	svs := make([]*supervised, 0, len(c.d.backends))
	for _, sv := range c.d.backends {
		if sv.cfg.OnDemand() {
			svs = append(svs, sv)
		}
	}
	c.d.mu.Unlock()
	for _, sv := range svs {
		st := sv.sup.OnDemandStats()
		name := sv.cfg.Name
		ch <- prometheus.MustNewConstMetric(descColdStarts, prometheus.CounterValue, float64(st.ColdStarts), name)
		ch <- prometheus.MustNewConstMetric(descIdleStops, prometheus.CounterValue, float64(st.IdleStops), name)
		ch <- prometheus.MustNewConstHistogram(descColdLatency, st.LatencyCount, st.LatencySum, st.LatencyBuckets, name)
	}
}
