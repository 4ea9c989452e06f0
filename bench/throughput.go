package main

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// tpRow is one transport's medians over the wrk runs.
type tpRow struct {
	Name     string
	Path     string
	RPS      float64
	P50, P99 time.Duration
	Errors   int64
	Runs     []wrkResult
}

// throughput runs wrk through Apache against the same Gunicorn (same app,
// same worker count) on three transports, interleaving the runs so a
// drifting machine affects all three alike.
func (b *bench) throughput(ctx context.Context) error {
	rows := []*tpRow{
		{Name: "sockvisor socket (UDS, inherited)", Path: pathSV},
		{Name: "gunicorn's own socket (UDS, --bind unix:)", Path: pathSelf},
		{Name: "TCP loopback (--bind 127.0.0.1)", Path: pathTCP},
	}
	for _, r := range rows {
		b.progress(fmt.Sprintf("warm-up %s (%s)", r.Name, b.p.wrkWarmup))
		if _, err := b.e.runWrk(ctx, b.e.apache.URL(r.Path), b.p.wrkConns, b.p.wrkWarmup); err != nil {
			return err
		}
	}
	for i := range b.p.wrkRuns {
		for _, r := range rows {
			b.progress(fmt.Sprintf("wrk -t2 -c%d -d%s, run %d/%d: %s", b.p.wrkConns, b.p.wrkDur, i+1, b.p.wrkRuns, r.Name))
			w, err := b.e.runWrk(ctx, b.e.apache.URL(r.Path), b.p.wrkConns, b.p.wrkDur)
			if err != nil {
				return err
			}
			r.Runs = append(r.Runs, w)
		}
	}
	for _, r := range rows {
		var rps []float64
		var p50, p99 []time.Duration
		for _, w := range r.Runs {
			rps = append(rps, w.RPS)
			p50 = append(p50, w.P50)
			p99 = append(p99, w.P99)
			r.Errors += w.Errors
		}
		r.RPS, r.P50, r.P99 = medianF(rps), medianD(p50), medianD(p99)
		b.res.Throughput = append(b.res.Throughput, *r)
	}
	return nil
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianD(v []time.Duration) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(medianF(f))
}
