package backend

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// StartError says why a start attempt of one instance failed: the new
// process could not be started, exited (or was killed) before it was
// ready, or was not ready within ready.timeout. Restart, Reload and
// WaitReady return it (for several instances, joined with errors.Join), so
// callers get it with errors.As; errors.Is(err, ErrNotReady) always holds.
//
// This type is a contract the daemon relies on: its fields and their
// meaning stay stable.
type StartError struct {
	Backend  string
	Instance int
	// PID is the new process; 0 if none could be started.
	PID int
	// Exit is how the new process ended; nil if it never started, or was
	// still running when it was given up on (see Err).
	Exit *Exit
	// Tail holds the last lines the new process wrote to stdout and
	// stderr, oldest first: at most TailLines lines of at most
	// TailLineBytes bytes each.
	Tail []string
	// FirstError is the first line of output that names an error the way
	// Python, Ruby and PHP end their reports ("SyntaxError: invalid
	// syntax"), when it is not among Tail: a server that reports the
	// failure again (gunicorn's arbiter does) can push the cause out of the
	// last lines. "" when there is none or Tail holds it.
	FirstError string
	// Replacing is set when an old process was serving the instance; it
	// keeps serving, untouched.
	Replacing bool
	// Err is the cause: the spawn error, or the last readiness problem.
	// nil when Exit says it all.
	Err error
}

// Bounds of StartError.Tail.
const (
	TailLines     = 10
	TailLineBytes = 512
)

func (e *StartError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "backend %q instance %d: ", e.Backend, e.Instance)
	what := "process"
	if e.Replacing {
		what = "new process"
	}
	switch {
	case e.PID == 0:
		fmt.Fprintf(&sb, "could not start a %s: %v", what, e.Err)
	case e.Exit != nil:
		fmt.Fprintf(&sb, "%s %d %s before it was ready", what, e.PID, e.Exit.describe())
	default:
		fmt.Fprintf(&sb, "%s %d is not ready: %v", what, e.PID, e.Err)
	}
	if e.Replacing {
		sb.WriteString("; the old process keeps serving")
	}
	if e.FirstError != "" {
		fmt.Fprintf(&sb, "; its first error: %s", strconv.Quote(e.FirstError))
	}
	if len(e.Tail) > 0 {
		quoted := make([]string, len(e.Tail))
		for i, l := range e.Tail {
			quoted[i] = strconv.Quote(l)
		}
		fmt.Fprintf(&sb, "; its last output: %s", strings.Join(quoted, " | "))
	} else if e.PID != 0 {
		sb.WriteString("; it wrote no output")
	}
	return sb.String()
}

// Unwrap makes errors.Is(err, ErrNotReady) true and reaches the cause.
func (e *StartError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNotReady}
	}
	return []error{ErrNotReady, e.Err}
}

// startError describes a failed start of p (nil if no process started).
func (b *Backend) startError(in *instance, p *process, ex *Exit, cause error) *StartError {
	e := &StartError{Backend: b.cfg.Name, Instance: in.idx, Exit: ex, Err: cause}
	if p != nil {
		e.PID = p.pid
		e.Tail, e.FirstError = p.tail.lines()
		e.Replacing = p == in.next
	} else {
		e.Replacing = in.cur != nil && in.cur.wasReady()
	}
	return e
}

// outputTail is a process's last output lines and its first error line,
// shared by its two output forwarders and the owner goroutine.
type outputTail struct {
	mu       sync.Mutex // guards the fields below
	buf      []string
	firstErr string
	// errAt is the number of lines added before firstErr, so lines knows
	// whether it is still in buf.
	errAt, added int
	// ready: the process was proven ready, so no StartError will need
	// firstErr; its lines are no longer matched.
	ready bool
}

// errorLine matches the line that names an error at the end of a report:
// Python's "SyntaxError: invalid syntax" or "pkg.errors.FooError: ...",
// Ruby's "config.ru:3:in `<main>': boom (RuntimeError)", PHP's
// "PHP Parse error: ...".
var errorLine = regexp.MustCompile(`^([A-Za-z_]\w*\.)*\w*(Error|Exception)(: |$)|\((\w+::)*\w*(Error|Exception)\)$|^PHP (Parse|Fatal) error: `)

func (t *outputTail) add(line string) {
	if len(line) > TailLineBytes {
		line = line[:TailLineBytes]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready && t.firstErr == "" && errorLine.MatchString(line) {
		t.firstErr, t.errAt = line, t.added
	}
	t.added++
	if len(t.buf) == TailLines {
		copy(t.buf, t.buf[1:])
		t.buf = t.buf[:TailLines-1]
	}
	t.buf = append(t.buf, line)
}

// proven stops the search for a first error line: the process is ready,
// and only a failed start reports one.
func (t *outputTail) proven() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ready = true
}

// lines returns the last lines, and the first error line if it is not
// among them.
func (t *outputTail) lines() (tail []string, firstErr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstErr != "" && t.errAt < t.added-len(t.buf) {
		firstErr = t.firstErr
	}
	return append([]string(nil), t.buf...), firstErr
}
