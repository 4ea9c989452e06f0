// Package filekind names the type of a file for messages: "a directory",
// "a named pipe (FIFO)". Invariant: every mode maps to exactly one name, the
// same for an fs.FileMode and for the raw st_mode of the same file, always
// with its article, so a message reads "%s is %s".
package filekind

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// Of names the type of the file m describes.
func Of(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symlink"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeNamedPipe:
		return "a named pipe (FIFO)"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "a character device"
	case fs.ModeDevice:
		return "a block device"
	}
	return "a special file"
}

// OfStat is Of for a raw st_mode, as unix.Stat_t holds it.
func OfStat(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFIFO:
		return "a named pipe (FIFO)"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return "a special file"
}
