package sockets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/testutil"
)

const (
	uidDaemon = 1  // socket_owner in testConfig
	gidWWW    = 33 // www-data, socket_group in testConfig
	uidNobody = 65534
	gidNobody = 65534
)

func wantDir(t *testing.T, path string, uid, gid, mode uint32) {
	t.Helper()
	st := lstat(t, path)
	if st.Mode&0o170000 != 0o040000 {
		t.Fatalf("%s is not a directory (mode %o)", path, st.Mode)
	}
	if st.Uid != uid || st.Gid != gid || st.Mode&0o7777 != mode {
		t.Errorf("%s is %d:%d %04o; want %d:%d %04o", path, st.Uid, st.Gid, st.Mode&0o7777, uid, gid, mode)
	}
}

func TestPrepareDirCreates(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	dir := filepath.Join(base, "a", "b", "s")
	cfg := testConfig(t, dir, 1, "")
	log, buf := testLog()

	if err := PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}
	wantDir(t, filepath.Join(base, "a"), 0, 0, 0o755)
	wantDir(t, filepath.Join(base, "a", "b"), 0, 0, 0o755)
	wantDir(t, dir, uidDaemon, gidWWW, 0o2750) // setgid: sockets inherit www-data

	// A second run finds nothing to fix.
	before := buf.String()
	if err := PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}
	if after := buf.String()[len(before):]; strings.Contains(after, "fixed") || strings.Contains(after, "created") {
		t.Errorf("second PrepareDir changed something:\n%s", after)
	}
}

func TestPrepareDirFixesOwnerAndMode(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	dir := filepath.Join(base, "s")
	mkdir(t, dir, 0o755, 0, 0)
	// Only sockvisor's own entries: its lock file, a stale socket of the
	// config and its keep link, and a socket of an earlier config.
	write(t, filepath.Join(dir, LockName), "")
	staleSocket(t, filepath.Join(dir, "app.sock"))
	if err := os.Link(filepath.Join(dir, "app.sock"), filepath.Join(dir, KeepName("app.sock"))); err != nil {
		t.Fatal(err)
	}
	staleSocket(t, filepath.Join(dir, "old.sock"))
	cfg := testConfig(t, dir, 1, "")
	log, buf := testLog()

	if err := PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}
	wantDir(t, dir, uidDaemon, gidWWW, 0o2750)
	out := buf.String()
	for _, want := range []string{"fixed socket_dir owner and mode", "0755 -> 2750", "0 (root) -> 1 (daemon)", "-> 33 (www-data)"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, name := range []string{LockName, "app.sock", KeepName("app.sock"), "old.sock"} {
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("PrepareDir touched the directory's contents: %s is gone", name)
		}
	}

	// A socket_dir owned by socket_owner with a wrong group is fixed too.
	if err := os.Chown(dir, uidDaemon, 0); err != nil {
		t.Fatal(err)
	}
	if err := PrepareDir(cfg, log); err != nil {
		t.Fatal(err)
	}
	wantDir(t, dir, uidDaemon, gidWWW, 0o2750)
}

