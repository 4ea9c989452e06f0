// Command svbackend is the benchmarks' smallest backend: an HTTP server on
// the listening socket it inherits as fd 3 (systemd's LISTEN_FDS protocol,
// sockvisor's "generic" preset). It answers every request with a short
// text and stops gracefully on SIGTERM.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") != "1" {
		fmt.Fprintln(os.Stderr, "svbackend: needs one socket on fd 3 (LISTEN_FDS=1, LISTEN_PID=<own pid>)")
		os.Exit(2)
	}
	f := os.NewFile(3, "listen")
	l, err := net.FileListener(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "svbackend:", err)
		os.Exit(2)
	}
	f.Close()
	// The path belongs to the supervisor; closing must not unlink it.
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	body := []byte(fmt.Sprintf("hello from svbackend pid %d\n", os.Getpid()))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "svbackend:", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "svbackend:", err)
		os.Exit(1)
	}
}
