package apache

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// startHeaderDump serves, on a unix socket, a backend that answers every
// request header it got, one "Name: value" line each.
func startHeaderDump(t *testing.T, sock string) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var lines []string
		for k, vs := range r.Header {
			for _, v := range vs {
				lines = append(lines, k+": "+v)
			}
		}
		sort.Strings(lines)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestForgedForwardedHeaders: a client's X-Forwarded-* in any spelling of
// "-" and "_", SCRIPT_NAME in either, and Forwarded never reach a backend;
// Gunicorn would fold the underscore spellings into HTTP_X_FORWARDED_*.
func TestForgedForwardedHeaders(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	startHeaderDump(t, dir+"/h.sock")
	startHeaderDump(t, dir+"/g.sock")
	cfg := loadHCL(t, dir, `
backend "h" {
  command = ["/bin/true"]
  mount   = "/h/"
}
backend "g" {
  preset  = "gunicorn"
  command = ["/bin/true"]
  mount   = "/g/"
}
`)
	m, _ := newTestManager(t, l)
	mustApply(t, m, cfg)
	forged := map[string]string{
		"X_Forwarded_For":    "6.6.6.6",
		"X_Forwarded_Proto":  "https-forged",
		"X_Forwarded_Host":   "evil",
		"X_Forwarded_Prefix": "/evil",
		"X_Forwarded_Server": "evil",
		"X-Forwarded_For":    "6.6.6.6",
		"X_Forwarded-Proto":  "https-forged",
		"Script-Name":        "/evil",
		"SCRIPT_NAME":        "/evil",
		"Forwarded":          "for=6.6.6.6;proto=https-forged",
	}
	for _, path := range []string{"/h/x", "/g/x"} {
		r := fetch(t, in.Port, "GET", "localhost", path, "", forged)
		if r.code != 200 {
			t.Fatalf("GET %s = %d %q\n%s", path, r.code, r.body, in.Log())
		}
		for _, bad := range []string{"6.6.6.6", "evil", "forged"} {
			if strings.Contains(r.body, bad) {
				t.Errorf("GET %s: a forged header arrived (%q):\n%s", path, bad, r.body)
			}
		}
		if strings.Contains(strings.ToLower(r.body), "\nforwarded:") || strings.HasPrefix(strings.ToLower(r.body), "forwarded:") {
			t.Errorf("GET %s: Forwarded arrived:\n%s", path, r.body)
		}
		for _, want := range []string{"X-Forwarded-For: 127.0.0.1\n", "X-Forwarded-Proto: http\n"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("GET %s lacks %q:\n%s", path, want, r.body)
			}
		}
	}
}
