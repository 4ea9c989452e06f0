package daemon

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (d *Daemon) metricsHandler() http.Handler { return nil }

var _ = prometheus.NewRegistry
var _ = promhttp.HandlerFor
