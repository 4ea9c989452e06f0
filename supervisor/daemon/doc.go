// Package daemon is `sockvisor run`: it owns the socket directory, the
// listening sockets, the backends, the Apache config and the control socket
// for the life of the process.
//
// Invariants: a socket's file and inode never disappear while its backend
// is configured (sockets are adopted from systemd's fd store when present,
// or taken back from a crashed sockvisor's backends, and closing never
// unlinks), unless a backend shut the socket down: then a new one replaces
// it at the same path (repair.go). Config reloads are serialized and
// transactional: everything new is provisioned and ready before anything
// old is stopped, and a failed reload leaves the previous generation
// serving untouched.
//
// Reading order:
//   - daemon.go: the Daemon, Run (start-up, signals, shutdown), and the
//     sockets and backend supervisors it provisions.
//   - txn.go: the one transaction behind start-up, reload and SIGHUP:
//     build, prove, apply Apache, commit or fail (the daemon's state
//     machine).
//   - reload.go: what a reload may change, and the plan it diffs.
//   - handoff.go: the handoff changes a reload refuses.
//   - ondemand.go: control calls on one backend (start, stop, restart).
//   - repair.go, statefile.go, leftovers.go: keeping sockets alive across
//     crashes: the fd store, the state file, a crashed run's backends.
//   - status.go, metrics.go: what `sockvisor status` and /metrics report.
package daemon
