package procfs

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A child holding a socket and a pipe is found by both inodes, by the full
// scan, the restricted one and the shared snapshot; a snapshot from before
// the child existed is not reused.
func TestHolders(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(fds[0]), "sock")
	defer sock.Close()
	syscall.Close(fds[1])
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var sst, pst syscall.Stat_t
	syscall.Fstat(fds[0], &sst)
	syscall.Fstat(int(w.Fd()), &pst)
	links := map[string]bool{SocketLink(sst.Ino): true, PipeLink(pst.Ino): true}

	HoldersSince(time.Now(), map[string]bool{"socket:[1]": true}) // a snapshot without the child
	cmd := exec.Command("/bin/sleep", "30")
	cmd.ExtraFiles = []*os.File{sock, w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	child := cmd.Process.Pid

	count := func(hs []Holder) (n int) {
		for _, h := range hs {
			if h.PID == child {
				n++
			}
		}
		return n
	}
	for _, h := range HoldersIn([]int{child}, links) {
		if want := map[string]uint64{"socket": sst.Ino, "pipe": pst.Ino}[h.Link[:strings.IndexByte(h.Link, ':')]]; h.Inode() != want {
			t.Errorf("%s: Inode() = %d; want %d", h.Link, h.Inode(), want)
		}
	}
	if ino := (Holder{Link: "anon_inode:[eventpoll]"}).Inode(); ino != 0 {
		t.Errorf("Inode of an anon inode = %d; want 0", ino)
	}
	if n := count(Holders(links)); n != 2 {
		t.Errorf("Holders found the child %d times; want 2 (socket and pipe)", n)
	}
	if n := count(HoldersIn([]int{child}, links)); n != 2 {
		t.Errorf("HoldersIn found the child %d times; want 2", n)
	}
	if n := count(HoldersSince(time.Now(), links)); n != 2 {
		t.Errorf("HoldersSince reused a snapshot from before the child started (found it %d times)", n)
	}
	if pids := PIDs(HoldersIn([]int{child, os.Getpid()}, links)); len(pids) != 2 || pids[0] != child {
		t.Errorf("PIDs = %v; want [%d %d]", pids, child, os.Getpid())
	}
}
