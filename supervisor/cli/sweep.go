package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sockvisor/sockvisor/supervisor/logging"
	"github.com/sockvisor/sockvisor/supervisor/sockets"
)

func init() {
	commands["sweep"] = &command{
		summary: "remove stale sockets from socket_dir",
		help: `Under the socket directory's lock, probes every entry without following
links: a socket that refuses connections is stale and is removed; a live one is
kept and shown with the PID holding it; symlinks, regular files and
directories are never touched, only listed. 'run' does the same at every start.
Safe while sockvisor runs: its sockets are live.`,
		flags: func(fs *flag.FlagSet) {
			configFlag(fs)
			fs.Bool("dry-run", false, "change nothing; print what would be removed")
		},
		run: runSweep,
	}
}

func runSweep(e *env, fs *flag.FlagSet, args []string) (int, error) {
	if len(args) > 0 {
		return ExitFailure, usageErr("takes no arguments")
	}
	cfg, code, err := loadConfig(fs)
	if err != nil {
		return code, err
	}
	dryRun := fs.Lookup("dry-run").Value.String() == "true"
	if _, err := os.Lstat(cfg.SocketDir); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(e.stdout, "%s does not exist: nothing to sweep\n", cfg.SocketDir)
		return ExitOK, nil
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat, e.stderr)
	if err != nil {
		return ExitProblems, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release, err := sockets.LockDir(ctx, cfg.SocketDir)
	if err != nil {
		return ExitFailure, err
	}
	defer release()
	entries, err := sockets.Sweep(ctx, cfg.SocketDir, sockets.SweepOptions{DryRun: dryRun}, log.Named("sweep"))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTRY\tKIND\tACTION\tPID\tWHY")
	for _, en := range entries {
		pid := "-"
		if en.PID > 0 {
			pid = fmt.Sprint(en.PID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", en.Name, en.Kind, en.Action, pid, en.Reason)
	}
	tw.Flush()
	if len(entries) == 0 {
		fmt.Fprintf(e.stdout, "%s is empty\n", cfg.SocketDir)
	}
	if dryRun {
		fmt.Fprintln(e.stdout, "dry run: nothing was changed")
	}
	if err != nil {
		return ExitProblems, err
	}
	return ExitOK, nil
}
