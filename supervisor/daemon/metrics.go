package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sockvisor/sockvisor/supervisor/backend"
)

// counters are the daemon's own event counts; backend and socket numbers
// are read fresh from their owners at every scrape.
type counters struct {
	apacheReloads        atomic.Uint64
	apacheReloadFailures atomic.Uint64
	// Each reload outcome has a counter of its own, incremented once the
	// outcome is known: "ok" as a difference of two loads could go down
	// between a reload's two increments or between the loads.
	configReloadsOK      atomic.Uint64
	configReloadFailures atomic.Uint64
}

var (
	descUp       = prometheus.NewDesc("sockvisor_backend_ready", "1 if the backend passed its readiness probe.", []string{"backend"}, nil)
	descState    = prometheus.NewDesc("sockvisor_backend_state", "1 for the backend's current state.", []string{"backend", "state"}, nil)
	descRestarts = prometheus.NewDesc("sockvisor_backend_restarts_total", "Restarts after crashes and failed starts.", []string{"backend"}, nil)
	descExit     = prometheus.NewDesc("sockvisor_backend_last_exit_code", "Exit status of the last process that ended (128+N for signal N).", []string{"backend"}, nil)
	descUptime   = prometheus.NewDesc("sockvisor_backend_uptime_seconds", "Seconds since the current process started.", []string{"backend"}, nil)
	descQueue    = prometheus.NewDesc("sockvisor_socket_queue_length", "Connections waiting in the socket's accept queue (ss -xl Recv-Q).", []string{"backend", "socket"}, nil)
	descBacklog  = prometheus.NewDesc("sockvisor_socket_backlog", "The socket's listen backlog (ss -xl Send-Q).", []string{"backend", "socket"}, nil)
	descApache   = prometheus.NewDesc("sockvisor_apache_reloads_total", "Apache reloads after a config change.", nil, nil)
	descApacheF  = prometheus.NewDesc("sockvisor_apache_reload_failures_total", "Apache config changes that failed (configtest, reload or health check) and were rolled back.", nil, nil)
	descConfig   = prometheus.NewDesc("sockvisor_config_reloads_total", "Config reloads requested.", []string{"result"}, nil)
)

var states = []backend.State{backend.StateStarting, backend.StateReady, backend.StateIdle, backend.StateBackoff, backend.StateFailed, backend.StateStopping, backend.StateStopped}

type collector struct{ d *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descRestarts, descExit, descUptime, descQueue, descBacklog, descApache, descApacheF, descConfig, descColdStarts, descIdleStops, descColdLatency} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, b := range c.d.report().Backends {
		ready := 0.0
		if b.Ready {
			ready = 1
		}
		gauge(descUp, ready, b.Name)
		for _, s := range states {
			v := 0.0
			if b.State == s {
				v = 1
			}
			gauge(descState, v, b.Name, string(s))
		}
		counter(descRestarts, uint64(b.Restarts), b.Name)
		if b.LastExit != nil {
			gauge(descExit, float64(b.LastExit.Code), b.Name)
		}
		gauge(descUptime, b.Uptime, b.Name)
		for _, q := range b.Queues {
			gauge(descQueue, float64(q.Queue), b.Name, q.Path)
			gauge(descBacklog, float64(q.Backlog), b.Name, q.Path)
		}
	}
	c.onDemand(ch)
	n := &c.d.counts
	counter(descApache, n.apacheReloads.Load())
	counter(descApacheF, n.apacheReloadFailures.Load())
	counter(descConfig, n.configReloadsOK.Load(), "ok")
	counter(descConfig, n.configReloadFailures.Load(), "failed")
}

// metricsHandler serves sockvisor's metrics plus the Go runtime's.
func (d *Daemon) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d}, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// serveMetrics serves /metrics on metrics_listen until ctx ends.
func (d *Daemon) serveMetrics(ctx context.Context, addr string, h http.Handler) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_listen %s: %w; choose a free address or remove metrics_listen", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", "error", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
	}, nil
}
