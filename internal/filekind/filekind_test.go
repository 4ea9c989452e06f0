package filekind

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Real files of each kind get the same name from Of (Lstat) and OfStat.
func TestKinds(t *testing.T) {
	dir, err := os.MkdirTemp("", "fk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	reg := filepath.Join(dir, "f")
	if err := os.WriteFile(reg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink("f", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "p")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[string]string{
		reg: "a regular file", dir: "a directory", link: "a symlink", fifo: "a named pipe (FIFO)",
		sock: "a socket", "/dev/null": "a character device",
	}
	for p, w := range want {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if got := Of(fi.Mode()); got != w {
			t.Errorf("Of(%s) = %q; want %q", p, got, w)
		}
		if got := OfStat(st.Mode); got != w {
			t.Errorf("OfStat(%s) = %q; want %q", p, got, w)
		}
	}
	if got, w := Of(os.ModeDevice), "a block device"; got != w {
		t.Errorf("Of(ModeDevice) = %q; want %q", got, w)
	}
	if got, w := OfStat(unix.S_IFBLK), "a block device"; got != w {
		t.Errorf("OfStat(S_IFBLK) = %q; want %q", got, w)
	}
	if got, w := Of(os.ModeIrregular), "a special file"; got != w {
		t.Errorf("Of(ModeIrregular) = %q; want %q", got, w)
	}
}
