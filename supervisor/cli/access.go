package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/sockvisor/sockvisor/supervisor/config"
)

// accessNotes are the check warnings about files a backend needs at run
// time but config validation does not require to exist yet: a command its
// user cannot execute (the start would fail with exit status 127), and a
// document_root that is missing (Apache would answer 404).
func accessNotes(b *config.Backend) []string {
	var notes []string
	if len(b.Command) > 0 {
		if path, err := exec.LookPath(b.Command[0]); err == nil {
			if why := notExecutableBy(path, b.UID, b.GID, b.Groups); why != "" {
				notes = append(notes, fmt.Sprintf("warning: backend %q runs as %s (uid %d), who cannot execute %s: %s; move the program somewhere that user can reach, or change user", b.Name, b.User, b.UID, path, why))
			}
		}
	}
	if b.Docroot() {
		if fi, err := os.Stat(b.DocumentRoot); err != nil || !fi.IsDir() {
			notes = append(notes, fmt.Sprintf("warning: backend %q's document_root %s is not an existing directory, so Apache will answer 404 for %s until it is; create it or fix the path", b.Name, b.DocumentRoot, b.Mount))
		}
	}
	return notes
}

// notExecutableBy says why uid (with gid and groups) cannot execute path,
// or "" if it can: every directory above it needs search permission and
// the file itself execute permission, by the owner, group or other bits
// that apply to that user; root is not checked. ACLs are not read: where
// one grants access this warns wrongly, but plain mode bits never pass
// unnoticed.
func notExecutableBy(path string, uid, gid int, groups []uint32) string {
	if uid == 0 {
		return ""
	}
	allowed := func(st *syscall.Stat_t) bool {
		mode := st.Mode
		switch {
		case int(st.Uid) == uid:
			return mode&0o100 != 0
		case int(st.Gid) == gid || slices.Contains(groups, st.Gid):
			return mode&0o010 != 0
		}
		return mode&0o001 != 0
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		var st syscall.Stat_t
		if err := syscall.Stat(dir, &st); err == nil && !allowed(&st) {
			return fmt.Sprintf("directory %s (mode %04o, owner %d:%d) is not searchable by that user", dir, st.Mode&0o7777, st.Uid, st.Gid)
		}
		if dir == "/" {
			break
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err == nil && !allowed(&st) {
		return fmt.Sprintf("its mode %04o (owner %d:%d) gives that user no execute permission", st.Mode&0o7777, st.Uid, st.Gid)
	}
	return ""
}
