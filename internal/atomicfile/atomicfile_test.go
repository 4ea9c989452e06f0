package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/opencontainers/selinux/go-selinux"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

// entries lists dir, to see that no temporary file is left.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.conf")
	if err := Write(p, []byte("one\n"), Options{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one\n" || fi.Mode() != 0o640 {
		t.Errorf("new file: %q %v; want \"one\\n\" -rw-r-----", b, fi.Mode())
	}
	// Replacing gives a new inode: a reader holding the old one still sees
	// the old content in full.
	old, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := Write(p, []byte("two\n"), Options{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two\n" {
		t.Errorf("replaced content = %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode() != 0o600 {
		t.Errorf("zero Options gave mode %v; want -rw-------", fi.Mode())
	}
	buf := make([]byte, 16)
	if n, _ := old.Read(buf); string(buf[:n]) != "one\n" {
		t.Errorf("the old file now reads %q", buf[:n])
	}
	if e := entries(t, dir); len(e) != 1 || e[0] != "app.conf" {
		t.Errorf("directory holds %v; want only app.conf", e)
	}
}

func TestWriteOwner(t *testing.T) {
	testutil.NeedRoot(t)
	p := filepath.Join(t.TempDir(), "pool.conf")
	if err := Write(p, []byte("x"), Options{Mode: 0o640, Chown: true, UID: 1, GID: 2}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1 || st.Gid != 2 || st.Mode&0o7777 != 0o640 {
		t.Errorf("file is %d:%d %04o; want 1:2 0640", st.Uid, st.Gid, st.Mode&0o7777)
	}
	// Without Chown the file is the writer's.
	if err := Write(p, []byte("y"), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("without Chown the file is %d:%d; want %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
}

// A symlink, a directory or a FIFO in the way is refused and left as it
// was, and so is its target.
func TestWriteRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, sub, fifo} {
		before, _ := os.Lstat(p)
		if err := Write(p, []byte("new"), Options{}); !errors.Is(err, ErrNotRegular) {
			t.Errorf("Write over %s = %v; want ErrNotRegular", p, err)
		}
		if after, err := os.Lstat(p); err != nil || !os.SameFile(before, after) {
			t.Errorf("%s was replaced", p)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the symlink's target now holds %q", b)
	}
	if e := entries(t, dir); len(e) != 4 {
		t.Errorf("directory holds %v; want no temporary file", e)
	}
}

// A failed write returns its error and changes nothing.
func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), Options{}); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Chown to an owner this process may not give away fails after the
	// temporary file exists. As root, the write runs with filesystem uid
	// nobody, which drops CAP_CHOWN; credentials are per thread, so the
	// goroutine locks its thread and never unlocks it (the thread then
	// exits with it).
	o := Options{Chown: true, UID: os.Geteuid() + 1, GID: os.Getegid()}
	write := func() error { return Write(p, []byte("new"), o) }
	if os.Geteuid() == 0 {
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		o = Options{Chown: true, UID: 0, GID: 0}
		write = func() error {
			done := make(chan error)
			go func() {
				runtime.LockOSThread()
				unix.Setfsgid(65534)
				unix.Setfsuid(65534)
				done <- Write(p, []byte("new"), o)
			}()
			return <-done
		}
	}
	if err := write(); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Write with %+v = %v; want a permission error", o, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("after a failed Write the file holds %q", b)
	}
	if e := entries(t, dir); len(e) != 1 || e[0] != "f" {
		t.Errorf("directory holds %v; want only f", e)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Error(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SyncDir of a missing directory = %v; want ErrNotExist", err)
	}
}

// Label is set on the new file; without SELinux LabelOf is "".
func TestLabel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l := LabelOf(p)
	if !selinux.GetEnabled() {
		if l != "" {
			t.Errorf("LabelOf without SELinux = %q", l)
		}
		return
	}
	if err := Write(p, []byte("x"), Options{Label: l}); err != nil {
		t.Fatal(err)
	}
	if got := LabelOf(p); got != l {
		t.Errorf("label after Write = %q; want %q", got, l)
	}
}
