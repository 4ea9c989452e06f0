package sockets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/sockvisor/sockvisor/internal/filekind"
	"github.com/sockvisor/sockvisor/internal/osuser"
	"github.com/sockvisor/sockvisor/supervisor/config"
)

// PrepareDir creates socket_dir, or checks and repairs it, following the
// safety rule in the package doc. It is OpenDir without keeping the
// directory open; the functions that take a path (LockDir, Sweep, Create)
// then open it again without following symlinks and check it is the same
// directory PrepareDir prepared.
func PrepareDir(cfg *config.Config, log hclog.Logger) error {
	d, err := OpenDir(cfg, log)
	if err != nil {
		return err
	}
	return d.Close()
}

// OpenDir creates socket_dir, or checks and repairs it, following the
// safety rule in the package doc, and returns it held open: everything done
// through the Dir works relative to this descriptor, so renaming or
// swapping the path afterwards cannot redirect it. It walks the path one
// component at a time through directory descriptors, so a component swapped
// for a symlink midway is caught rather than followed.
func OpenDir(cfg *config.Config, log hclog.Logger) (_ *Dir, err error) {
	dir := cfg.SocketDir
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return nil, fail(ErrUnsafe, nil, dir, "socket_dir %q must be a clean absolute path other than /; fix socket_dir in %s", dir, cfg.File)
	}
	if config.SystemDir(dir) {
		return nil, fail(ErrUnsafe, nil, dir, "socket_dir %s is a system directory, whose owner and mode sockvisor would change and which it would sweep; set socket_dir in %s to a directory of its own such as /run/sockvisor", dir, cfg.File)
	}
	trusted := func(uid uint32) bool {
		return uid == 0 || int(uid) == cfg.SocketUID || int(uid) == os.Geteuid()
	}

	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sockets: open /: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()

	parts := strings.Split(dir[1:], "/")
	cur := "/"
	for i, name := range parts {
		last := i == len(parts)-1
		p := filepath.Join(cur, name)
		created := false
		var st unix.Stat_t
		err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) {
			// 0700 until owner and mode are set below: no window for others.
			switch err := unix.Mkdirat(fd, name, 0o700); {
			case err == nil:
				created = true
			case !errors.Is(err, unix.EEXIST): // EEXIST: someone was faster; check theirs
				return nil, fail(ErrNotDir, err, p, "cannot create %s for socket_dir %s: %v; create it by hand or choose another socket_dir", p, dir, err)
			}
			err = unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return nil, fail(ErrNotDir, err, p, "cannot inspect %s on the way to socket_dir %s: %v", p, dir, err)
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return nil, symlinkError(p, dir, parts[i+1:])
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			what := "socket_dir " + p
			if !last {
				what = p + ", a parent of socket_dir " + dir + ","
			}
			return nil, fail(ErrNotDir, nil, p, "%s exists but is %s, not a directory; move it away or choose another socket_dir", what, filekind.OfStat(st.Mode))
		}
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fail(ErrNotDir, err, p, "cannot open %s on the way to socket_dir %s: %v", p, dir, err)
		}
		unix.Close(fd)
		fd = nfd
		var fst unix.Stat_t
		if err := unix.Fstat(fd, &fst); err != nil {
			return nil, fmt.Errorf("sockets: fstat %s: %w", p, err)
		}
		if fst.Dev != st.Dev || fst.Ino != st.Ino {
			return nil, fail(ErrUnsafe, nil, p, "%s changed while sockvisor was checking it; someone is tampering with the path to socket_dir %s", p, dir)
		}

		if !last {
			if created {
				uid, gid := uint32(0), uint32(0)
				if os.Geteuid() != 0 {
					uid, gid = fst.Uid, fst.Gid // cannot give it away; it stays ours
				}
				if err := setOwnerMode(fd, &fst, uid, gid, 0o755); err != nil {
					return nil, fmt.Errorf("sockets: set up parent %s: %w", p, err)
				}
				log.Info("created parent of socket_dir", "path", p, "mode", "0755")
				cur = p
				continue
			}
			if !trusted(fst.Uid) {
				return nil, fail(ErrUnsafe, nil, p, "%s, a parent of socket_dir %s, is owned by uid %s, who could replace socket_dir; make it root-owned or choose another socket_dir", p, dir, osuser.User(fst.Uid))
			}
			if fst.Mode&0o022 != 0 && fst.Mode&unix.S_ISVTX == 0 {
				return nil, fail(ErrUnsafe, nil, p, "%s, a parent of socket_dir %s, is writable by group or others without the sticky bit (mode %04o); run chmod go-w %s or choose another socket_dir", p, dir, fst.Mode&0o7777, p)
			}
			cur = p
			continue
		}

		want := uint32(cfg.SocketDirMode)
		uid, gid := uint32(cfg.SocketUID), uint32(cfg.SocketGID)
		if created {
			if err := setOwnerMode(fd, &fst, uid, gid, want); err != nil {
				return nil, fmt.Errorf("sockets: set up socket_dir %s: %w", dir, err)
			}
			log.Info("created socket_dir", "path", dir, "owner", osuser.User(uid), "group", osuser.Group(gid), "mode", fmt.Sprintf("%04o", want))
		} else {
			if !trusted(fst.Uid) {
				return nil, fail(ErrUnsafe, nil, dir, "socket_dir %s is owned by uid %s, not root or socket_owner %s, so someone else may have put links in it; remove it (rm -r %s) and let sockvisor create it", dir, osuser.User(fst.Uid), cfg.SocketOwner, dir)
			}
			if who := extraWriters(fst.Mode, fst.Gid, want, gid); who != "" {
				return nil, fail(ErrUnsafe, nil, dir, "socket_dir %s is writable by %s (mode %04o), so someone else may have put links in it; check its contents, then remove it (rm -r %s) and let sockvisor create it", dir, who, fst.Mode&0o7777, dir)
			}
			have := fst.Mode & 0o7777
			if fst.Uid != uid || fst.Gid != gid || have != want {
				// Re-own only a directory that holds nothing but
				// sockvisor's own entries: it may be someone else's.
				if strays, err := strayEntries(fd, cfg); err != nil {
					return nil, fmt.Errorf("sockets: list socket_dir %s: %w", dir, err)
				} else if len(strays) > 0 {
					return nil, fail(ErrForeign, nil, dir, "socket_dir %s holds entries sockvisor did not create (%s), so it will not change its owner, group or mode (%s %s:%s, want %04o %s:%s); move them away, or set socket_dir in %s to a directory of its own such as /run/sockvisor",
						dir, strings.Join(strays, ", "), fmt.Sprintf("%04o", have), osuser.User(fst.Uid), osuser.Group(fst.Gid), want, osuser.User(uid), osuser.Group(gid), cfg.File)
				}
				if err := setOwnerMode(fd, &fst, uid, gid, want); err != nil {
					return nil, fmt.Errorf("sockets: fix socket_dir %s: %w", dir, err)
				}
				kv := []any{"path", dir}
				if fst.Uid != uid {
					kv = append(kv, "owner", osuser.User(fst.Uid)+" -> "+osuser.User(uid))
				}
				if fst.Gid != gid {
					kv = append(kv, "group", osuser.Group(fst.Gid)+" -> "+osuser.Group(gid))
				}
				if have != want {
					kv = append(kv, "mode", fmt.Sprintf("%04o -> %04o", have, want))
				}
				log.Info("fixed socket_dir owner and mode", kv...)
			}
		}
		if err := applyLabel(fdPath(fd), cfg.SELinuxType); err != nil {
			return nil, fail(nil, err, dir, "cannot label socket_dir %s with SELinux type %s: %v; check selinux_type in %s", dir, cfg.SELinuxType, err, cfg.File)
		}
		if !selinuxEnabled() {
			log.Debug("SELinux is not enabled; not labelling socket_dir", "path", dir)
		}
	}
	d, err := newDir(fd, dir)
	if err != nil {
		return nil, err
	}
	remember(d)
	return d, nil
}

