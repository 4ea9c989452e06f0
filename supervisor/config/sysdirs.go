package config

import (
	"path/filepath"
	"strings"
)

// systemDirs are directories that belong to the system: sockvisor would
// chgrp and chmod socket_dir and sweep it, so none of them may be one.
// Subdirectories of the others (/run/sockvisor, /var/lib/app/run) are fine.
var systemDirs = map[string]bool{
	"/": true, "/run": true, "/var": true, "/var/run": true, "/var/lib": true,
	"/var/tmp": true, "/var/cache": true, "/var/log": true, "/var/spool": true,
	"/var/mail": true, "/var/opt": true, "/var/local": true, "/var/www": true,
	"/var/backups": true, "/tmp": true, "/home": true, "/root": true,
	"/opt": true, "/srv": true, "/mnt": true, "/media": true,
	"/run/lock": true, "/run/user": true, "/run/shm": true,
}

// systemTrees are directories whose whole subtree belongs to the system.
var systemTrees = []string{
	"/etc", "/usr", "/boot", "/dev", "/proc", "/sys", "/bin", "/sbin",
	"/lib", "/lib32", "/lib64", "/libx32", "/run/systemd", "/run/udev",
}

// SystemDir reports whether dir is a well-known system directory (or inside
// a system tree such as /etc or /usr) that sockvisor must never own.
func SystemDir(dir string) bool {
	dir = filepath.Clean(dir)
	if systemDirs[dir] {
		return true
	}
	for _, t := range systemTrees {
		if dir == t || strings.HasPrefix(dir, t+"/") {
			return true
		}
	}
	return false
}

// notSystemDir refuses a socket_dir that is a system directory.
func (v *validator) notSystemDir(dir string) {
	if SystemDir(dir) {
		v.at("socket_dir", "socket_dir %q is a system directory, whose owner and mode sockvisor would change and which it would sweep; use a directory of its own such as \"/run/sockvisor\"", dir)
	}
}