func TestPrepareDirRefuses(t *testing.T) {
	testutil.NeedRoot(t)
	cases := []struct {
		name  string
		setup func(t *testing.T, base string) (socketDir string)
		kind  error
		// check verifies nothing was touched; msg is a substring of the error.
		check func(t *testing.T, base string)
		msg   string
	}{
		{
			name: "symlink",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "real"), 0o755, 0, 0)
				os.Symlink("real", filepath.Join(base, "s"))
				return filepath.Join(base, "s")
			},
			kind: ErrUnsafe,
			msg:  "is a symlink",
			check: func(t *testing.T, base string) {
				wantDir(t, filepath.Join(base, "real"), 0, 0, 0o755)
			},
		},
		{
			name: "regular file",
			setup: func(t *testing.T, base string) string {
				write(t, filepath.Join(base, "s"), "data")
				return filepath.Join(base, "s")
			},
			kind: ErrNotDir,
			msg:  "is a regular file, not a directory",
			check: func(t *testing.T, base string) {
				if b, _ := os.ReadFile(filepath.Join(base, "s")); string(b) != "data" {
					t.Error("the file was changed")
				}
			},
		},
		{
			name: "owned by an unprivileged user",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "s"), 0o755, uidNobody, gidNobody)
				return filepath.Join(base, "s")
			},
			kind: ErrUnsafe,
			msg:  "is owned by uid 65534 (nobody)",
			check: func(t *testing.T, base string) {
				wantDir(t, filepath.Join(base, "s"), uidNobody, gidNobody, 0o755)
			},
		},
		{
			name: "world-writable",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "s"), 0o777, 0, 0)
				return filepath.Join(base, "s")
			},
			kind: ErrUnsafe,
			msg:  "is writable by group 0 (root) and everyone",
			check: func(t *testing.T, base string) {
				wantDir(t, filepath.Join(base, "s"), 0, 0, 0o777)
			},
		},
		{
			name: "writable by another group",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "s"), 0o770, 0, gidNobody)
				return filepath.Join(base, "s")
			},
			kind: ErrUnsafe,
			msg:  "writable by group 65534",
			check: func(t *testing.T, base string) {
				wantDir(t, filepath.Join(base, "s"), 0, gidNobody, 0o770)
			},
		},
		{
			name: "symlink parent",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "real"), 0o755, 0, 0)
				os.Symlink("real", filepath.Join(base, "link"))
				return filepath.Join(base, "link", "s")
			},
			kind: ErrUnsafe,
			msg:  "a parent of socket_dir",
			check: func(t *testing.T, base string) {
				if exists(filepath.Join(base, "real", "s")) {
					t.Error("socket_dir was created through the symlink")
				}
			},
		},
		{
			name: "parent writable without sticky bit",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "p"), 0o777, 0, 0)
				return filepath.Join(base, "p", "s")
			},
			kind: ErrUnsafe,
			msg:  "without the sticky bit",
			check: func(t *testing.T, base string) {
				if exists(filepath.Join(base, "p", "s")) {
					t.Error("socket_dir was created in an unsafe parent")
				}
			},
		},
		{
			name: "parent owned by an unprivileged user",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "p"), 0o755, uidNobody, gidNobody)
				return filepath.Join(base, "p", "s")
			},
			kind: ErrUnsafe,
			msg:  "who could replace socket_dir",
			check: func(t *testing.T, base string) {
				if exists(filepath.Join(base, "p", "s")) {
					t.Error("socket_dir was created in an unsafe parent")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := testutil.ShortDir(t)
			dir := tc.setup(t, base)
			cfg := testConfig(t, dir, 1, "")
			log, _ := testLog()
			err := PrepareDir(cfg, log)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("PrepareDir = %v; want %v", err, tc.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
			oneSentence(t, err, e.Path)
			tc.check(t, base)
		})
	}
}

func TestPrepareDirStickyParentIsFine(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0, 0)
	dir := filepath.Join(base, "tmp", "s")
	log, _ := testLog()
	if err := PrepareDir(testConfig(t, dir, 1, ""), log); err != nil {
		t.Fatal(err)
	}
	wantDir(t, dir, uidDaemon, gidWWW, 0o2750)
}

func TestPrepareDirSymlinkHint(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	mkdir(t, filepath.Join(base, "real"), 0o755, 0, 0)
	if err := os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "run")); err != nil {
		t.Fatal(err)
	}
	log, _ := testLog()
	err := PrepareDir(testConfig(t, filepath.Join(base, "run", "s"), 1, ""), log)
	if want := "real path " + filepath.Join(base, "real", "s"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("PrepareDir = %v; want a hint naming %s", err, want)
	}
}

// Issue [K] item 1: sockvisor re-owned any existing directory, so
// socket_dir = "/etc" would have become root:www-data 2750. It only
// re-owns a directory holding nothing but its own entries, and names the
// strays otherwise.
func TestPrepareDirRefusesForeignEntries(t *testing.T) {
	testutil.NeedRoot(t)
	base := testutil.ShortDir(t)
	dir := filepath.Join(base, "s")
	mkdir(t, dir, 0o755, 0, 0)
	write(t, filepath.Join(dir, "passwd"), "root:x:0:0")
	mkdir(t, filepath.Join(dir, "conf.d"), 0o755, 0, 0)
	os.Symlink("/etc/hostname", filepath.Join(dir, "hostname"))
	staleSocket(t, filepath.Join(dir, "app.sock")) // ours: not named
	cfg := testConfig(t, dir, 1, "")
	log, _ := testLog()
	err := PrepareDir(cfg, log)
	if !errors.Is(err, ErrForeign) {
		t.Fatalf("PrepareDir = %v; want ErrForeign", err)
	}
	for _, want := range []string{"conf.d (directory)", "hostname (symlink)", "passwd (file)", "will not change its owner, group or mode", "0755"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "app.sock") {
		t.Errorf("error %q names sockvisor's own socket", err)
	}
	oneSentence(t, err, dir)
	wantDir(t, dir, 0, 0, 0o755)

	// Already right: nothing to re-own, so the strays are left alone.
	if err := unix.Chown(dir, uidDaemon, gidWWW); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(dir, 0o2750); err != nil {
		t.Fatal(err)
	}
	if err := PrepareDir(cfg, log); err != nil {
		t.Errorf("PrepareDir on a correct directory with strays = %v", err)
	}
}
