// Package sockets owns socket_dir and the listening sockets in it.
//
// Invariants:
//
//   - A socket is bound at its final path, then chowned, chmodded and labelled,
//     and only then listen(2)s, so no client ever connects to it with the wrong
//     permissions. It is kept as a raw descriptor (*os.File), never a
//     net.Listener, so closing it inside the process never unlinks the file,
//     and sockvisor never accepts on it.
//   - sockvisor unlinks only sockets: a file goes only if lstat(2) says it is a
//     socket, a connect probe is refused (ECONNREFUSED), no process has a
//     socket bound to it (sock_diag), and lstat still shows the same inode
//     right before unlink(2); or if it is the inode of a socket sockvisor
//     created itself (Listener.Remove). Symlinks, regular files and
//     directories are reported, never touched.
//   - Each socket has a hidden hard link ".<name>.keep" in socket_dir (same
//     inode), so a path a backend deletes can be restored to the very same
//     listening socket.
//   - A listening socket a backend shut down (shutdown(2) cannot be undone)
//     is replaced by a new one bound at ".<name>.new", made ready there and
//     renamed over the path and the keep link (Repair), so the path never
//     goes missing; the dead socket's file is the only one replaced.
//
// socket_dir safety rule (PrepareDir): every component of the path is looked
// up without following symlinks, and a symlink anywhere is refused. Each
// existing parent must be owned by root, socket_owner or the user running
// sockvisor, and must not be writable by group or others unless it has the
// sticky bit (like /tmp); missing parents are created root-owned 0755.
// socket_dir itself is created with socket_owner, socket_group and
// socket_dir_mode. An existing socket_dir owned by anyone else, or writable by
// others than its owner (beyond what socket_dir_mode grants socket_group), is
// refused rather than repaired: whoever could write it may have left links in
// it. A wrong owner, group or mode is fixed and logged only if socket_dir
// holds nothing but sockvisor's own entries (its lock file, sockets and
// their keep links): a directory holding anything else may be someone
// else's, and is refused with the stray entries named. Well-known system
// directories (config.SystemDir: /etc, /var, /run, /usr...) are refused
// outright.
//
// Once prepared, socket_dir is only used through a descriptor (Dir): the
// lock file, sweeps, sockets, their owner, mode and keep links are all made
// relative to it (openat, fstatat, fchownat, linkat, unlinkat, never
// following symlinks), so swapping the path afterwards cannot redirect
// them. The path-based functions open the directory again one component at
// a time without following symlinks, and refuse a directory other than the
// one PrepareDir prepared. bind(2) alone takes a path (the socket must carry
// its real path for getsockname); afterwards sock_diag must confirm the
// socket's file is the entry in the held directory, or the stray is removed
// and Create fails before the socket is chowned, linked or listening.
//
// Order of use: PrepareDir (or OpenDir), then LockDir, then Sweep, Create,
// Adopt and Remove while the lock is held. The lock serialises sockvisor
// processes; it is not held by running backends, so a sweep can run beside a
// running daemon and keeps its sockets because they are live.
package sockets
