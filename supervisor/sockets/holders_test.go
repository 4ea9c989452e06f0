package sockets

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Issue [K] item 4: the error for a socket in use named whoever called
// listen(2) (SO_PEERCRED), a sockvisor long dead, rather than the process
// that still holds the socket. Here the test process listens, hands the
// socket to a child and closes its own copy: the error must name the child.
func TestInUseNamesTheHolder(t *testing.T) {
	cfg := setup(t, 1, "")
	spec := cfg.Backends[0].Sockets[0]
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: spec.Path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f.Close() // only the child holds it now; SO_PEERCRED still names us

	if got := Holders(spec.Path); len(got) != 1 || got[0] != cmd.Process.Pid {
		t.Errorf("Holders = %v; want [%d]", got, cmd.Process.Pid)
	}
	log, _ := testLog()
	_, err = Create(cfg, spec, log)
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("Create over a held socket = %v; want ErrInUse", err)
	}
	if want := "pid " + strconv.Itoa(cmd.Process.Pid) + " "; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder, pid %d", err, cmd.Process.Pid)
	}
	if strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())+" ") {
		t.Errorf("error %q names the process that called listen(2), which no longer holds the socket", err)
	}
}
