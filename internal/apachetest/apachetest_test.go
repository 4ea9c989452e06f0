package apachetest

import (
	"os"
	"strconv"
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

func TestPrivateTmpHidesHostTmp(t *testing.T) {
	in := Start(t, "", PrivateTmp())
	f, err := os.CreateTemp("", "svmark")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	if _, err := os.Stat("/proc/" + strconv.Itoa(in.PID()) + "/root" + f.Name()); !os.IsNotExist(err) {
		t.Fatalf("Apache sees the host's %s: %v", f.Name(), err)
	}
	if code, _, err := in.Get("/"); err != nil || code == 0 {
		t.Fatalf("GET / = %d %v\n%s", code, err, in.Log())
	}
}
