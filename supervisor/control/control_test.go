package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sockvisor/sockvisor/internal/testutil"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

// TestMain lets the test binary play a client running as another user;
// otherwise it runs the tests and checks for leaks (testutil.Main).
func TestMain(m *testing.M) {
	if path := os.Getenv("SV_CONTROL_CLIENT"); path != "" {
		_, err := NewClient(path).Status(context.Background())
		switch {
		case errors.Is(err, ErrNotAllowed):
			fmt.Print("not-allowed: ", err)
		default:
			fmt.Printf("other: %v", err)
		}
		os.Exit(0)
	}
	testutil.Main(m)
}

type fakeDaemon struct{ restarted string }

func (f *fakeDaemon) Status(context.Context) (any, error) {
	return map[string]int{"backends": 2}, nil
}
func (f *fakeDaemon) Restart(_ context.Context, b string) error {
	if b != "app" {
		return fmt.Errorf("no backend named %q", b)
	}
	f.restarted = b
	return nil
}
func (f *fakeDaemon) Reload(context.Context) error { return errors.New("config broken at x.hcl:3") }

func serve(t *testing.T, h Handler) (string, context.CancelFunc) {
	t.Helper()
	path := filepath.Join(testutil.ShortDir(t), "ctl")
	s, err := Listen(path, h, nil, testutil.Logger("", hclog.Info))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return path, cancel
}

func TestRoundTrip(t *testing.T) {
	testutil.NeedRoot(t)
	f := &fakeDaemon{}
	path, _ := serve(t, f)
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode = %v, want 0600", fi.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := NewClient(path)
	raw, err := c.Status(ctx)
	var st map[string]int
	if err != nil || json.Unmarshal(raw, &st) != nil || st["backends"] != 2 {
		t.Fatalf("status = %s, %v", raw, err)
	}
	if err := c.Restart(ctx, "app"); err != nil || f.restarted != "app" {
		t.Fatalf("restart: %v", err)
	}
	if err := c.Restart(ctx, "nope"); err == nil || !strings.Contains(err.Error(), `no backend named "nope"`) {
		t.Fatalf("restart unknown: %v", err)
	}
	if err := c.Reload(ctx); err == nil || !strings.Contains(err.Error(), "x.hcl:3") {
		t.Fatalf("reload error not passed through: %v", err)
	}
	// A second server on the same path must refuse, not steal the socket.
	_, err = Listen(path, f, nil, hclog.NewNullLogger())
	if !errors.Is(err, ErrAlreadyRunning) || !errors.Is(err, sockets.ErrInUse) {
		t.Fatalf("second Listen = %v", err)
	}
	// One sentence, one fix: it used to append ours to the sockets
	// package's "stop that process or choose another socket name".
	want := fmt.Sprintf("another sockvisor (pid %d) is already running on control socket %s; stop it first (systemctl stop sockvisor) or set another control_socket", os.Getpid(), path)
	if err.Error() != want {
		t.Errorf("second Listen says %q, want %q", err, want)
	}
}

func TestNotRunningAndStale(t *testing.T) {
	path := filepath.Join(testutil.ShortDir(t), "ctl")
	_, err := NewClient(path).Status(context.Background())
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Call without daemon = %v", err)
	}
	// The sentinel names the package; the user reads the sentence.
	if want := "sockvisor is not running: no daemon answers on " + path + "; start it with `systemctl start sockvisor` (or `sockvisor run`)"; err.Error() != want {
		t.Errorf("Call without daemon says %q, want %q", err, want)
	}
	// A regular file where the socket should be is refused and kept.
	os.WriteFile(path, []byte("keep"), 0o644)
	if _, err := Listen(path, &fakeDaemon{}, nil, hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a file = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep" {
		t.Fatal("Listen touched a regular file")
	}
}

// A non-root peer is refused by the file mode, and by SO_PEERCRED when the
// mode is loosened.
func TestNonRootRefused(t *testing.T) {
	testutil.NeedRoot(t)
	path, _ := serve(t, &fakeDaemon{})
	// go test's build directory is 0700: give nobody a copy it can run.
	bin := testutil.CopySelf(t, filepath.Join(filepath.Dir(path), "client"))
	asNobody := func() string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "SV_CONTROL_CLIENT="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		return string(out)
	}
	want := "not-allowed: the control API is root-only: permission denied on " + path + "; run the command as root (sudo)"
	if got := asNobody(); got != want {
		t.Errorf("nobody through 0600 = %q, want %q", got, want)
	}
	os.Chmod(path, 0o666)
	want = "not-allowed: the control API is root-only; run the command as root (sudo)"
	if got := asNobody(); got != want {
		t.Errorf("nobody through SO_PEERCRED = %q, want %q", got, want)
	}
}

// A request that carries no peer uid (it did not come through the control
// socket's ConnContext) is refused, not taken for root.
func TestRootOnlyFailsClosed(t *testing.T) {
	s := &Server{log: hclog.NewNullLogger()}
	reached := false
	h := s.rootOnly(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	for name, ctx := range map[string]context.Context{
		"no peer uid":   context.Background(),
		"unknown peer":  context.WithValue(context.Background(), peerKey{}, -1),
		"non-root peer": context.WithValue(context.Background(), peerKey{}, 65534),
		"a uid not int": context.WithValue(context.Background(), peerKey{}, "0"),
	} {
		reached = false
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/status", nil).WithContext(ctx))
		if reached || w.Code != http.StatusForbidden {
			t.Errorf("%s: handler reached = %v, status %d; want 403 and not reached", name, reached, w.Code)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/status", nil).WithContext(context.WithValue(context.Background(), peerKey{}, 0)))
	if !reached {
		t.Errorf("root peer: handler not reached (status %d)", w.Code)
	}
}

// Every sentinel's text names the package, as the other packages' do.
func TestSentinelsNameThePackage(t *testing.T) {
	for _, err := range []error{ErrNotRunning, ErrNotAllowed, ErrAlreadyRunning, ErrRefused} {
		if !strings.HasPrefix(err.Error(), "control: ") {
			t.Errorf("sentinel %q does not start with \"control: \"", err)
		}
	}
}
