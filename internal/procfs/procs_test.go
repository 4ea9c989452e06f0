package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// startGroup starts /bin/sh as the leader of a new process group, with a
// sleeping child in it, and returns the leader and that child. Both are
// killed and reaped in t.Cleanup.
func startGroup(t *testing.T) (leader *exec.Cmd, child int) {
	return startShell(t, "/bin/sleep 30")
}

// startShell starts /bin/sh as the leader of a new process group, running
// background in the background, and returns the shell and the background
// job's pid. The shell's group is killed, and the shell reaped, in
// t.Cleanup.
func startShell(t *testing.T, background string) (shell *exec.Cmd, job int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", background+" & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	var buf [32]byte
	n, _ := out.Read(buf[:])
	for _, c := range buf[:n] {
		if c >= '0' && c <= '9' {
			job = job*10 + int(c-'0')
		}
	}
	if job <= 0 {
		t.Fatalf("the shell did not report its job: %q", buf[:n])
	}
	return cmd, job
}

// A group's leader and its child are members, a group's zombie is not, and
// an empty group has none.
func TestGroupMembers(t *testing.T) {
	cmd, child := startGroup(t)
	pgid := cmd.Process.Pid
	if m := GroupMembers(pgid); len(m) != 2 || !slices.Contains(m, pgid) || !slices.Contains(m, child) {
		t.Fatalf("GroupMembers(%d) = %v; want the leader and %d", pgid, m, child)
	}
	if m := GroupMembers(syscall.Getpgrp()); slices.Contains(m, pgid) {
		t.Errorf("our own group %v holds the child's group leader %d", m, pgid)
	}
	// Kill the sleeper: the shell reaps it, then exits and stays a zombie
	// until cmd.Wait.
	syscall.Kill(child, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := ReadStat(pgid)
		if err == nil && st.Zombie() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group leader never became a zombie: %+v %v", st, err)
		}
	}
	if m := GroupMembers(pgid); len(m) != 0 {
		t.Errorf("GroupMembers(%d) = %v with only a zombie left; want none", pgid, m)
	}
	if m := GroupMembers(1 << 30); m != nil {
		t.Errorf("GroupMembers of a missing group = %v", m)
	}
}

func TestChildren(t *testing.T) {
	cmd, child := startGroup(t)
	if c := Children(cmd.Process.Pid); len(c) != 1 || c[0] != child {
		t.Errorf("Children(%d) = %v; want [%d]", cmd.Process.Pid, c, child)
	}
	if c := Children(os.Getpid()); !slices.Contains(c, cmd.Process.Pid) {
		t.Errorf("Children(self) = %v; want it to hold %d", c, cmd.Process.Pid)
	}
	if c := Children(1 << 30); len(c) != 0 {
		t.Errorf("Children of a missing pid = %v", c)
	}
}

// Alive counts a zombie as dead, Exists as there; neither counts pid 0, a
// negative pid or a missing one.
func TestAliveExists(t *testing.T) {
	if !Alive(os.Getpid()) || !Exists(os.Getpid()) {
		t.Error("this process is neither alive nor existing")
	}
	for _, pid := range []int{0, -1, 1 << 30} {
		if Alive(pid) || Exists(pid) {
			t.Errorf("pid %d counts as alive or existing", pid)
		}
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); Alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("an exited child stayed alive")
		}
	}
	if !Exists(pid) {
		t.Error("an unreaped zombie does not exist")
	}
	cmd.Wait()
	if Exists(pid) || Alive(pid) {
		t.Error("a reaped child still exists")
	}
}

func TestReadPIDs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cgroup.procs")
	if err := os.WriteFile(p, []byte("12\n 7 \n\nnot a pid\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pids, err := ReadPIDs(p)
	if err != nil || !slices.Equal(pids, []int{12, 7, 3}) {
		t.Errorf("ReadPIDs = %v, %v; want [12 7 3]", pids, err)
	}
	if _, err := ReadPIDs(p + ".missing"); !os.IsNotExist(err) {
		t.Errorf("ReadPIDs of a missing file: %v; want not-exist", err)
	}
}

func TestParseCgroup(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0::/system.slice/sockvisor.service\n", "/system.slice/sockvisor.service"},
		{"12:cpu:/x\n1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", "/system.slice/b.service"},
		{"1:name=systemd:/system.slice/a.service\n", "/system.slice/a.service"},
		{"0::/u\n1:name=systemd:/s\n", "/u"},
		{"3:memory:/m\n", ""},
		{"", ""},
	} {
		if got := parseCgroup(c.in); got != c.want {
			t.Errorf("parseCgroup(%q) = %q; want %q", c.in, got, c.want)
		}
	}
	if _, err := SelfCgroup(); err != nil {
		t.Error(err)
	}
}

// A generation is its group plus descendants that left the group (setsid),
// and never another group's processes.
func TestGeneration(t *testing.T) {
	cmd, left := startShell(t, "/usr/bin/setsid /bin/sleep 30")
	// It leaves the shell's group, so the shell's cleanup misses it.
	t.Cleanup(func() { syscall.Kill(-left, syscall.SIGKILL) })
	// setsid runs before it execs sleep; wait until the child has its own group.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := ReadStat(left); err == nil && st.PGID == left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d never left the group", left)
		}
	}
	other, otherChild := startGroup(t)
	gen := Generation(cmd.Process.Pid)
	if !slices.Contains(gen, cmd.Process.Pid) || !slices.Contains(gen, left) {
		t.Errorf("Generation(%d) = %v; want the leader and the setsid child %d", cmd.Process.Pid, gen, left)
	}
	for _, pid := range []int{os.Getpid(), other.Process.Pid, otherChild} {
		if slices.Contains(gen, pid) {
			t.Errorf("Generation(%d) = %v holds %d, which is not of it", cmd.Process.Pid, gen, pid)
		}
	}
}
