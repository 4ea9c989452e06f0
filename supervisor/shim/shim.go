// Package shim is the hidden "sockvisor exec-shim" mode that turns a freshly
// started process into a backend.
//
// Go cannot run code between fork and exec, and a backend needs things only
// its own process can set: LISTEN_PID equal to its pid, a umask, and its
// credentials. So the supervisor starts its own binary as
// "sockvisor exec-shim [flags] -- argv...", and the shim sets the umask, the
// supplementary groups, the gid and the uid (in that order), the LISTEN_*
// variables, the working directory, closes every descriptor above 2 but the
// ones handed off (fd 3 onwards, -keep-fds), then replaces itself with the
// backend via execve. Invariant: the backend runs with the pid the supervisor
// started, so LISTEN_PID is right and signals reach it; the shim never
// forks, and any failure ends the shim with a one-line reason on stderr.
package shim

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Arg is the hidden subcommand; the CLI routes "sockvisor exec-shim ..." to
// Main with the arguments after it.
const Arg = "exec-shim"

// Exit codes of a shim that could not exec the backend, as shells use them.
const (
	ExitUsage    = 2
	ExitSetup    = 126 // credentials, umask or directory failed
	ExitNotFound = 127 // the command could not be executed
)

// Spec is what the shim does before exec.
type Spec struct {
	// Path is the program; without a slash it is looked up in the PATH of
	// the backend's environment.
	Path string
	// Args is the backend's argv, Args[0] included.
	Args []string
	// Dir is the working directory; "" leaves the shim's.
	Dir string
	// Umask is applied when SetUmask is true.
	Umask    uint32
	SetUmask bool
	// SetCreds makes the shim switch to UID, GID and exactly Groups.
	SetCreds bool
	UID, GID int
	Groups   []uint32
	// ListenFDs > 0 sets LISTEN_FDS, LISTEN_PID (the backend's own pid) and
	// LISTEN_FDNAMES (from FDNames, if any) for fds 3...
	ListenFDs int
	FDNames   []string
	// KeepFDs is how many descriptors from fd 3 are handed to the backend
	// (sockets for listen-fds or fpm); at least ListenFDs are kept. Every
	// other descriptor above 2 is closed at exec.
	KeepFDs int
}

// keep is the number of descriptors from fd 3 the backend receives.
func (s Spec) keep() int { return max(s.KeepFDs, s.ListenFDs) }

// Argv returns the command line that runs the shim from exe (the sockvisor
// binary) for this spec. The backend's environment is the shim's own, so
// pass it as the environment of the process you start.
func (s Spec) Argv(exe string) []string {
	argv := []string{exe, Arg}
	if s.SetUmask {
		argv = append(argv, "-umask", fmt.Sprintf("%04o", s.Umask))
	}
	if s.SetCreds {
		groups := make([]string, 0, len(s.Groups))
		for _, g := range s.Groups {
			groups = append(groups, strconv.FormatUint(uint64(g), 10))
		}
		argv = append(argv, "-uid", strconv.Itoa(s.UID), "-gid", strconv.Itoa(s.GID),
			"-groups", strings.Join(groups, ","))
	}
	if s.Dir != "" {
		argv = append(argv, "-dir", s.Dir)
	}
	if s.ListenFDs > 0 {
		argv = append(argv, "-listen-fds", strconv.Itoa(s.ListenFDs))
		if len(s.FDNames) > 0 {
			argv = append(argv, "-fdnames", strings.Join(s.FDNames, ":"))
		}
	}
	argv = append(argv, "-keep-fds", strconv.Itoa(s.keep()), "-path", s.Path, "--")
	return append(argv, s.Args...)
}

