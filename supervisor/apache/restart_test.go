package apache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/apachetest"
	"github.com/sockvisor/sockvisor/internal/procfs"
	"github.com/sockvisor/sockvisor/internal/testutil"
)

// zombie returns a process that has exited and is not reaped yet, as a
// dead Apache main process is until its parent waits for it; reap waits.
func zombie(t *testing.T) (pid int, reap func()) {
	t.Helper()
	z := exec.Command("/bin/true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if st, err := procfs.ReadStat(z.Process.Pid); err == nil && st.State == 'Z' {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return z.Process.Pid, func() { z.Wait() }
}

// stopForeground stops the test's own Apache, leaving its directory.
func stopForeground(t *testing.T, in *apachetest.Instance) {
	t.Helper()
	syscall.Kill(in.PID(), syscall.SIGTERM)
	for i := 0; i < 200 && in.Alive(); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if in.Alive() {
		t.Fatal("Apache did not stop")
	}
}

// TestStartAfterDeadMain: Start after a reload killed Apache must not be
// fooled by the dead main process still in the PidFile. `-k start` takes
// a process that still exists (exiting, or a zombie) for a running server
// and exits 0, which left Apache down.
func TestStartAfterDeadMain(t *testing.T) {
	dir := testutil.ShortDir(t)
	in, l := testApache(t, dir)
	pidFile := in.Dir + "/apache2.pid"
	stopForeground(t, in)
	t.Cleanup(func() { stopDaemon(t, pidFile, 0) })

	for _, tc := range []struct {
		name string
		gone time.Duration
		reap time.Duration // when the zombie is reaped, after Start begins
	}{
		{"reaped while Start waits", 0, 300 * time.Millisecond},
		{"zombie outlasts the wait", 200 * time.Millisecond, 2 * time.Second},
	} {
		pid, reap := zombie(t)
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		reaped := make(chan struct{})
		time.AfterFunc(tc.reap, func() { reap(); close(reaped) })
		r := &ApachectlReloader{Apachectl: l.Apachectl, Gone: tc.gone}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := r.Start(ctx)
		cancel()
		if err != nil {
			t.Errorf("%s: Start = %v\n%s", tc.name, err, in.Log())
		} else if code, _, gerr := in.Get("/"); gerr != nil {
			t.Errorf("%s: Apache does not answer after Start: %d %v", tc.name, code, gerr)
		}
		<-reaped
		stopDaemon(t, pidFile, 0)
		for i := 0; i < 100; i++ {
			if _, _, err := in.Get("/"); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestReloadOntoBadCertificate is the tester's report: a certificate that
// turned to garbage after sockvisor check kills Apache on graceful restart
// (AH02562); the previous config must be back, Apache running it, and the
// error must say so.
func TestReloadOntoBadCertificate(t *testing.T) {
	dir := testutil.ShortDir(t)
	port := apachetest.FreePort(t)
	in, l := testApacheSite(t, dir, defaultVhost(t, dir, port), apachetest.ListenOn(port), apachetest.ExtraPorts(1))
	tlsPort := in.Extra[0]
	cert, key := selfSigned(t, dir, "a.example")
	startEcho(t, dir+"/a.sock", "a")
	site := func(cert string) string {
		return fmt.Sprintf(`
site "a.example" {
  listen        = ["*:%d"]
  redirect_http = false
  tls {
    certificate = %q
    key         = %q
    listen      = ["*:%d"]
  }
}
backend "a" {
  command = ["/bin/true"]
  site    = "a.example"
}
`, port, cert, key, tlsPort)
	}
	m, _ := newTestManager(t, l)
	mustApply(t, m, loadHCL(t, dir, site(cert)))
	want, _ := os.ReadFile(l.SitesFile)
	t.Cleanup(func() { stopDaemon(t, in.Dir+"/apache2.pid", in.PID()) })

	// The new certificate passes check, then is overwritten with garbage
	// (a botched renewal) before the reload.
	bad := dir + "/bad.pem"
	if err := os.Link(cert, bad); err != nil {
		t.Fatal(err)
	}
	next := loadHCL(t, dir, site(bad))
	os.Remove(bad)
	if err := os.WriteFile(bad, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := m.Apply(context.Background(), next)
	if !errors.Is(err, ErrApacheDied) || changed {
		t.Fatalf("Apply = %v, %v; want ErrApacheDied\n%s", changed, err, in.Log())
	}
	if !strings.Contains(err.Error(), "started Apache again, which now runs it") {
		t.Errorf("error does not say Apache runs the previous config again: %v", err)
	}
	if got, _ := os.ReadFile(l.SitesFile); string(got) != string(want) {
		t.Errorf("sites file not restored:\n%s", got)
	}
	fetch(t, tlsPort, "GET", "a.example", "/x", "a.example", nil).want(t, in, "https after the restart", 200, "name=a path=/x ")
}
