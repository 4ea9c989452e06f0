// Command loadgen sends a bounded stream of GET requests to a few URLs and
// prints what failed. The node scenarios run it inside a node (built
// statically on the host and copied in) while they restart, reload, kill
// and upgrade sockvisor behind Apache.
//
// It stops at the first of: end of stdin (with -stdin), SIGTERM/SIGINT,
// -max elapsed, or -requests sent. While it runs it prints a progress line
// to stderr every -progress; at the end it prints one JSON Summary to
// stdout. A failure is a transport error or a status of 500 or more; a
// response that is neither that nor a 200 carrying -expect's text for its
// URL is counted as unexpected.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Summary is what loadgen prints on stdout.
type Summary struct {
	Requests        int64          `json:"requests"`
	OK              int64          `json:"ok"`
	Failures        int64          `json:"failures"` // TransportErrors + Status5xx
	TransportErrors int64          `json:"transport_errors"`
	Status5xx       int64          `json:"status_5xx"`
	Unexpected      int64          `json:"unexpected"` // other status, or body without the expected text
	DurationMS      int64          `json:"duration_ms"`
	MaxLatencyMS    int64          `json:"max_latency_ms"`
	P99LatencyMS    int64          `json:"p99_latency_ms"`
	Samples         []string       `json:"samples,omitempty"` // first few failures and unexpected answers
	URLs            map[string]URL `json:"urls"`
	StopReason      string         `json:"stop_reason"`
}

// URL is the per-URL part of Summary.
type URL struct {
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	Failures int64 `json:"failures"`
	// PIDs are the distinct "pid N" values seen in bodies: which backend
	// processes answered.
	PIDs []string `json:"pids,omitempty"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

var pidRE = regexp.MustCompile(`pid (\d+)`)

const maxSamples = 20

type stats struct {
	mu        sync.Mutex
	sum       Summary
	pids      map[string]map[string]bool
	latencies []time.Duration
}

func (s *stats) record(url, expect string, start time.Time, lat time.Duration, status int, body string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Requests++
	u := s.sum.URLs[url]
	u.Requests++
	s.latencies = append(s.latencies, lat)
	if lat.Milliseconds() > s.sum.MaxLatencyMS {
		s.sum.MaxLatencyMS = lat.Milliseconds()
	}
	at := start.Format("15:04:05.000")
	var problem string
	switch {
	case err != nil:
		s.sum.TransportErrors++
		s.sum.Failures++
		u.Failures++
		problem = fmt.Sprintf("%s %s: transport error after %s: %v", at, url, lat.Round(time.Millisecond), err)
	case status >= 500:
		s.sum.Status5xx++
		s.sum.Failures++
		u.Failures++
		problem = fmt.Sprintf("%s %s: status %d after %s: %.200q", at, url, status, lat.Round(time.Millisecond), body)
	case status != http.StatusOK || !strings.Contains(body, expect):
		s.sum.Unexpected++
		problem = fmt.Sprintf("%s %s: unexpected status %d after %s: %.200q", at, url, status, lat.Round(time.Millisecond), body)
	default:
		s.sum.OK++
		u.OK++
		if m := pidRE.FindStringSubmatch(body); m != nil {
			if s.pids[url] == nil {
				s.pids[url] = map[string]bool{}
			}
			s.pids[url][m[1]] = true
		}
	}
	if problem != "" && len(s.sum.Samples) < maxSamples {
		s.sum.Samples = append(s.sum.Samples, problem)
	}
	s.sum.URLs[url] = u
}

func (s *stats) progress() (req, fail, unexpected int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.Requests, s.sum.Failures, s.sum.Unexpected
}

func main() {
	var urls, expects multiFlag
	flag.Var(&urls, "url", "URL to GET (repeatable; requests rotate over them)")
	flag.Var(&expects, "expect", "text a 200 answer must contain, one per -url in order (default: none)")
	conc := flag.Int("c", 4, "concurrent clients")
	rate := flag.Float64("rate", 200, "requests per second over all clients (0: unlimited)")
	maxDur := flag.Duration("max", 3*time.Minute, "stop after this long")
	maxReq := flag.Int64("requests", 1_000_000, "stop after this many requests")
	timeout := flag.Duration("timeout", 65*time.Second, "per-request timeout")
	useStdin := flag.Bool("stdin", false, "stop at end of stdin")
	progressEvery := flag.Duration("progress", 250*time.Millisecond, "progress line interval on stderr")
	flag.Parse()
	if len(urls) == 0 || *conc < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: need at least one -url and -c >= 1")
		os.Exit(2)
	}
	for len(expects) < len(urls) {
		expects = append(expects, "")
	}

	ctx, cancel := context.WithTimeout(context.Background(), *maxDur)
	defer cancel()
	var stopMu sync.Mutex
	stopReason := ""
	stop := func(why string) {
		stopMu.Lock()
		if stopReason == "" {
			stopReason = why
		}
		stopMu.Unlock()
		cancel()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case s := <-sigs:
			stop("signal " + s.String())
		case <-ctx.Done():
		}
	}()
	if *useStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop("end of stdin")
		}()
	}

	client := &http.Client{
		Timeout: *timeout,
		// One TCP connection per request: every request is an independent
		// probe of Apache -> socket -> backend, never a keep-alive race.
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	st := &stats{pids: map[string]map[string]bool{}}
	st.sum.URLs = map[string]URL{}

	// A shared ticket channel enforces the rate and the request budget.
	tickets := make(chan int, *conc)
	go func() {
		defer close(tickets)
		var tick <-chan time.Time
		if *rate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / *rate))
			defer t.Stop()
			tick = t.C
		}
		for i := int64(0); i < *maxReq; i++ {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return
				}
			}
			select {
			case tickets <- int(i % int64(len(urls))):
			case <-ctx.Done():
				return
			}
		}
		stop("request budget reached")
	}()

	begin := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tickets {
				url, expect := urls[i], expects[i]
				start := time.Now()
				// Not bound to ctx: a request in flight when loadgen is
				// told to stop still finishes and is counted.
				status, body, err := get(client, url)
				st.record(url, expect, start, time.Since(start), status, body, err)
			}
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	pt := time.NewTicker(*progressEvery)
	defer pt.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-pt.C:
			r, f, u := st.progress()
			fmt.Fprintf(os.Stderr, "progress requests=%d failures=%d unexpected=%d\n", r, f, u)
		}
	}
	if ctx.Err() == context.DeadlineExceeded {
		stop("max duration reached")
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	st.sum.DurationMS = time.Since(begin).Milliseconds()
	st.sum.StopReason = stopReason
	if n := len(st.latencies); n > 0 {
		sort.Slice(st.latencies, func(i, j int) bool { return st.latencies[i] < st.latencies[j] })
		st.sum.P99LatencyMS = st.latencies[(n*99)/100].Milliseconds()
	}
	for url, set := range st.pids {
		u := st.sum.URLs[url]
		for p := range set {
			u.PIDs = append(u.PIDs, p)
		}
		sort.Strings(u.PIDs)
		st.sum.URLs[url] = u
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(st.sum); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) {
		return resp.StatusCode, string(b), fmt.Errorf("reading the body: %w", err)
	}
	return resp.StatusCode, string(b), nil
}
