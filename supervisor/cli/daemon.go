package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sockvisor/sockvisor/internal/errmark"
	"github.com/sockvisor/sockvisor/supervisor/config"
	"github.com/sockvisor/sockvisor/supervisor/control"
	"github.com/sockvisor/sockvisor/supervisor/daemon"
	"github.com/sockvisor/sockvisor/supervisor/logging"
	"github.com/sockvisor/sockvisor/supervisor/shim"
)

func init() {
	commands["run"] = &command{
		summary: "run the supervisor in the foreground",
		help: `Prepares socket_dir, sweeps stale sockets, creates every backend's socket
(or takes it back from systemd's fd store), starts the backends, writes and
reloads the Apache config, and serves the control socket. SIGTERM or SIGINT
stops backends and leaves the socket files in place; SIGHUP reloads the config.
Under systemd it reports READY=1, STATUS=, RELOADING=1, STOPPING=1 and pets
the watchdog.`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run:   runDaemon,
	}
	commands["status"] = &command{
		summary: "show each backend's state, pid, restarts and socket queue",
		flags: func(fs *flag.FlagSet) {
			configFlag(fs)
			fs.Bool("json", false, "print the status as JSON")
		},
		run: runStatus,
	}
	commands["restart"] = &command{
		summary: "restart one backend without refusing a request",
		usage:   " BACKEND",
		help: `Starts a new process on the same sockets, waits until it is ready, then
stops the old one, so requests keep being served throughout. If the new
process exits or is not ready in time, the old one keeps serving and the
command exits 1 at once with the new process's exit status and last output
lines. A backend with
handoff = "self" binds its own socket and is stopped first instead, so
requests to it fail while it restarts. An idle on-demand backend has no
process: restart does nothing, says so and exits 0.`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run:   runRestart,
	}
	commands["reload"] = &command{
		summary: "re-read the config and apply only what changed",
		help: `New backends start, removed ones stop and their sockets go, changed ones are
replaced (new process ready before the old one stops); the rest keep running.
On a bad config nothing changes, the reason is printed and the exit code is 1.
'systemctl reload sockvisor' runs this command.`,
		flags: func(fs *flag.FlagSet) { configFlag(fs) },
		run:   runReload,
	}
}

func runDaemon(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	cfg, code, err := loadConfig(fs)
	if err != nil {
		return code, err
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat, e.stderr)
	if err != nil {
		return ExitProblems, err
	}
	// Nothing sockvisor inherited (exec 7>>/root/secret.log) may reach a
	// child; the exec shim closes the rest for backends too.
	if err := shim.CloseOnExecFrom(3); err != nil {
		log.Warn("cannot mark inherited descriptors close-on-exec", "error", err)
	}
	d, err := daemon.New(daemon.Options{ConfigPath: cfg.File, Log: log})
	if errors.Is(err, config.ErrInvalid) {
		return ExitProblems, err
	} else if err != nil {
		return ExitFailure, err
	}
	if err := d.Run(context.Background()); err != nil {
		return ExitFailure, err
	}
	return ExitOK, nil
}

// client finds the control socket through the same config `run` uses. It
// reads only control_socket, so a config broken since the daemon started
// still reaches the daemon, which then reports what is wrong.
// A file named with --config or $SOCKVISOR_CONFIG must exist, else the
// answer would come from whatever daemon the default control socket has.
func client(fs *flag.FlagSet) (*control.Client, int, error) {
	path := config.Path(fs.Lookup("config").Value.String())
	if explicitConfig(fs) != "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, ExitFailure, errmark.Mark(fmt.Errorf("config file not found: %s does not exist; pass the config file sockvisor run uses with --config", path), config.ErrNotFound)
		}
	}
	return control.NewClient(config.PeekControlSocket(path)), ExitOK, nil
}

// explicitConfig is the config file named with --config or
// $SOCKVISOR_CONFIG, or "" when the default applies.
func explicitConfig(fs *flag.FlagSet) string {
	if p := fs.Lookup("config").Value.String(); p != "" {
		return p
	}
	return os.Getenv(config.EnvPath)
}

// sameConfig reports whether paths a and b name the same file.
func sameConfig(a, b string) bool {
	ai, aerr := os.Stat(a)
	bi, berr := os.Stat(b)
	if aerr == nil && berr == nil {
		return os.SameFile(ai, bi)
	}
	aa, _ := filepath.Abs(a)
	ba, _ := filepath.Abs(b)
	return aa == ba
}

// checkReloadTarget refuses a reload when the config file named on the
// command line is not the one the running daemon reads: the daemon would
// re-read its own file and report success, applying nothing of the other.
func checkReloadTarget(ctx context.Context, c *control.Client, fs *flag.FlagSet) (int, error) {
	named := explicitConfig(fs)
	if named == "" {
		return ExitOK, nil
	}
	raw, err := c.Status(ctx)
	if err != nil {
		return callExit(err), err
	}
	var st daemon.StatusReport
	if err := json.Unmarshal(raw, &st); err != nil {
		return ExitFailure, fmt.Errorf("decoding status: %w", err)
	}
	if st.ConfigFile == "" || sameConfig(named, st.ConfigFile) {
		return ExitOK, nil // an older daemon does not say
	}
	return ExitProblems, fmt.Errorf("the running sockvisor reads %s, not %s; edit %s and reload, or restart sockvisor with --config %s", st.ConfigFile, named, st.ConfigFile, named)
}

