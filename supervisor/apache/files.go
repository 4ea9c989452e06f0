package apache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/opencontainers/selinux/go-selinux"
)

// current is the config file as found before a change, to restore it.
type current struct {
	data   []byte
	exists bool
	mode   fs.FileMode
	uid    int
	gid    int
	label  string // SELinux label, "" without SELinux
}

// readCurrent reads path, refusing anything but a regular file.
func readCurrent(path string) (current, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return current{mode: 0o644, uid: -1, gid: -1}, nil
	}
	if err != nil {
		return current{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return current{}, fmt.Errorf("%w: %s is a %s; sockvisor replaces only its own regular file, so remove it or set apache.config_file to another path", ErrNotRegular, path, kind(st.Mode()))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return current{}, fmt.Errorf("reading %s: %w", path, err)
	}
	// Never overwrite somebody else's config (a typo in apache.config_file
	// naming ssl.conf, say): ours always starts with the header.
	if len(bytes.TrimSpace(data)) > 0 && !bytes.HasPrefix(data, []byte(header)) {
		return current{}, fmt.Errorf("%w: %s does not start with %q, so sockvisor did not write it and will not replace it; move it away or set apache.config_file to another path", ErrNotOurs, path, header)
	}
	c := current{data: data, exists: true, mode: st.Mode().Perm(), uid: -1, gid: -1}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		c.uid, c.gid = int(sys.Uid), int(sys.Gid)
	}
	if selinux.GetEnabled() {
		c.label, _ = selinux.LfileLabel(path)
	}
	return c, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// writeAtomic replaces path with data so that a reader, or a power cut, sees
// either the old or the new content in full. The file keeps like's mode,
// owner and SELinux label: a renamed file would otherwise keep the temp
// file's label rather than the one the policy gives its final path.
func writeAtomic(path string, data []byte, like current) (err error) {
	dir := filepath.Dir(path)
	// A dot name ending in neither .conf nor .load is never Included.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("writing the Apache config into %s: %w", dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err = f.Chmod(like.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if like.uid >= 0 {
		if err = f.Chown(like.uid, like.gid); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if like.label != "" {
		if err = selinux.LsetFileLabel(tmp, like.label); err != nil {
			return fmt.Errorf("labelling %s %s: %w", tmp, like.label, err)
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or unlink in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// restore puts back the file found before a change, or removes ours.
func restore(path string, old current) error {
	if old.exists {
		return writeAtomic(path, old.data, old)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// linkState says whether link enables file: ok, missing, or taken by
// something else.
func linkState(link, file string) (ok bool, err error) {
	st, err := os.Lstat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s: %w", link, err)
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(link)
		if err != nil {
			return false, fmt.Errorf("reading link %s: %w", link, err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(link), target)
		}
		if filepath.Clean(target) == filepath.Clean(file) {
			return true, nil
		}
	}
	return false, fmt.Errorf("%w: %s exists but is not a link to %s; remove it (a2disconf) so sockvisor can enable its config", ErrLinkConflict, link, file)
}

// makeLink enables file the way a2enconf does: a relative symlink.
func makeLink(link, file string) error {
	target, err := filepath.Rel(filepath.Dir(link), file)
	if err != nil {
		target = file
	}
	if err := os.Symlink(target, link); err != nil {
		return fmt.Errorf("enabling %s: %w", file, err)
	}
	return syncDir(filepath.Dir(link))
}

func removeLink(link string) error {
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", link, err)
	}
	return syncDir(filepath.Dir(link))
}