// extraWriters names who, besides the owner, can write a directory with the
// given mode and group when socket_dir_mode asks for want and wantGID; "" if
// nobody unexpected can.
func extraWriters(mode, gid, want, wantGID uint32) string {
	var who []string
	if mode&0o020 != 0 && (want&0o020 == 0 || gid != wantGID) {
		who = append(who, "group "+osuser.Group(gid))
	}
	if mode&0o002 != 0 && want&0o002 == 0 {
		who = append(who, "everyone")
	}
	return strings.Join(who, " and ")
}

// setOwnerMode chowns, then chmods, since chown may clear the setgid bit.
// The mode is set first: chmod by a process that is not in the file's group
// and lacks CAP_FSETID (systemd's bounding set drops it) clears setgid,
// while chown keeps setgid on a directory.
func setOwnerMode(fd int, st *unix.Stat_t, uid, gid, mode uint32) error {
	if err := unix.Fchmod(fd, mode); err != nil {
		return err
	}
	if st.Uid != uid || st.Gid != gid {
		return unix.Fchown(fd, int(uid), int(gid))
	}
	return nil
}

// symlinkError explains a symlink at p and suggests the real path.
func symlinkError(p, dir string, rest []string) error {
	hint := ""
	if real, err := filepath.EvalSymlinks(p); err == nil {
		hint = "; set socket_dir to the real path " + filepath.Join(append([]string{real}, rest...)...)
	} else {
		hint = "; set socket_dir to a real directory"
	}
	if p == dir {
		return fail(ErrUnsafe, nil, dir, "socket_dir %s is a symlink, which sockvisor refuses to follow%s", dir, hint)
	}
	return fail(ErrUnsafe, nil, p, "%s, a parent of socket_dir %s, is a symlink, which sockvisor refuses to follow%s", p, dir, hint)
}

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }
