package sockets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// Dir is socket_dir held open. Every operation on it (lock, sweep, bind,
// chown, chmod, link, unlink) works relative to its descriptor with
// AT_SYMLINK_NOFOLLOW, never through the path, so a rename or a
// RENAME_EXCHANGE of socket_dir with a symlink after it was opened cannot
// send anything to another directory. Before this, 2 of 120 starts racing
// such a swap created the lock file or a socket in the decoy.
type Dir struct {
	path     string
	fd       int // O_RDONLY|O_DIRECTORY, opened without following symlinks
	dev, ino uint64

	mu     sync.Mutex // guards closed against Close racing a use
	closed bool
}

func newDir(fd int, path string) (*Dir, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("sockets: fstat %s: %w", path, err)
	}
	return &Dir{path: path, fd: fd, dev: st.Dev, ino: st.Ino}, nil
}

// Path returns socket_dir's path, for messages.
func (d *Dir) Path() string { return d.path }

// Close releases the directory. It is safe to call twice.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	return unix.Close(d.fd)
}

// join names an entry of the directory in messages.
func (d *Dir) join(name string) string { return filepath.Join(d.path, name) }

// addr is an address that reaches name inside the held directory for
// connect(2): through /proc/self/fd when that fits in sun_path, else the
// path (only for probes, which change nothing).
func (d *Dir) addr(name string) string {
	if p := fdPath(d.fd) + "/" + name; len(p) <= config.MaxSocketPath {
		return p
	}
	return d.join(name)
}

// prepared remembers which directory PrepareDir prepared at each path, so
// that the path-based functions can refuse another directory swapped in.
var prepared sync.Map // path -> [2]uint64{dev, ino}

func remember(d *Dir) { prepared.Store(d.path, [2]uint64{d.dev, d.ino}) }

// openHeld opens the directory at path, which must be clean and absolute,
// one component at a time without following symlinks, and, if PrepareDir
// prepared that path, checks it is still the same directory.
func openHeld(path string) (*Dir, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return nil, fail(ErrUnsafe, nil, path, "socket_dir %q must be a clean absolute path", path)
	}
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sockets: open /: %w", err)
	}
	for _, name := range strings.Split(path[1:], "/") {
		if name == "" {
			continue
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			var kind error
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				kind = ErrUnsafe
			}
			return nil, fail(kind, err, path, "cannot open socket_dir %s (%v); it must be an existing directory with no symlink in its path", path, err)
		}
		fd = nfd
	}
	d, err := newDir(fd, path)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if v, ok := prepared.Load(path); ok {
		if want := v.([2]uint64); want != [2]uint64{d.dev, d.ino} {
			d.Close()
			return nil, fail(ErrUnsafe, nil, path, "socket_dir %s is no longer the directory sockvisor prepared (inode %d, was %d); someone replaced it: check who can write its parent", path, d.ino, want[1])
		}
	}
	return d, nil
}

// names lists the directory's entries through a fresh descriptor, so the
// held one's offset never matters.
func (d *Dir) names() ([]string, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// ErrForeign means socket_dir holds entries sockvisor did not create, so it
// refuses to change the directory's owner, group or mode.
var ErrForeign = errors.New("sockets: socket_dir holds foreign entries")

// replacing returns NAME for ".NAME.new" and ".NAME.keep.new", the names
// Repair binds a replacement under (replace.go), which a crash mid-repair
// can leave behind; "" otherwise.
func replacing(name string) string {
	if !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".new") {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSuffix(name[1:], ".new"), ".keep")
}

// strayEntries lists, as "name (kind)", the entries of the directory fd
// that are not sockvisor's own: its lock file, sockets (configured names or
// *.sock), their keep links and replacements. At most 5 are named.
func strayEntries(fd int, cfg *config.Config) ([]string, error) {
	d := &Dir{fd: fd, path: cfg.SocketDir}
	names, err := d.names()
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, s := range cfg.AllSockets() {
		known[s.Name] = true
	}
	ours := func(name string, mode uint32) bool {
		switch mode & unix.S_IFMT {
		case unix.S_IFREG:
			return name == LockName
		case unix.S_IFSOCK:
			for _, n := range []string{name, keepTarget(name), replacing(name)} {
				if n != "" && (known[n] || strings.HasSuffix(n, ".sock")) {
					return true
				}
			}
		}
		return false
	}
	var strays []string
	more := 0
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, err
		}
		if ours(name, st.Mode) {
			continue
		}
		if len(strays) == 5 {
			more++
			continue
		}
		strays = append(strays, fmt.Sprintf("%s (%s)", name, kindOf(st.Mode)))
	}
	if more > 0 {
		strays = append(strays, fmt.Sprintf("and %d more", more))
	}
	return strays, nil
}

// The helpers below keep the path-based forms that code elsewhere in this
// package (on other branches) may still call; new code uses the Dir forms.

// bindSocket binds fd to path under bindUmask if it can; see Dir.bind,
// which also checks where the socket landed.
func bindSocket(fd int, path string) (private bool, err error) {
	err = bindPrivate(fd, path)
	if errors.Is(err, errNoPrivateUmask) {
		return false, unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	}
	return true, err
}

// fixFile is fixFileAt for the socket at path, through its directory.
func fixFile(path string, want *unix.Stat_t, uid, gid int, mode uint32, seType string) error {
	return fixFileAt(unix.AT_FDCWD, path, path, want, uid, gid, mode, seType)
}

// unlinkSame unlinks the socket at p if it is still the file want describes.
func unlinkSame(p string, want *unix.Stat_t) (bool, error) {
	return unlinkSameAt(unix.AT_FDCWD, p, want)
}
