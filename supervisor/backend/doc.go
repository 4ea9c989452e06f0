// Package backend supervises one configured backend: it starts each
// instance's process on its already-listening socket, probes it until
// ready, restarts it with backoff when it crashes, replaces it without
// dropping a request, and stops its whole process group.
//
// Invariant: each Backend has exactly one owner goroutine (Run), and it
// alone reads and writes every instance's and every process's state. Other
// goroutines never touch that state: reapers, timers, probes and the notify
// reader send it events, callers send it requests carrying a reply channel,
// and Status reads a snapshot the owner publishes under a mutex. So starts,
// stops and restarts never race. Two fields of a process are shared on
// purpose: its output tail, which the output forwarders fill under the
// tail's own mutex, and noPark, an atomic its probe reads. Every process runs in its own process
// group, and Run returns only after each group it started has no live
// process left (or survived SIGKILL, which Run reports as an error).
//
// Reading order:
//   - backend.go: the Backend, New and the calls (Restart, Reload, Stop).
//   - loop.go: the owner goroutine: Run, its requests and events, replies.
//   - lifecycle.go: the state machine: an instance, the phases of its
//     processes, and every transition.
//   - status.go: the published snapshot (Status, WaitReady, Ready, Done).
//   - process.go: starting a process through the exec shim, forwarding its
//     output, reaping it.
//   - ready.go, notify.go: readiness evidence (the probe, sd_notify).
//   - ondemand.go, watch.go: on-demand start and idle stop.
//   - clock.go: the injected clock and the backoff policy.
package backend