// callExit maps a control error to an exit code: a request the daemon
// refused (bad backend name, bad config) is 1; anything else (no daemon, no
// permission, a broken connection) is 2.
func callExit(err error) int {
	if errors.Is(err, control.ErrRefused) {
		return ExitProblems
	}
	return ExitFailure
}

func runStatus(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	c, code, err := client(fs)
	if err != nil {
		return code, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.Status(ctx)
	if err != nil {
		return callExit(err), err
	}
	if fs.Lookup("json").Value.String() == "true" {
		fmt.Fprintf(e.stdout, "%s\n", raw)
		return ExitOK, nil
	}
	var st daemon.StatusReport
	if err := json.Unmarshal(raw, &st); err != nil {
		return ExitFailure, fmt.Errorf("decoding status: %w", err)
	}
	writeStatus(e, &st)
	return ExitOK, nil
}

func writeStatus(e *env, st *daemon.StatusReport) {
	switch {
	case st.Phase == "starting" && len(st.Backends) == 0:
		fmt.Fprintln(e.stdout, "sockvisor is starting: creating its sockets, no backend started yet")
		return
	case st.Phase == "starting":
		fmt.Fprintf(e.stdout, "sockvisor is starting: %d backend(s) started, waiting until they are ready\n", len(st.Backends))
	case st.Phase != "running":
		fmt.Fprintf(e.stdout, "sockvisor is %s\n", st.Phase)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tSTATE\tREADY\tPID\tRESTARTS\tLAST EXIT\tUPTIME\tSOCKET\tQUEUE")
	for _, b := range st.Backends {
		exit := "-"
		if b.LastExit != nil {
			exit = fmt.Sprint(b.LastExit.Code)
		}
		uptime := "-"
		if b.Uptime > 0 {
			uptime = (time.Duration(b.Uptime) * time.Second).String()
		}
		pid := "-"
		if b.PID > 0 {
			pid = fmt.Sprint(b.PID)
		}
		for i, q := range b.Queues {
			queue := "-"
			if q.Backlog > 0 {
				queue = fmt.Sprintf("%d/%d", q.Queue, q.Backlog)
			}
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%s\t%s\t%s\t%s\n", b.Name, b.State, b.Ready, pid, b.Restarts, exit, uptime, q.Path, queue)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t\t\t\t%s\t%s\n", q.Path, queue)
			}
		}
	}
	tw.Flush()
	writeIdle(e, st)
	for _, b := range st.Backends {
		if b.LastError != "" {
			fmt.Fprintf(e.stdout, "%s: %s\n", b.Name, b.LastError)
		}
	}
	if st.LastReloadError != "" {
		fmt.Fprintf(e.stdout, "last reload failed: %s\n", strings.ReplaceAll(st.LastReloadError, "\n", "; "))
	}
	if a := st.LastApacheApply; a != nil {
		at := a.At.Local().Format(time.DateTime)
		if a.OK {
			fmt.Fprintf(e.stdout, "Apache config: applied (%s)\n", at)
		} else {
			fmt.Fprintf(e.stdout, "Apache config NOT applied (%s, %s failed): %s; Apache serves its previous config (sockvisor doctor explains)\n",
				at, a.Step, strings.ReplaceAll(a.Error, "\n", "; "))
		}
	}
}

func runRestart(e *env, fs *flag.FlagSet, args []string) (int, error) {
	msg, code, err := callBackend(fs, args, (*control.Client).RestartMessage)
	if err != nil {
		return code, err
	}
	if msg != "" {
		fmt.Fprintln(e.stdout, msg) // nothing to do: an idle on-demand backend
		return ExitOK, nil
	}
	fmt.Fprintf(e.stdout, "restarted %s\n", args[0])
	return ExitOK, nil
}

// callBackend makes one control call on the single BACKEND argument. It
// waits up to 10 minutes, since a start or restart waits for the new
// process to be ready.
func callBackend(fs *flag.FlagSet, args []string, call func(*control.Client, context.Context, string) (string, error)) (string, int, error) {
	if len(args) != 1 {
		return "", ExitFailure, usageErr("needs exactly one BACKEND name")
	}
	c, code, err := client(fs)
	if err != nil {
		return "", code, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	msg, err := call(c, ctx, args[0])
	if err != nil {
		return "", callExit(err), err
	}
	return msg, ExitOK, nil
}

func runReload(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	c, code, err := client(fs)
	if err != nil {
		return code, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if code, err := checkReloadTarget(ctx, c, fs); err != nil {
		return code, err
	}
	if err := c.Reload(ctx); err != nil {
		return callExit(err), err
	}
	fmt.Fprintln(e.stdout, "config reloaded")
	return ExitOK, nil
}
