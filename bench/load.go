package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// loadGen sends GET requests from a fixed number of keep-alive clients until
// it is stopped, a time limit passes or a request budget is spent, and
// counts successes and failures per second. A request fails on a transport
// error or a status >= 500.
type loadGen struct {
	url         string
	concurrency int
	limit       time.Duration // hard bound on the run
	maxRequests int64         // hard bound on the number of requests

	mu      sync.Mutex
	start   time.Time
	buckets []bucket
	reasons map[string]int64
	samples []failure
	total   int64
	stopped bool

	cancel context.CancelFunc
	done   chan struct{}
}

type bucket struct{ ok, failed int64 }

// failure is one failed request, kept for the report (the first few only).
type failure struct {
	At     time.Time // when the answer (or error) came back
	Reason string
}

const maxSamples = 20

// loadResult is a finished run.
type loadResult struct {
	OK, Failed int64
	Duration   time.Duration
	Buckets    []bucket
	// Reasons counts failures by kind ("503", "connection reset", ...).
	Reasons map[string]int64
	// Samples are the first failures, with their time.
	Samples []failure
}

func startLoad(ctx context.Context, url string, concurrency int, limit time.Duration, maxRequests int64) *loadGen {
	g := &loadGen{url: url, concurrency: concurrency, limit: limit, maxRequests: maxRequests,
		reasons: map[string]int64{}, done: make(chan struct{})}
	ctx, g.cancel = context.WithTimeout(ctx, limit)
	tr := &http.Transport{
		MaxIdleConns:        concurrency,
		MaxIdleConnsPerHost: concurrency,
		IdleConnTimeout:     30 * time.Second,
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	g.start = time.Now()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := client.Do(req)
				reason := ""
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						reason = fmt.Sprint(resp.StatusCode)
					}
				}
				if err != nil {
					if ctx.Err() != nil {
						return // cut short by the end of the run: not counted
					}
					reason = errReason(err)
				}
				if !g.record(reason) {
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		tr.CloseIdleConnections()
		close(g.done)
	}()
	return g
}

// record counts one request; it returns false once the budget is spent.
func (g *loadGen) record(reason string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	sec := int(time.Since(g.start) / time.Second)
	for len(g.buckets) <= sec {
		g.buckets = append(g.buckets, bucket{})
	}
	if reason == "" {
		g.buckets[sec].ok++
	} else {
		g.buckets[sec].failed++
		g.reasons[reason]++
		if len(g.samples) < maxSamples {
			g.samples = append(g.samples, failure{At: time.Now(), Reason: reason})
		}
	}
	g.total++
	if g.total >= g.maxRequests {
		g.stopped = true
		g.cancel()
		return false
	}
	return true
}

// elapsed is the time since the load started.
func (g *loadGen) elapsed() time.Duration { return time.Since(g.start) }

// failed returns the failures so far.
func (g *loadGen) failed() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int64
	for _, b := range g.buckets {
		n += b.failed
	}
	return n
}

// stop ends the run and returns its totals.
func (g *loadGen) stop() loadResult {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cancel()
	<-g.done
	g.mu.Lock()
	defer g.mu.Unlock()
	r := loadResult{Duration: time.Since(g.start), Buckets: append([]bucket(nil), g.buckets...), Reasons: map[string]int64{},
		Samples: append([]failure(nil), g.samples...)}
	for _, b := range g.buckets {
		r.OK += b.ok
		r.Failed += b.failed
	}
	for k, v := range g.reasons {
		r.Reasons[k] = v
	}
	return r
}

// errReason names a transport error briefly.
func errReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return "transport error"
}

// reasonsText formats failure reasons as "503 ×12, EOF ×1".
func reasonsText(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