// parse is the inverse of Argv (without exe and Arg).
func parse(args []string, stderr io.Writer) (Spec, error) {
	var s Spec
	fs := flag.NewFlagSet(Arg, flag.ContinueOnError)
	fs.SetOutput(stderr)
	umask := fs.String("umask", "", "octal umask")
	uid := fs.Int("uid", -1, "user id")
	gid := fs.Int("gid", -1, "group id")
	groups := fs.String("groups", "", "comma-separated supplementary group ids")
	fs.StringVar(&s.Dir, "dir", "", "working directory")
	fs.IntVar(&s.ListenFDs, "listen-fds", 0, "number of sockets from fd 3")
	fdnames := fs.String("fdnames", "", "colon-separated socket names")
	fs.IntVar(&s.KeepFDs, "keep-fds", 0, "number of descriptors from fd 3 the backend keeps; all others above 2 are closed")
	fs.StringVar(&s.Path, "path", "", "program to run")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	s.Args = fs.Args()
	if s.Path == "" || len(s.Args) == 0 {
		return s, errors.New("no command given; usage: sockvisor exec-shim [flags] -path PROGRAM -- ARGV0 ARGS...")
	}
	if *umask != "" {
		m, err := strconv.ParseUint(*umask, 8, 32)
		if err != nil || m > 0o777 {
			return s, fmt.Errorf("umask %q is not an octal mode between 0000 and 0777", *umask)
		}
		s.Umask, s.SetUmask = uint32(m), true
	}
	if (*uid >= 0) != (*gid >= 0) {
		return s, errors.New("-uid and -gid must be given together")
	}
	if *uid >= 0 {
		s.SetCreds, s.UID, s.GID = true, *uid, *gid
		// Capacity, not length: make([]uint32, n) then append would leave n
		// leading zeros, i.e. supplementary group root.
		s.Groups = make([]uint32, 0, strings.Count(*groups, ",")+1)
		for _, f := range strings.Split(*groups, ",") {
			if f == "" {
				continue
			}
			g, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return s, fmt.Errorf("supplementary group %q is not a numeric id", f)
			}
			s.Groups = append(s.Groups, uint32(g))
		}
	}
	if *fdnames != "" {
		s.FDNames = strings.Split(*fdnames, ":")
	}
	if s.ListenFDs < 0 || (len(s.FDNames) > 0 && len(s.FDNames) != s.ListenFDs) {
		return s, fmt.Errorf("-fdnames lists %d names for %d sockets", len(s.FDNames), s.ListenFDs)
	}
	if s.KeepFDs < 0 || s.KeepFDs > 1<<16 {
		return s, fmt.Errorf("-keep-fds %d is not a descriptor count", s.KeepFDs)
	}
	return s, nil
}

// Main runs the shim with the arguments after "exec-shim". It returns only
// on failure, with ExitUsage, ExitSetup or ExitNotFound.
func Main(args []string) int {
	s, err := parse(args, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sockvisor exec-shim: %v\n", err)
		return ExitUsage
	}
	if code, err := run(s); err != nil {
		fmt.Fprintf(os.Stderr, "sockvisor exec-shim: %v\n", err)
		return code
	}
	return 0 // unreachable: run execs or fails
}

func run(s Spec) (int, error) {
	if s.SetUmask {
		syscall.Umask(int(s.Umask))
	}
	if s.SetCreds {
		if err := setCreds(s); err != nil {
			return ExitSetup, err
		}
	}
	if s.Dir != "" {
		if err := os.Chdir(s.Dir); err != nil {
			return ExitSetup, fmt.Errorf("cannot enter working directory %s as uid %d: %w; fix directory or its permissions", s.Dir, os.Getuid(), err)
		}
	}
	env := environ(os.Environ(), s)
	path := s.Path
	if !strings.Contains(path, "/") {
		// Resolve with the backend's PATH; os.Environ is the backend's.
		p, err := exec.LookPath(path)
		if err != nil {
			return ExitNotFound, fmt.Errorf("command %q was not found in PATH=%s: %w; give its absolute path", path, os.Getenv("PATH"), err)
		}
		path = p
	}
	// Last, after everything that may open a file: from here on, only
	// execve and the signal reset run.
	if err := closeExtraFDs(s.keep()); err != nil {
		return ExitSetup, fmt.Errorf("cannot close the descriptors the backend must not inherit: %w", err)
	}
	resetSignals()
	err := syscall.Exec(path, s.Args, env)
	return ExitNotFound, fmt.Errorf("cannot execute %s: %w; check that it exists and is executable by uid %d", path, err, os.Getuid())
}

// setCreds switches to the target credentials; groups first, the uid last,
// since each step needs the privilege the next one drops. A non-root shim
// asked for its own ids has nothing to change and cannot call setgroups.
func setCreds(s Spec) error {
	if os.Geteuid() != 0 {
		if s.UID == os.Geteuid() && s.GID == os.Getegid() {
			return nil
		}
		return fmt.Errorf("cannot switch to uid %d gid %d: sockvisor runs as uid %d, not root; run it as root or set the backend's user to the one sockvisor runs as", s.UID, s.GID, os.Geteuid())
	}
	groups := make([]int, 0, len(s.Groups))
	for _, g := range s.Groups {
		groups = append(groups, int(g))
	}
	// Go applies these to every thread of the process.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setting supplementary groups %v: %w", s.Groups, err)
	}
	if err := syscall.Setgid(s.GID); err != nil {
		return fmt.Errorf("setting gid %d: %w", s.GID, err)
	}
	if err := syscall.Setuid(s.UID); err != nil {
		return fmt.Errorf("setting uid %d: %w", s.UID, err)
	}
	return nil
}

// environ drops any inherited LISTEN_* (they describe some other process)
// and sets the ones this spec asks for.
func environ(env []string, s Spec) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "LISTEN_") {
			out = append(out, kv)
		}
	}
	if s.ListenFDs > 0 {
		out = append(out, "LISTEN_PID="+strconv.Itoa(os.Getpid()), "LISTEN_FDS="+strconv.Itoa(s.ListenFDs))
		if len(s.FDNames) > 0 {
			out = append(out, "LISTEN_FDNAMES="+strings.Join(s.FDNames, ":"))
		}
	}
	return out
}
