// Package atomicfile replaces a file's content in one step.
//
// Invariant: after Write, whatever happens (an error, a crash, a power cut),
// the target holds either its old content or the new content in full,
// never a mix nor an empty file. The new content goes to a temporary file
// in the same directory, which gets its mode, owner and SELinux label and
// is fsynced and closed before it is renamed over the target; the directory
// is then fsynced so the rename itself is durable. Every error is returned,
// the directory fsync's included, and a failed Write leaves no temporary
// file behind. A target that is not a regular file (a symlink, a socket, a
// directory) is never replaced.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/selinux/go-selinux"

	"github.com/sockvisor/sockvisor/internal/filekind"
)

// ErrNotRegular means the target exists and is not a regular file.
var ErrNotRegular = errors.New("atomicfile: target is not a regular file")

// Options are the new file's attributes. The zero value gives mode 0600,
// the writing process's owner and no label.
type Options struct {
	// Mode holds the permission bits; 0 means 0600.
	Mode fs.FileMode
	// Chown sets the owner to UID:GID; without it the file belongs to the
	// writing process.
	Chown    bool
	UID, GID int
	// Label is the SELinux label set before the rename (LabelOf reads an
	// existing file's); "" sets none, so the file keeps the temporary
	// file's, which is the directory's default rather than the one the
	// policy gives the final path.
	Label string
}

// Write replaces path with data as the package doc says.
func Write(path string, data []byte, o Options) (err error) {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is %s", ErrNotRegular, path, filekind.Of(fi.Mode()))
	}
	dir := filepath.Dir(path)
	// A dot name ending in neither .conf nor .load: Apache's Include
	// globs and other config scanners pass over it.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("writing %s: creating a temporary file: %w", path, err)
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
	// chown before chmod: a chown may clear set-id bits.
	if o.Chown {
		if err = f.Chown(o.UID, o.GID); err != nil {
			return fmt.Errorf("chown %s: %w", tmp, err)
		}
	}
	mode := o.Mode
	if mode == 0 {
		mode = 0o600
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if o.Label != "" {
		if err = selinux.LsetFileLabel(tmp, o.Label); err != nil {
			return fmt.Errorf("labelling %s %s: %w", tmp, o.Label, err)
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	return SyncDir(dir)
}

// SyncDir makes a rename, link or unlink in dir durable.
func SyncDir(dir string) error {
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

// LabelOf returns path's SELinux label, to keep it across a Write; "" when
// SELinux is disabled or the label cannot be read.
func LabelOf(path string) string {
	if !selinux.GetEnabled() {
		return ""
	}
	l, _ := selinux.LfileLabel(path)
	return l
}
