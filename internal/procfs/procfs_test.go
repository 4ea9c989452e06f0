package procfs

import (
	"os"
	"os/exec"
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
