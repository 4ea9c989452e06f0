package apachetest

import (
	"os"
	"strings"
	"testing"
)

func TestStartServesAndReloads(t *testing.T) {
	in := Start(t, "")
	if err := os.WriteFile(in.Dir+"/index.html", []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, body, err := in.Get("/index.html")
	if err != nil || code != 200 || !strings.Contains(body, "hello") {
		t.Fatalf("GET = %d %q %v\n%s", code, body, err, in.Log())
	}
	pid := in.PID()
	in.Graceful(t)
	if !in.Alive() || in.PID() != pid {
		t.Fatal("apache died on graceful")
	}
	if out, err := in.ConfigTest(); err != nil {
		t.Fatalf("configtest: %v %s", err, out)
	}
}
