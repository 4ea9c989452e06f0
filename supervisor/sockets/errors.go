package sockets

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors wrap one of them and/or the underlying errno, so
// callers test with errors.Is.
var (
	// ErrUnsafe means a path is a symlink, has a hostile owner or is writable
	// by others, so sockvisor refuses to use it.
	ErrUnsafe = errors.New("sockets: unsafe path")
	// ErrNotDir means socket_dir exists but is not a directory.
	ErrNotDir = errors.New("sockets: not a directory")
	// ErrNotSocket means a file that is not a socket sits where a socket belongs.
	ErrNotSocket = errors.New("sockets: not a socket")
	// ErrInUse means another live socket already holds the path.
	ErrInUse = errors.New("sockets: socket in use")
	// ErrMismatch means an inherited descriptor is not the socket expected.
	ErrMismatch = errors.New("sockets: inherited socket does not match")
	// ErrLost means both the path and the keep link of a socket are gone, so
	// the listening socket can no longer be reached by name.
	ErrLost = errors.New("sockets: socket file lost")
	// ErrClosed means the Listener was closed.
	ErrClosed = errors.New("sockets: listener closed")
	// ErrLocked means LockDir gave up waiting for another holder.
	ErrLocked = errors.New("sockets: socket directory locked")
)

// Error is a one-sentence, user-facing error about one path.
type Error struct {
	Path string
	// PID is the process listening on Path, when an ErrInUse knows it.
	PID  int
	msg  string
	kind error // one of the sentinels, or nil when the cause says it all
	err  error // the underlying cause (often an errno), if any
}

func (e *Error) Error() string { return e.msg }

// Unwrap exposes both the sentinel and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var out []error
	for _, err := range []error{e.kind, e.err} {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

func fail(kind, cause error, path, format string, args ...any) error {
	return &Error{Path: path, msg: fmt.Sprintf(format, args...), kind: kind, err: cause}
}
