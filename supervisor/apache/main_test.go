package apache

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the run if goroutines outlive the tests: every test
// server, client and D-Bus connection must be stopped and waited for.
func TestMain(m *testing.M) {
	base := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		n := 0
		for i := 0; i < 100; i++ {
			if n = runtime.NumGoroutine(); n <= base {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n > base {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leaked %d goroutines:\n%s\n", n-base, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}
