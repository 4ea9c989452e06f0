package procfs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

func TestReadStat(t *testing.T) {
	self, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.PPID != os.Getppid() || self.PGID != syscall.Getpgrp() || self.StartTime == 0 || self.Zombie() {
		t.Errorf("self = %+v", self)
	}
	// A child that exited but was not reaped is a zombie.
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	for i := 0; i < 200; i++ {
		st, err := ReadStat(cmd.Process.Pid)
		if err == nil && st.Zombie() {
			return
		}
		exec.Command("/bin/sleep", "0.01").Run()
	}
	t.Error("exited child never showed as a zombie")
}

func TestMissing(t *testing.T) {
	if _, err := ReadStat(1 << 30); err == nil {
		t.Error("ReadStat of a missing pid succeeded")
	}
}

// The Dir readers against this test process itself.
func TestDirReadsItsOwnProcess(t *testing.T) {
	pid := os.Getpid()
	st, err := Proc.Stat(pid)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if base := filepath.Base(exe); len(base) > 15 && st.Comm != base[:15] || len(base) <= 15 && st.Comm != base {
		t.Errorf("Comm = %q, want %q (at most 15 bytes)", st.Comm, base)
	}
	if st.PPID != os.Getppid() {
		t.Errorf("PPID = %d, want %d", st.PPID, os.Getppid())
	}
	if got := Proc.Cmdline(pid); !slices.Equal(got, os.Args) {
		t.Errorf("Cmdline = %q, want %q", got, os.Args)
	}
	if got, want := Proc.Getenv(pid, "PATH"), os.Getenv("PATH"); got != want {
		t.Errorf("Getenv(PATH) = %q, want %q", got, want)
	}
	if got := Proc.Getenv(pid, "SOCKVISOR_NO_SUCH_VARIABLE"); got != "" {
		t.Errorf("Getenv of an unset variable = %q", got)
	}
	if got := Proc.Exe(pid); got != exe {
		t.Errorf("Exe = %q, want %q", got, exe)
	}
	gone := Dir(t.TempDir())
	if _, err := gone.Stat(pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat in an empty root: %v, want not-exist", err)
	}
	if gone.Cmdline(pid) != nil || gone.Exe(pid) != "" || len(gone.List()) != 0 {
		t.Error("an empty root reads as a process")
	}
}
