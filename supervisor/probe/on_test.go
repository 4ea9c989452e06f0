package probe

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// TestOnVariants: the *On probes run on a connection the caller opened and
// leave it open for the caller to close.
func TestOnVariants(t *testing.T) {
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "on.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				code := "204 No Content"
				if req.URL.Path == "/fail" {
					code = "503 Service Unavailable"
				}
				c.Write([]byte("HTTP/1.1 " + code + "\r\nContent-Length: 0\r\n\r\n"))
			}()
		}
	}()
	for _, c := range []struct {
		path string
		code int
		ok   bool
	}{{"/", 204, true}, {"/fail", 503, false}} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		code, err := HTTPOn(context.Background(), conn, c.path)
		if code != c.code || (err == nil) != c.ok {
			t.Errorf("HTTPOn %s = %d, %v; want %d, ok %t", c.path, code, err, c.code, c.ok)
		}
		// Still ours: closing it is the caller's job and must not fail.
		if err := conn.Close(); err != nil {
			t.Errorf("closing the connection after HTTPOn: %v (closed behind the caller's back)", err)
		}
	}
}
