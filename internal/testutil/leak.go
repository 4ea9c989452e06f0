package testutil

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockvisor/sockvisor/internal/procfs"
)

// LeakTimeout is how long, after the tests passed, Main waits for
// goroutines and child processes to be gone: a background loop stopped
// by the last t.Cleanup may still be on its way out.
const LeakTimeout = 5 * time.Second

// Main is a TestMain that runs the tests, then checks for leaks (see
// RunChecked) and exits with the result.
func Main(m *testing.M) { os.Exit(RunChecked(m)) }

// RunChecked runs the tests and returns their exit code, failing (1) a
// run that passed but leaked: a goroutine started during the tests that
// has not returned within LeakTimeout (its stack is printed), or a child
// process of the test binary still there (running, or a zombie nobody
// waited for). Leftover children are reported and killed by pid, whether
// the tests passed or not: each is our own unreaped child, so its pid
// cannot have been reused. Garbage is collected while waiting, so that
// under GODEBUG=execwait=2 an exec.Cmd started and never waited for
// panics with the stack that created it.
//
// For a TestMain that does more than m.Run: call it in place of m.Run,
// after any setup that starts goroutines meant to outlive the tests.
func RunChecked(m *testing.M) int {
	base := map[string]bool{}
	for _, g := range goroutines() {
		base[g.id] = true
	}
	code := m.Run()
	var leaked []goroutine
	var children []child
	deadline := time.Now().Add(LeakTimeout)
	for {
		// Keep-alive connections of tests that used the default client.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		runtime.GC()
		leaked = leaked[:0]
		for _, g := range goroutines() {
			if !base[g.id] && !longLived(g.stack) {
				leaked = append(leaked, g)
			}
		}
		children = childProcesses()
		if len(children) == 0 && (len(leaked) == 0 || code != 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code == 0 && len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "testutil: %d goroutines started by the tests are still running %v after they ended:\n\n", len(leaked), LeakTimeout)
		for _, g := range leaked {
			fmt.Fprintf(os.Stderr, "%s\n\n", g.stack)
		}
		code = 1
	}
	if len(children) > 0 {
		fmt.Fprintf(os.Stderr, "testutil: %d child processes of the test binary are left %v after the tests ended; killing them:\n", len(children), LeakTimeout)
		for _, c := range children {
			fmt.Fprintf(os.Stderr, "  %s\n", c)
			syscall.Kill(c.pid, syscall.SIGKILL)
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}

// goroutine is one entry of runtime.Stack(all): its id and its stack.
type goroutine struct {
	id    string
	stack string
}

func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, s := range bytes.Split(buf, []byte("\n\n")) {
		// "goroutine 7 [chan receive]:\n..."
		f := strings.Fields(string(s))
		if len(f) < 2 || f[0] != "goroutine" {
			continue
		}
		out = append(out, goroutine{id: f[1], stack: string(s)})
	}
	return out
}

// longLived reports goroutines that the standard library starts once and
// keeps for the life of the process: os/signal's watcher, started by the
// first signal.Notify.
func longLived(stack string) bool {
	for _, s := range []string{"os/signal.signal_recv", "os/signal.loop", "runtime.ensureSigM"} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

// child is a process whose parent is the test binary.
type child struct {
	pid    int
	state  byte
	cmdArg string
}

func (c child) String() string {
	s := fmt.Sprintf("pid %d (%s)", c.pid, c.cmdArg)
	if c.state == 'Z' || c.state == 'X' {
		s += ": a zombie, started and never waited for"
	}
	return s
}

// childProcesses scans /proc for processes whose parent is this one.
func childProcesses() []child {
	var out []child
	for _, pid := range procfs.Children(os.Getpid()) {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			continue
		}
		arg := strings.Join(procfs.Proc.Cmdline(pid), " ")
		if arg == "" {
			arg = "[" + st.Comm + "]"
		}
		out = append(out, child{pid: pid, state: st.State, cmdArg: arg})
	}
	return out
}
