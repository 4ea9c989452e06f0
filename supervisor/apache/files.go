package apache

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sockvisor/sockvisor/internal/atomicfile"
	"github.com/sockvisor/sockvisor/internal/filekind"
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
		return current{}, fmt.Errorf("%w: %s is %s; sockvisor replaces only its own regular file, so remove it or set apache.config_file to another path", ErrNotRegular, path, filekind.Of(st.Mode()))
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
	c.label = atomicfile.LabelOf(path)
	return c, nil
}

// writeAtomic replaces path with data (see atomicfile). The file keeps
// like's mode, owner and SELinux label: a renamed file would otherwise keep
// the temp file's label rather than the one the policy gives its final path.
func writeAtomic(path string, data []byte, like current) error {
	return atomicfile.Write(path, data, atomicfile.Options{
		Mode: like.mode, Chown: like.uid >= 0, UID: like.uid, GID: like.gid, Label: like.label,
	})
}

// restore puts back the file found before a change, or removes ours.
func restore(path string, old current) error {
	if old.exists {
		return writeAtomic(path, old.data, old)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
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
	return atomicfile.SyncDir(filepath.Dir(link))
}

func removeLink(link string) error {
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", link, err)
	}
	return atomicfile.SyncDir(filepath.Dir(link))
}
